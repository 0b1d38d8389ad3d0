"""The ``learner_url`` of a session answer: a short-lived signed link to the session's learner page.

Only callers who may open the page get one: the learner itself (its token sees only its own sessions), the course
site's platform token that started the session (it hands the link to the learner or embeds it), and instructors.
Another platform token and the exam platform get ``null``. Each answer signs a fresh link valid for
``LABCTL_LINK_TTL_S`` (10 minutes by default); opening it exchanges it for the page cookie
(:mod:`api.routers.pages`). The key is ``LABCTL_LINK_KEY``, else derived from the admin token
(:func:`labctl.service.links.derive_key`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from labctl.service import links
from labctl.service.auth import Principal
from labctl.settings import Settings
from labctl.store.models import SandboxSession

log = logging.getLogger("labctl.api")


@dataclass(frozen=True)
class LearnerLinks:
    key: bytes
    ttl_s: float
    public_url: str | None

    @classmethod
    def from_settings(cls, settings: Settings, *, admin_token: str) -> LearnerLinks:
        if settings.link_key is not None:
            key = links.derive_key(settings.link_key.get_secret_value().encode())
        elif admin_token:
            key = links.derive_key(admin_token.encode())
        else:  # only an app built without any admin token (tests of the app object): links end with the process
            log.warning("no LABCTL_LINK_KEY and no admin token: learner links are signed with a key of this process "
                        "only and stop working when it restarts")
            key = links.derive_key(secrets.token_bytes(32))
        return cls(key=key, ttl_s=settings.link_ttl_s, public_url=settings.public_url)

    def may_see(self, row: SandboxSession, principal: Principal) -> bool:
        """Whether this caller is given the session's link (see the module docstring)."""
        if principal.role == "instructor":
            return True
        if principal.role == "learner":
            return principal.learner_id == row.learner_id
        return principal.role == "platform" and row.started_by == principal.caller

    def url_for(self, row: SandboxSession, *, principal: Principal, base_url: str, now: datetime) -> str | None:
        """The link for ``principal``, or ``None`` when it may not have one."""
        return self.link(row, base_url=base_url, now=now) if self.may_see(row, principal) else None

    def link(self, row: SandboxSession, *, base_url: str, now: datetime) -> str:
        """A fresh signed link to ``row``'s learner page (for a caller already known to be its learner's agent,
        e.g. where a launched learner's browser lands)."""
        grant = links.Grant(row.id, row.learner_id, links.expiry(now, self.ttl_s))
        token = links.sign(grant, key=self.key, purpose=links.Purpose.LINK)
        return f"{(self.public_url or base_url).rstrip('/')}/learn/open?link={quote(token, safe='')}"
