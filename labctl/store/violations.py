"""Guardrail violations already acted on: what the detective control remembers, so each is acted on once.

One row per session, resource (``Instance/<id>``) and rule broken (``instance_type``, ``region``,
``required_tags``), written in the transaction that records its event and webhook. The sandbox cannot write here:
nothing the learner puts on a resource (a tag, a name) decides whether a violation was seen before. ``action`` is
what was done the first time; ``times`` counts how often it had to be done (a stopped instance started again is
stopped again).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from labctl.store.models import Base, UTCDateTime


class Violation(Base):
    """One rule one resource of one session broke, and what was done about it."""

    __tablename__ = "violations"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    resource: Mapped[str] = mapped_column(String(300), primary_key=True)  # Kind/name as in the snapshot
    rule: Mapped[str] = mapped_column(String(40), primary_key=True)
    detail: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(20))  # warn | stop | terminate
    times: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
