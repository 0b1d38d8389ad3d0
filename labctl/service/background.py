"""Work that runs after the answer was sent (a stop's removal of the sandbox, a grading): it never raises.

Nothing is left waiting for such work's exception, and one raised into the ASGI server breaks the connection of the
request that scheduled it. Every such task runs through :func:`run`, which logs one line for an expected refusal
(another command holds the session, the backend is down: the sweep's reconciler finishes the job later) and the
traceback only for a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from labctl.errors import LabctlError
from labctl.ports import ProviderError

log = logging.getLogger("labctl.background")


def run(what: str, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
    """Call ``fn(*args, **kwargs)``; log instead of raising (``what`` names the task in the log)."""
    try:
        fn(*args, **kwargs)
    except (LabctlError, ProviderError) as exc:
        log.warning("%s did not finish now (the sweep's reconciler tries again): %s", what, exc)
    except Exception:
        log.exception("%s failed", what)
