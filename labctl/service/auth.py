"""Bearer tokens: who is calling, until when, and how a token ends.

Tokens are random strings shown once; only their SHA-256 is stored. Every token has an expiry (``expires_at``): learner
tokens are short-lived (12 hours by default), the others last longer (90 days by default; both are settings), and an
instructor can revoke any token at once. An expired or revoked token is refused with a 401 that says which. The last
use of a token is recorded at most once a minute, so authenticating stays one indexed read on most requests.

The first instructor token comes from ``LABCTL_ADMIN_TOKEN`` and is compared in constant time; it does not expire
(change the variable and restart to replace it). A learner token is bound to one learner id and sees only that
learner's sessions (others answer 404, not 403, so ids cannot be probed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labctl.errors import Conflict, Forbidden, NotFound, Unauthorized
from labctl.service.roles import Role
from labctl.store.db import Store
from labctl.store.models import ApiToken

TOKEN_PREFIX = "lct_"  # noqa: S105 - a prefix that makes leaked tokens easy to spot, not a secret
LAST_USED_GRANULARITY = timedelta(minutes=1)
ADMIN_CALLER = "admin"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    learner_id: str | None = None
    token_id: int | None = None  # None: the admin token from the environment (or an internal actor)

    @property
    def caller(self) -> str:
        """A stable identity of the token behind the request (what ``started_by`` records)."""
        return f"token:{self.token_id}" if self.token_id is not None else ADMIN_CALLER

    def may_act_for(self, learner_id: str) -> bool:
        return self.role != "learner" or self.learner_id == learner_id

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}; your token ({self.name}) has {self.role}")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(store: Store, header: str | None, *, admin_token: str, now: datetime) -> Principal:
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
        if row is None:
            raise Unauthorized("unknown token: check LABCTL_TOKEN (or ask an instructor for a new one)")
        return _principal(db, row, now=now)


def reference(principal: Principal, *, admin_token: str) -> str:
    """What a sign-in keeps of the token behind ``principal``: ``token:<id>``, or for the environment's admin token
    ``admin:<fingerprint>`` (16 hex digits of its SHA-256), so that replacing the admin token ends its sign-ins."""
    if principal.token_id is not None:
        return principal.caller
    return f"{ADMIN_CALLER}:{digest(admin_token)[:16]}"


def reauthenticate(store: Store, ref: str, *, admin_token: str, now: datetime) -> Principal:
    """The principal of the token a :func:`reference` names, if that token is still valid at ``now``: what a dashboard
    sign-in re-checks on every request, so revoking the token (or replacing the admin token) ends it."""
    kind, _, rest = ref.partition(":")
    if kind == ADMIN_CALLER:
        if not admin_token or not hmac.compare_digest(rest.encode(), digest(admin_token)[:16].encode()):
            raise Unauthorized("the admin token of this sign-in was replaced; sign in with the current one")
        return Principal(name="admin", role="instructor")
    if kind != "token" or not rest.isdigit():
        raise Unauthorized("this sign-in names no token; sign in again")
    with store.session() as db:
        row = db.get(ApiToken, int(rest))
        if row is None:
            raise Unauthorized("the token of this sign-in no longer exists; sign in again")
        return _principal(db, row, now=now)


def _principal(db: Session, row: ApiToken, *, now: datetime) -> Principal:
    """The principal of a stored token, refused (Unauthorized) when it is revoked or expired; records its use."""
    if row.revoked_at is not None:
        raise Unauthorized(f"this token ({row.name}) was revoked at {row.revoked_at.isoformat()}; "
                           "ask an instructor for a new one")
    if row.expires_at <= now:
        raise Unauthorized(f"this token ({row.name}) expired at {row.expires_at.isoformat()}; "
                           "ask for a new one (`labctl tokens create`)")
    if row.last_used_at is None or row.last_used_at <= now - LAST_USED_GRANULARITY:
        db.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now)
                   .execution_options(synchronize_session=False))
    role: Role = row.role  # type: ignore[assignment]
    return Principal(name=row.name, role=role, learner_id=row.learner_id, token_id=row.id)


def create_token(store: Store, *, name: str, role: Role, learner_id: str | None, now: datetime,
                 ttl: timedelta) -> tuple[ApiToken, str]:
    """Make a token valid for ``ttl``; returns its row and the token itself (the only time it is seen in clear)."""
    if role == "learner" and not learner_id:
        raise Conflict("a learner token needs the learner id it acts for")
    if role != "learner" and learner_id:
        raise Conflict(f"only learner tokens are bound to a learner id, not {role} tokens")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role, sha256=digest(token), learner_id=learner_id, created_at=now,
                   expires_at=now + ttl)
    with store.session() as db:
        db.add(row)
    return row, token


def list_tokens(store: Store) -> list[ApiToken]:
    """Every token, newest first (hashes are never shown)."""
    with store.session() as db:
        return list(db.scalars(select(ApiToken).order_by(ApiToken.id.desc())).all())


def revoke_token(store: Store, *, token_id: int, now: datetime) -> ApiToken:
    """Revoke a token now (idempotent: a revoked token keeps its first revocation time)."""
    with store.session() as db:
        row = db.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"there is no token {token_id}; `labctl tokens list` shows them")
        if row.revoked_at is None:
            row.revoked_at = now
    return row
