"""LTI 1.3 in the store: login flows waiting for their launch, launches, and scores owed to the platforms.

A login flow (``lti_flows``) is the ``state`` and ``nonce`` labctl gave one browser's login, usable once before it
expires. A launch (``lti_launches``) ties a platform's user to the session it started or resumed, with the AGS line
item its grade goes to. A score (``lti_scores``) is one ``submission.graded`` outbox event owed to a line item: made
from the outbox (so a grade committed is a score owed, whatever crashes after), sent with the webhooks' retry
schedule until the platform takes it, then ``delivered`` (or ``dead`` when the schedule is spent).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from labctl.store.models import Base, UTCDateTime


class LtiFlow(Base):
    __tablename__ = "lti_flows"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LtiLaunch(Base):
    __tablename__ = "lti_launches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    sub: Mapped[str] = mapped_column(String(255))
    learner_id: Mapped[str] = mapped_column(String(63))
    lab_id: Mapped[str] = mapped_column(String(63))
    deployment_id: Mapped[str] = mapped_column(String(255))
    resource_link_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    lineitem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LtiScore(Base):
    __tablename__ = "lti_scores"

    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the submission.graded outbox event
    launch_id: Mapped[int] = mapped_column(ForeignKey("lti_launches.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(63), index=True)
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), index=True)  # pending | failed | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
