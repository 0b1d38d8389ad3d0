"""Standard Webhooks signatures for outgoing messages, computed by the reference ``standardwebhooks`` package.

A signature is ``v1,`` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")) where the key is the
base64-decoded part of the endpoint's ``whsec_`` secret. After a rotation the previous secret keeps signing for an
overlap window: the ``webhook-signature`` header then carries both signatures, space separated, newest first, so a
receiver that has either secret accepts the message.
"""

from __future__ import annotations

import base64
import math
import secrets as _secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks secret prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def active_secrets(*, secret: str, previous_secret: str | None, previous_expires_at: datetime | None,
                   now: datetime) -> list[str]:
    """The secrets that sign at ``now``: the current one, plus the previous one while its overlap lasts."""
    active = [secret]
    if previous_secret and previous_expires_at is not None and now < _utc(previous_expires_at):
        active.append(previous_secret)
    return active


def sign(*, msg_id: str, timestamp: datetime, body: str, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` header value: one ``v1,<base64>`` per secret, space separated."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    when = _whole_seconds(timestamp)
    return " ".join(Webhook(secret).sign(msg_id, when, body) for secret in secrets)


def headers(*, msg_id: str, timestamp: datetime, body: str, secrets: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (``webhook-timestamp`` is this attempt's time)."""
    when = _whole_seconds(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": sign(msg_id=msg_id, timestamp=when, body=body, secrets=secrets),
    }


def _whole_seconds(value: datetime) -> datetime:
    seconds = math.floor(_utc(value).timestamp())
    return datetime.fromtimestamp(seconds, tz=UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
