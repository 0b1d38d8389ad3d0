"""Pages of a list, newest first, with an opaque ``continue`` token, as Kubernetes lists are paged.

A page is ``limit`` rows ordered by (``created_at``, ``id``) descending; the token names the last row a page gave, so
the next page starts strictly after it (keyset paging: rows created meanwhile never shift a page, none is given
twice). The token is base64url text, not a secret: forging one only moves where a page starts, the caller's filters
and ownership still apply. A token this module cannot read is a 400 naming the fix.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from labctl.errors import BadRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's creation time and id."""

    created_at: datetime
    id: str

    def token(self) -> str:
        text = f"{self.created_at.astimezone(UTC).isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str) -> Cursor:
    """The cursor a ``continue`` token names; :class:`BadRequest` for one this API did not give."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, _, row_id = text.partition("|")
        created_at = datetime.fromisoformat(when)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("the `continue` token is not one this API gave: pass it back exactly as the previous "
                         "page's Link header had it, or list again without it") from None
    if not row_id or created_at.tzinfo is None:
        raise BadRequest("the `continue` token is not one this API gave: list again without it")
    return Cursor(created_at=created_at, id=row_id)
