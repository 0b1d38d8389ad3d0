"""Bearer tokens and roles: who may do what.

Tokens are random strings shown once; only their SHA-256 is stored. The first instructor token comes from
``LABCTL_ADMIN_TOKEN`` and is compared in constant time. A learner token is bound to one learner id and sees only that
learner's sessions (others answer 404, not 403, so ids cannot be probed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select

from labctl.errors import Conflict, Forbidden, Unauthorized
from labctl.store.db import Store
from labctl.store.models import ApiToken

Role = Literal["instructor", "platform", "exam", "learner"]
ROLES: tuple[Role, ...] = ("instructor", "platform", "exam", "learner")
TOKEN_PREFIX = "lct_"  # noqa: S105 - a prefix that makes leaked tokens easy to spot, not a secret


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    learner_id: str | None = None

    def may_act_for(self, learner_id: str) -> bool:
        return self.role != "learner" or self.learner_id == learner_id

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}; your token ({self.name}) has {self.role}")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(store: Store, header: str | None, *, admin_token: str) -> Principal:
    """The principal of an ``Authorization: Bearer ...`` header; raises Unauthorized with what is wrong."""
    if not header:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    token = token.strip()
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(name="admin", role="instructor")
    with store.session() as db:
        row = db.scalar(select(ApiToken).where(ApiToken.sha256 == digest(token)))
        if row is None or row.revoked_at is not None:
            raise Unauthorized("unknown or revoked token")
        role: Role = row.role  # type: ignore[assignment]
        return Principal(name=row.name, role=role, learner_id=row.learner_id)


def create_token(store: Store, *, name: str, role: Role, learner_id: str | None, now: datetime) -> str:
    """Make a token and return it (the only time it is seen in clear)."""
    if role == "learner" and not learner_id:
        raise Conflict("a learner token needs the learner id it acts for")
    if role != "learner" and learner_id:
        raise Conflict(f"only learner tokens are bound to a learner id, not {role} tokens")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session() as db:
        db.add(ApiToken(name=name, role=role, sha256=digest(token), learner_id=learner_id, created_at=now))
    return token
