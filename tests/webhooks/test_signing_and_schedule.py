"""Pure parts: secrets and signatures against the reference ``standardwebhooks`` verifier, and the retry schedule."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from labctl.outbox import schedule, signing
from labctl.outbox.events import validate_types

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_headers_verify_with_the_reference_package_and_one_changed_byte_fails() -> None:
    secret = signing.new_secret()
    now = datetime.now(UTC)
    body = '{"type":"session.ready","data":{"session_id":"s-1"}}'
    headers = signing.headers(msg_id="msg_1", timestamp=now, body=body, secrets=[secret])
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(body.encode(), headers) == {"type": "session.ready", "data": {"session_id": "s-1"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("s-1", "s-2").encode(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body.encode(), headers)


def test_during_a_rotation_both_secrets_sign_and_each_verifies_alone() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    active = signing.active_secrets(secret=new, previous_secret=old, previous_expires_at=NOW + timedelta(hours=1),
                                    now=NOW)
    assert active == [new, old]
    body = "{}"
    headers = signing.headers(msg_id="msg_2", timestamp=datetime.now(UTC), body=body, secrets=active)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(sig.startswith("v1,") for sig in headers["webhook-signature"].split(" "))
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)


def test_the_previous_secret_stops_signing_when_the_overlap_ends() -> None:
    assert signing.active_secrets(secret="whsec_bmV3", previous_secret="whsec_b2xk", previous_expires_at=NOW,
                                  now=NOW) == ["whsec_bmV3"]
    naive_future = (NOW + timedelta(seconds=1)).replace(tzinfo=None)  # SQLite hands back naive UTC
    assert len(signing.active_secrets(secret="whsec_bmV3", previous_secret="whsec_b2xk",
                                      previous_expires_at=naive_future, now=NOW)) == 2


@pytest.mark.parametrize(("attempts", "nominal"), [
    (1, timedelta(seconds=5)), (2, timedelta(minutes=5)), (3, timedelta(minutes=30)), (4, timedelta(hours=2)),
    (5, timedelta(hours=5)), (6, timedelta(hours=10)), (12, timedelta(hours=10)),
])
def test_each_wait_is_full_jitter_around_the_nominal_step(attempts: int, nominal: timedelta) -> None:
    rng = random.Random(7)
    waits = [schedule.delay(attempts, rng) for _ in range(2000)]
    assert all(w is not None and timedelta(0) <= w <= 2 * nominal for w in waits)
    mean = sum((w for w in waits if w is not None), timedelta()) / len(waits)
    assert abs(mean - nominal) < nominal * 0.06
    assert min(w for w in waits if w is not None) < nominal * 0.05  # full jitter: it can be almost immediate


@pytest.mark.parametrize(("seed", "attempts", "expected_s"), [
    (1, 1, 1.343642),
    (1, 2, 80.618546),
    (42, 3, 2301.936474),
    (42, 7, 46038.729489),
])
def test_a_seeded_schedule_is_reproducible(seed: int, attempts: int, expected_s: float) -> None:
    wait = schedule.delay(attempts, random.Random(seed))
    assert wait is not None
    assert wait.total_seconds() == pytest.approx(expected_s, abs=1e-5)
    assert schedule.next_attempt(attempts, NOW, random.Random(seed)) == NOW + wait


def test_the_schedule_spans_about_three_days_then_gives_up() -> None:
    assert schedule.MAX_ATTEMPTS == 13
    assert timedelta(days=3) < schedule.NOMINAL_SPAN < timedelta(days=3, hours=6)
    spans = []
    for seed in range(200):
        rng = random.Random(seed)
        span = timedelta()
        for attempts in range(1, schedule.MAX_ATTEMPTS):
            wait = schedule.delay(attempts, rng)
            assert wait is not None
            span += wait
        assert schedule.delay(schedule.MAX_ATTEMPTS, rng) is None
        assert schedule.next_attempt(schedule.MAX_ATTEMPTS, NOW, rng) is None
        spans.append(span)
    assert all(s <= schedule.LONGEST_SPAN for s in spans)
    mean = sum(spans, timedelta()) / len(spans)
    assert timedelta(days=2, hours=18) < mean < timedelta(days=3, hours=16)


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        schedule.delay(0, random.Random(0))


def test_subscriptions_are_star_or_known_types() -> None:
    assert validate_types("*") == "*"
    assert validate_types(["session.terminated", "session.ready", "session.ready"]) == ["session.ready",
                                                                                          "session.terminated"]
    with pytest.raises(ValueError, match="unknown event type"):
        validate_types(["session.exploded"])
    with pytest.raises(ValueError, match="at least one"):
        validate_types([])
    with pytest.raises(ValueError, match="already means"):
        validate_types(["*", "session.ready"])
