"""The retry schedule of a delivery: exponential backoff with full jitter, spanning about three days.

The nominal steps are the Standard Webhooks example schedule (immediately, then 5 seconds, 5 minutes, 30 minutes,
2 hours, 5 hours, 10 hours, 10 hours) continued with 10-hour steps until the nominal span is just over three days:
13 attempts in all. Each wait is drawn with *full jitter*, uniformly from ``[0, 2 x nominal]``, so retries of many
deliveries that failed together (a receiver outage) spread out instead of arriving in a herd, while the expected wait
stays the nominal step and the expected span is the nominal 3 days 5 hours. After the last attempt the delivery is
dead. Pure functions of the attempt count, the time and a random source (seed it in tests).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

NOMINAL_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    *(timedelta(hours=10),) * 7,
)
"""The nominal wait after attempt 1, 2, ...; its length + 1 is the number of attempts before a delivery is dead."""

MAX_ATTEMPTS = len(NOMINAL_DELAYS) + 1
NOMINAL_SPAN = sum(NOMINAL_DELAYS, timedelta())
LONGEST_SPAN = 2 * NOMINAL_SPAN


def delay(attempts: int, rng: random.Random) -> timedelta | None:
    """How long to wait after ``attempts`` failed attempts; ``None`` when the schedule is exhausted."""
    if attempts < 1:
        raise ValueError(f"attempts counts the attempts made so far, at least 1, not {attempts}")
    if attempts > len(NOMINAL_DELAYS):
        return None
    ceiling = 2 * NOMINAL_DELAYS[attempts - 1].total_seconds()
    return timedelta(seconds=rng.uniform(0.0, ceiling))


def next_attempt(attempts: int, now: datetime, rng: random.Random) -> datetime | None:
    """When to try again after ``attempts`` failed attempts ending at ``now``; ``None`` = give up (dead)."""
    wait = delay(attempts, rng)
    return None if wait is None else now + wait
