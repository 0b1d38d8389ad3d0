"""The dispatcher against a real receiver that verifies with ``standardwebhooks``, on SQLite and on PostgreSQL.

The scheduling clock is injected and moved past backoff waits; the ``webhook-timestamp`` stays real time because the
receiver checks it against its own clock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from labctl.outbox import NotFound, schedule
from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.events import EVENT_TYPES, emit
from labctl.store.db import Store
from labctl.store.webhook_models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from tests.webhooks.conftest import LOOPBACK, Clock
from tests.webhooks.helpers import deliveries, drain, emit_one, events
from tests.webhooks.receiver import Arrival, Receiver

# Longer than the largest jittered wait (2 x 10 hours), so one jump makes every failed delivery due again.
PAST_ANY_WAIT = timedelta(hours=20, seconds=1)


def _endpoint(store: Store, clock: Clock, receiver: Receiver, events: str | list[str] = "*") -> WebhookEndpoint:
    admin = Webhooks(store, targets=LOOPBACK, clock=clock)
    row = admin.create(url=receiver.url, events=events, description="exam platform")
    receiver.secrets.append(row.secret)
    return row


def test_every_event_verifies_at_an_independent_receiver(store: Store, clock: Clock, receiver: Receiver) -> None:
    _endpoint(store, clock, receiver)
    sent = [emit_one(store, clock, t, "s-1", note=f"é {t}") for t in EVENT_TYPES if t != "webhook.endpoint_disabled"]
    with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
        assert drain(dispatcher) == len(sent)
    assert [a.msg_id for a in receiver.arrivals] == sent
    assert all(a.verified for a in receiver.arrivals)
    stored = {e.id: e for e in events(store)}
    for arrival in receiver.arrivals:
        row = stored[arrival.msg_id]
        assert arrival.event == row.payload
        assert arrival.event["type"] == row.type and arrival.event["data"]["session_id"] == "s-1"
        assert arrival.event["timestamp"].endswith("Z")
        assert arrival.headers["content-type"] == "application/json"
        assert abs(int(arrival.headers["webhook-timestamp"]) - time.time()) < 60
    assert {d.state for d in deliveries(store)} == {"delivered"}
    assert {d.attempts for d in deliveries(store)} == {1}

    # One byte changed: the reference verifier rejects it, here and through the receiver's HTTP endpoint.
    first = receiver.arrivals[0]
    tampered = first.body.replace(b'"s-1"', b'"s-2"')
    assert len(tampered) == len(first.body) and tampered != first.body
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secrets[0]).verify(tampered, first.headers)
    headers = {k: v for k, v in first.headers.items() if k.startswith("webhook-")}
    assert httpx.post(receiver.url, content=tampered, headers=headers).status_code == 401
    assert httpx.post(receiver.url, content=first.body, headers=headers).status_code == 200


def test_during_a_rotation_old_and_new_secrets_both_verify(store: Store, clock: Clock, receiver: Receiver) -> None:
    admin = Webhooks(store, targets=LOOPBACK, clock=clock)
    endpoint = _endpoint(store, clock, receiver)
    old = endpoint.secret
    new = admin.rotate(endpoint.id).secret
    assert new != old and new.startswith("whsec_")
    receiver.secrets[:] = [old]  # a receiver not yet switched over
    emit_one(store, clock, "session.ready", "s-1")
    with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
        drain(dispatcher)
        (arrival,) = receiver.arrivals
        assert arrival.verified
        assert len(arrival.headers["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(arrival.body, arrival.headers)
        Webhook(old).verify(arrival.body, arrival.headers)

        # Once the overlap is over only the new secret signs: the old receiver refuses, a switched one accepts.
        Webhooks(store, targets=LOOPBACK, clock=clock, rotation_overlap=timedelta(0)).rotate(endpoint.id)
        newest = Webhooks(store, targets=LOOPBACK).get(endpoint.id).secret
        emit_one(store, clock, "session.terminated", "s-1")
        drain(dispatcher)
        assert not receiver.arrivals[-1].verified
        assert len(receiver.arrivals[-1].headers["webhook-signature"].split(" ")) == 1
        receiver.secrets[:] = [newest]
        clock.advance(PAST_ANY_WAIT)
        drain(dispatcher)
    assert receiver.arrivals[-1].verified
    assert [d.state for d in deliveries(store)] == ["delivered", "delivered"]


def test_receiver_down_then_up_gets_everything_once_in_order_per_session(store: Store, clock: Clock) -> None:
    receiver = Receiver().start()
    try:
        _endpoint(store, clock, receiver)
        receiver.stop()
        assert receiver.refuses()
        emitted = [
            emit_one(store, clock, "session.ready", "s-1"),
            emit_one(store, clock, "session.ready", "s-2"),
            emit_one(store, clock, "budget.threshold_crossed", "s-2", percent=50),
            emit_one(store, clock, "session.terminated", "s-1"),
            emit_one(store, clock, "session.suspended", "s-2"),
            emit_one(store, clock, "session.terminated", "s-2"),
            emit_one(store, clock, "submission.failed", None, reason="no session"),
        ]
        with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
            # Only the oldest delivery of each session is tried while the one before it is not through.
            assert dispatcher.run_once() == 3
            by_event = {d.event_id: d for d in deliveries(store)}
            assert by_event[emitted[0]].state == "failed" and by_event[emitted[0]].attempts == 1
            assert "ConnectError" in (by_event[emitted[0]].last_error or "")
            assert by_event[emitted[3]].state == "pending" and by_event[emitted[3]].attempts == 0
            assert dispatcher.run_once() == 0  # nothing due until the backoff wait passes
            for _ in range(3):  # down for a while: more failed attempts
                clock.advance(PAST_ANY_WAIT)
                assert dispatcher.run_once() == 3
            receiver.start()
            assert not receiver.refuses()
            for _ in range(10):
                clock.advance(PAST_ANY_WAIT)
                drain(dispatcher)
                if all(d.state == "delivered" for d in deliveries(store)):
                    break
    finally:
        receiver.stop()
    assert all(d.state == "delivered" for d in deliveries(store))
    unique = receiver.unique()
    assert sorted(a.msg_id for a in unique) == sorted(emitted)
    assert len(receiver.arrivals) == len(emitted)  # nothing arrived twice
    assert all(a.verified for a in receiver.arrivals)
    for session in ("s-1", "s-2"):
        order = [a.msg_id for a in unique if a.event["data"]["session_id"] == session]
        assert order == [e for e in emitted if e in order], f"{session} arrived out of order"
    types_s1 = [a.event["type"] for a in unique if a.event["data"]["session_id"] == "s-1"]
    assert types_s1 == ["session.ready", "session.terminated"]


def test_a_failing_delivery_holds_back_only_its_own_session(store: Store, clock: Clock) -> None:
    failures = Counter[str]()

    def flaky(arrival: Arrival) -> int:
        if arrival.event["type"] == "session.ready" and failures[arrival.msg_id] < 2:
            failures[arrival.msg_id] += 1
            return 503
        return 204

    receiver = Receiver(status=flaky).start()
    try:
        _endpoint(store, clock, receiver)
        ready = emit_one(store, clock, "session.ready", "s-1")
        terminated = emit_one(store, clock, "session.terminated", "s-1")
        other = emit_one(store, clock, "session.terminated", "s-2")
        with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
            assert dispatcher.run_once() == 2
            states = {d.event_id: (d.state, d.last_status) for d in deliveries(store)}
            assert states == {ready: ("failed", 503), terminated: ("pending", None), other: ("delivered", 204)}
            clock.advance(PAST_ANY_WAIT)
            assert dispatcher.run_once() == 1  # ready fails again; terminated still waits behind it
            clock.advance(PAST_ANY_WAIT)
            assert drain(dispatcher) == 2  # ready, then terminated
    finally:
        receiver.stop()
    assert [a.msg_id for a in receiver.unique()] == [other, ready, terminated]


def test_emit_belongs_to_the_callers_transaction_and_reaches_only_subscribers(store: Store, clock: Clock,
                                                                              receiver: Receiver) -> None:
    admin = Webhooks(store, targets=LOOPBACK, clock=clock)
    everything = _endpoint(store, clock, receiver)
    grades = admin.create(url=receiver.url, events=["submission.graded"])
    off = admin.create(url=receiver.url, events="*")
    admin.disable(off.id)

    with pytest.raises(RuntimeError, match="state change failed"), store.session() as db:
        emit(db, type="session.ready", data={}, session_id="s-1", now=clock())
        raise RuntimeError("the state change failed after the event was added")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        assert db.scalar(select(func.count()).select_from(WebhookDelivery)) == 0

    emit_one(store, clock, "session.ready", "s-1")
    emit_one(store, clock, "submission.graded", "s-1", score=8, max_score=10)
    pairs = sorted((d.endpoint_id, d.state) for d in deliveries(store))
    assert pairs == sorted([(everything.id, "pending"), (everything.id, "pending"), (grades.id, "pending")])
    with pytest.raises(ValueError, match="unknown event type"), store.session() as db:
        emit(db, type="session.exploded", data={}, session_id=None, now=clock())
    with pytest.raises(TypeError), store.session() as db:
        emit(db, type="session.ready", data={"when": object()}, session_id=None, now=clock())


def test_dead_after_the_schedule_then_the_endpoint_is_disabled_and_redeliver_works(store: Store, clock: Clock,
                                                                                     receiver: Receiver) -> None:
    broken = Receiver(status=lambda a: 500).start()
    try:
        admin = Webhooks(store, targets=LOOPBACK, clock=clock)
        failing = _endpoint(store, clock, broken)
        watcher = _endpoint(store, clock, receiver, events=["webhook.endpoint_disabled"])
        first = emit_one(store, clock, "session.ready", "s-1")
        second = emit_one(store, clock, "session.ready", "s-2")
        with Dispatcher(store, targets=LOOPBACK, clock=clock, disable_after=2) as dispatcher:
            for _ in range(schedule.MAX_ATTEMPTS):
                assert dispatcher.run_once() == 2
                clock.advance(PAST_ANY_WAIT)
            by_event = {d.event_id: d for d in deliveries(store) if d.endpoint_id == failing.id}
            for event_id in (first, second):
                assert by_event[event_id].state == "dead"
                assert by_event[event_id].attempts == schedule.MAX_ATTEMPTS
                assert by_event[event_id].last_status == 500 and by_event[event_id].next_attempt_at is None
            assert len(broken.arrivals) == 2 * schedule.MAX_ATTEMPTS

            endpoint = admin.get(failing.id)
            assert endpoint.disabled_at is not None and endpoint.consecutive_failures == 2
            assert "2 deliveries in a row died" in (endpoint.disabled_reason or "")
            drain(dispatcher)  # the disabled event goes to the endpoint that subscribed to it
            (notice,) = receiver.unique()
            assert notice.event["type"] == "webhook.endpoint_disabled"
            assert notice.event["data"]["endpoint_id"] == failing.id
            assert [d.endpoint_id for d in deliveries(store) if d.event_id == notice.msg_id] == [watcher.id]

            # A disabled endpoint gets nothing, even redelivered messages; enabled again, they go out.
            new = emit_one(store, clock, "session.terminated", "s-3")
            assert all(d.endpoint_id != failing.id for d in deliveries(store) if d.event_id == new)
            dead = [d for d in deliveries(store) if d.endpoint_id == failing.id]
            for d in dead:
                view = admin.redeliver(d.id)
                assert (view.delivery.state, view.delivery.attempts, view.event_type) == ("pending", 0,
                                                                                          "session.ready")
            assert dispatcher.run_once() == 0
            broken.status = None
            admin.enable(failing.id)
            assert drain(dispatcher) == 2
            with pytest.raises(NotFound, match="no delivery 999999"):
                dispatcher.redeliver(999999)
    finally:
        broken.stop()
    assert sorted(a.msg_id for a in broken.unique()) == sorted([first, second])
    assert {d.state for d in deliveries(store)} == {"delivered"}
    assert admin.get(failing.id).consecutive_failures == 0


def test_a_delivered_message_can_be_sent_again_with_the_same_id(store: Store, clock: Clock,
                                                                receiver: Receiver) -> None:
    _endpoint(store, clock, receiver)
    msg = emit_one(store, clock, "submission.graded", "s-1", score=7, max_score=10)
    with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
        drain(dispatcher)
        (delivery,) = deliveries(store)
        dispatcher.redeliver(delivery.id)
        drain(dispatcher)
    assert [a.msg_id for a in receiver.arrivals] == [msg, msg]
    assert receiver.arrivals[0].headers["webhook-id"] == receiver.arrivals[1].headers["webhook-id"]
    assert len(receiver.unique()) == 1


def test_at_most_the_concurrency_cap_is_in_flight_per_endpoint(store: Store, clock: Clock) -> None:
    slow = Receiver(delay_s=0.2).start()
    try:
        _endpoint(store, clock, slow)
        for i in range(8):
            emit_one(store, clock, "budget.threshold_crossed", None, n=i)
        with Dispatcher(store, targets=LOOPBACK, clock=clock, per_endpoint_concurrency=2, max_workers=16) as dispatcher:
            started = time.monotonic()
            assert dispatcher.run_once() == 8
            elapsed = time.monotonic() - started
    finally:
        slow.stop()
    assert slow.max_in_flight == 2
    assert elapsed >= 4 * 0.2 * 0.9  # 8 requests, 2 at a time


def test_each_attempt_has_a_timeout(store: Store, clock: Clock) -> None:
    hanging = Receiver(delay_s=3).start()
    try:
        _endpoint(store, clock, hanging)
        emit_one(store, clock, "session.ready", "s-1")
        with Dispatcher(store, targets=LOOPBACK, clock=clock, attempt_timeout_s=0.3) as dispatcher:
            started = time.monotonic()
            assert dispatcher.run_once() == 1
            assert time.monotonic() - started < 2
    finally:
        hanging.stop()
    (delivery,) = deliveries(store)
    assert delivery.state == "failed" and delivery.last_status is None
    assert "Timeout" in (delivery.last_error or "")


def test_two_dispatchers_never_send_the_same_delivery_twice(store: Store, clock: Clock) -> None:
    fast = Receiver(keep_alive=True).start()
    try:
        _endpoint(store, clock, fast)
        with store.session() as db:
            emitted = [emit(db, type="budget.threshold_crossed", data={"n": i}, session_id=None, now=clock()).id
                       for i in range(300)]
        a = Dispatcher(store, targets=LOOPBACK, clock=clock, batch_size=20, per_endpoint_concurrency=4, claim_rounds=2)
        b = Dispatcher(store, targets=LOOPBACK, clock=clock, batch_size=20, per_endpoint_concurrency=4, claim_rounds=2)
        with a, b:
            threads = [threading.Thread(target=drain, args=(d,), kwargs={"rounds": 1000}) for d in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
    finally:
        fast.stop()
    assert sorted(x.msg_id for x in fast.arrivals) == sorted(emitted)  # each exactly once, none twice
    assert {d.state for d in deliveries(store)} == {"delivered"}
