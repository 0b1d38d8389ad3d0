"""Pure: GCP's label rules and the labels labctl puts on a sandbox's resources.

GCE labels are a map of at most 64 entries; keys match ``[a-z][a-z0-9_-]{0,62}``, values ``[a-z0-9_-]{0,63}`` (GCP
also allows international lowercase letters; labctl keeps to ASCII). ``setLabels`` replaces the whole map and needs
the resource's current ``labelFingerprint``, so :func:`merged` builds the full new map from the current one. Every
resource of a session carries ``labctl-session=<value>`` (:func:`session_value`: the session id when it is a valid
value, else a stable hash of it), and inventory is the aggregated list filtered on it (:func:`session_filter`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from labctl.catalog.models import GCP_LABEL_VALUE, gcp_label_problems

SESSION_LABEL = "labctl-session"
problems = gcp_label_problems  # GCP's label rules, which the catalog checks lab files by too


def session_value(session_id: str) -> str:
    """The ``labctl-session`` label value of a session: its id if GCP accepts it, else ``s-`` + a hash of it."""
    if GCP_LABEL_VALUE.match(session_id):
        return session_id
    return "s-" + hashlib.sha256(session_id.encode()).hexdigest()[:40]


def resource_name(declared: str, session_id: str) -> str:
    """The GCE name of a declared starter resource in one session: ``<declared>-<8 hex of the session>``. GCE names
    are unique per project and zone, and many sessions share a project."""
    return f"{declared}-{hashlib.sha256(session_id.encode()).hexdigest()[:8]}"


def session_filter(session_id: str) -> str:
    """The ``filter`` of an aggregated list that returns the session's resources only."""
    return f'labels.{SESSION_LABEL} = "{session_value(session_id)}"'


def with_session(labels: Mapping[str, str], session_id: str) -> dict[str, str]:
    """``labels`` plus the session label (which always wins: nothing declared may move a resource out)."""
    return {**labels, SESSION_LABEL: session_value(session_id)}


def merged(current: Mapping[str, str], changes: Mapping[str, str | None], *, session_id: str) -> dict[str, str]:
    """The whole map ``setLabels`` needs: ``current`` with ``changes`` applied (None removes a key), the session label
    kept. Raises ValueError naming every rule the result breaks."""
    out = {k: v for k, v in {**current, **changes}.items() if v is not None}
    out = with_session(out, session_id)
    wrong = problems(out)
    if wrong:
        raise ValueError("; ".join(wrong))
    return out
