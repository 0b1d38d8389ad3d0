"""Work that runs after the answer was sent (a stop's removal of the sandbox, a grading): it never raises.

Nothing is left waiting for such work's exception, and one raised into the ASGI server breaks the connection of the
request that scheduled it. Every such task runs through :func:`run`, which logs one line for an expected refusal
(another command holds the session, the backend is down: the sweep's reconciler finishes the job later) and the
traceback only for a bug.

Removing sandboxes (a stop's, an expiry's, a drain's) waits for the backend, a namespace's finalization for seconds:
that work goes to :data:`REMOVALS`, one bounded pool of workers outside the requests' threads and the sweep, so a
class's mass stop neither starves the API's threads (``/healthz`` stays instant) nor holds up the next sweep;
what is queued waits its turn, and what a restart loses the reconciler finishes (the rows stay ``terminating``).

Gradings (a submission's replay of its grading window, then its graders) go to :data:`GRADINGS`, a pool of its own:
a replay sleeps between its steps, so a whole class's replays run side by side there, while the work that needs the
machine inside them is bounded where it is done (the replay's steps by :class:`labctl.service.replay.Replayer`, the
grader processes by :mod:`labctl.grading.runner`). Before, each grading held one of the API's request threads for its
whole replay, and an exam's end left none for ``/healthz``. :func:`wait` lets an answer's task await such work on
the event loop without a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from labctl.errors import LabctlError
from labctl.ports import ProviderError

log = logging.getLogger("labctl.background")

REMOVAL_WORKERS = 16  # sandboxes removed side by side (each mostly waits on the backend)
GRADING_WORKERS = 256  # submissions graded side by side (each mostly sleeps between its replay's steps)


class Workers:
    """A bounded pool that runs background work through :func:`run` (it never raises into the caller)."""

    def __init__(self, *, size: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)

    def submit(self, what: str, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> Future[None]:
        """Queue ``fn(*args, **kwargs)``; the future tells when it ended (its failure is logged, not raised)."""
        return self._pool.submit(run, what, fn, *args, **kwargs)


REMOVALS = Workers(size=REMOVAL_WORKERS, name="removal")
GRADINGS = Workers(size=GRADING_WORKERS, name="grading")


async def wait(future: Future[None]) -> None:
    """Await background work on the event loop, holding no thread (it never raises: :func:`run` logged it)."""
    await asyncio.wrap_future(future)


def run(what: str, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
    """Call ``fn(*args, **kwargs)``; log instead of raising (``what`` names the task in the log)."""
    try:
        fn(*args, **kwargs)
    except (LabctlError, ProviderError) as exc:
        log.warning("%s did not finish now (the sweep's reconciler tries again): %s", what, exc)
    except Exception:
        log.exception("%s failed", what)
