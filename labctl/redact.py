"""Internal addresses never reach API callers: the apiserver's (or any backend's) URL, host and port are cut out of
backend messages where they leave the service: a provider error turned into a problem document
(:mod:`labctl.service.sessions`), and a session's reason, a submission's error and event details in API answers.

Provider errors quote where they tried to connect (``https://10.0.0.12:6443/api/v1/...``,
``HTTPSConnectionPool(host='10.0.0.12', port=6443)``, ``dial tcp 10.0.0.12:6443``); the learner needs to know that the
backend failed, not where it lives. The store keeps the full text (and the service log, where the error is logged).
No labctl imports: used by the use cases and the API alike.
"""

from __future__ import annotations

import re

HIDDEN = "[internal address]"

_PATTERNS = (
    re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/'\"<>)\]]+"),  # scheme://host[:port] (the path stays)
    re.compile(r"\bhost='[^']*'(, port=\d+)?"),  # urllib3's connection pool
    re.compile(r"\[[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\](:\d+)?"),  # [v6]:port
    re.compile(r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b"),  # v4[:port]
)


def addresses(text: str) -> str:
    """``text`` with every URL origin, ``host='...'`` and bare IP address (with its port) replaced."""
    for pattern in _PATTERNS:
        text = pattern.sub(HIDDEN, text)
    return text


def optional(text: str | None) -> str | None:
    return None if text is None else addresses(text)
