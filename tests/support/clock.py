"""A clock the test moves by hand, for the parts of labctl that take ``clock=`` (sessions, sweeps, policy)."""

from __future__ import annotations

from datetime import datetime, timedelta


class FakeClock:
    """Returns the same moment until :meth:`advance` moves it (named a fake: time is the one part tests must own)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
