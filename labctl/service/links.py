"""Signed learner links: who may open the learner page of which session, until when, as a string nobody can forge.

A :class:`Grant` names one session, its learner and an expiry. :func:`sign` turns it into a URL-safe token, an HMAC
(SHA-256, through ``itsdangerous``) over the three; :func:`verify` checks the signature in constant time, then the
expiry against the ``now`` it is given, and returns the grant or raises what is wrong (:class:`Tampered`: 403,
:class:`Expired`: 410). Pure: no clock, no store, no I/O.

Every token is signed for one :class:`Purpose` (the purpose is itsdangerous's salt, so the key used for the link is
not the one used for the page cookie or the page's anti-forgery token): a link cannot be replayed as a cookie, a cookie
as a link, or either as an anti-forgery token. The instructor dashboard signs a :class:`StaffPass` (which token signed
in, until when) for its own two purposes, its cookie and its anti-forgery token, with :func:`sign_pass` and
:func:`verify_pass`: no learner token is ever a dashboard pass, and no dashboard pass a learner token.
The key comes from ``LABCTL_LINK_KEY`` or, when that is unset, is derived from the admin token (:func:`derive_key`),
so changing either ends every link, page cookie and dashboard sign-in at once.

>>> key = derive_key(b"an admin token")
>>> at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
>>> token = sign(Grant("lab-1a2b", "ada", at + timedelta(minutes=10)), key=key, purpose=Purpose.LINK)
>>> verify(token, key=key, purpose=Purpose.LINK, now=at).learner_id
'ada'
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from labctl.errors import Forbidden, LabctlError

__all__ = ["Expired", "Grant", "Purpose", "StaffPass", "Tampered", "derive_key", "sign", "sign_pass", "verify",
           "verify_pass"]

_DERIVATION_LABEL = b"labctl learner links v1"
MAX_TOKEN_CHARS = 1024  # a real token is about 120 characters; anything far longer is refused before any work


class Purpose(Enum):
    """What a token is for; each purpose signs with its own derived key."""

    LINK = "labctl.learner-link"  # the short-lived link a session answer carries
    PAGE = "labctl.page-cookie"  # the cookie the link is exchanged for, scoped to the session's page
    CSRF = "labctl.page-csrf"  # the anti-forgery token the page sends with every action
    DASHBOARD = "labctl.dashboard-cookie"  # an instructor's dashboard sign-in (a StaffPass)
    DASHBOARD_CSRF = "labctl.dashboard-csrf"  # the anti-forgery token the dashboard sends with every action


class Tampered(Forbidden):
    """The token was not signed by this labctl for this purpose (altered, truncated, another key or purpose)."""


class Expired(LabctlError):
    status = 410
    slug = "link-expired"


@dataclass(frozen=True)
class Grant:
    """The learner ``learner_id`` may open session ``session_id``'s page until ``expires_at``."""

    session_id: str
    learner_id: str
    expires_at: datetime


@dataclass(frozen=True)
class StaffPass:
    """The token ``caller`` names (``token:<id>``, or ``admin:<fingerprint>`` for the environment's token) signed in
    to the dashboard until ``expires_at``; the token itself is re-checked on every request, so revoking it ends the
    pass."""

    caller: str
    expires_at: datetime


def derive_key(secret: bytes) -> bytes:
    """The links' key from another secret (the admin token): an HMAC with a fixed label, so the secret itself is
    never the key and the key says nothing about it."""
    return hmac.new(secret, _DERIVATION_LABEL, hashlib.sha256).digest()


def _serializer(key: bytes, purpose: Purpose) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=purpose.value, signer_kwargs={"digest_method": hashlib.sha256})


def sign(grant: Grant, *, key: bytes, purpose: Purpose) -> str:
    """The URL-safe token of ``grant`` for ``purpose``."""
    payload = {"s": grant.session_id, "l": grant.learner_id, "e": int(grant.expires_at.timestamp())}
    token: str = _serializer(key, purpose).dumps(payload)
    return token


def verify(token: str, *, key: bytes, purpose: Purpose, now: datetime) -> Grant:
    """The grant ``token`` carries, if this key signed it for this purpose and it has not expired at ``now``."""
    grant = _grant(_payload(token, key, purpose))
    if grant is None:
        raise Tampered("this link is not one labctl made: its contents are not a learner link")
    _check_expiry(grant.expires_at, now)
    return grant


def sign_pass(staff: StaffPass, *, key: bytes, purpose: Purpose) -> str:
    """The URL-safe token of a dashboard pass for ``purpose``."""
    token: str = _serializer(key, purpose).dumps({"c": staff.caller, "e": int(staff.expires_at.timestamp())})
    return token


def verify_pass(token: str, *, key: bytes, purpose: Purpose, now: datetime) -> StaffPass:
    """The dashboard pass ``token`` carries, if this key signed it for this purpose and it has not expired."""
    payload = _payload(token, key, purpose)
    if not isinstance(payload, dict) or set(payload) != {"c", "e"} or not isinstance(payload["c"], str) \
            or type(payload["e"]) is not int or not (0 < payload["e"] < 2**33):
        raise Tampered("this sign-in is not one labctl made: its contents are not a dashboard pass")
    staff = StaffPass(payload["c"], datetime.fromtimestamp(payload["e"], UTC))
    _check_expiry(staff.expires_at, now)
    return staff


def _payload(token: str, key: bytes, purpose: Purpose) -> Any:
    """What ``token`` carries, if this key signed it for ``purpose`` (the signature checked in constant time)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise Tampered("this link is not one labctl made: it is empty or far too long")
    try:
        return _serializer(key, purpose).loads(token)
    except BadSignature:
        raise Tampered("this link is not one labctl made, or it was changed: its signature does not match") from None


def _check_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise Expired(f"this link expired at {expires_at:%Y-%m-%d %H:%M} UTC; open the lab again from your "
                      "course page for a new one")


def _grant(payload: Any) -> Grant | None:
    """A signed payload's grant; ``None`` for a shape labctl never signs (a key shared with something else)."""
    if not isinstance(payload, dict) or set(payload) != {"s", "l", "e"}:
        return None
    session_id, learner_id, expires = payload["s"], payload["l"], payload["e"]
    if not (isinstance(session_id, str) and isinstance(learner_id, str) and type(expires) is int):
        return None
    if not (0 < expires < 2**33):
        return None
    return Grant(session_id, learner_id, datetime.fromtimestamp(expires, UTC))


def expiry(now: datetime, ttl_s: float) -> datetime:
    """When a token made at ``now`` for ``ttl_s`` seconds ends (whole seconds: what the token carries)."""
    return datetime.fromtimestamp(int((now + timedelta(seconds=ttl_s)).timestamp()), UTC)
