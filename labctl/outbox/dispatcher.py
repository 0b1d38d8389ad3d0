"""The dispatcher: sends due deliveries from the outbox, signed, in order per session, and records what happened.

One sweep (:meth:`Dispatcher.run_once`) has three steps:

1. **Claim** due deliveries in a short transaction. A delivery is due when it is ``pending`` or ``failed`` with
   ``next_attempt_at`` passed, its endpoint is enabled, and no older delivery for the same endpoint and session is
   still undelivered (so ``session.terminated`` never overtakes ``session.ready``). Claiming counts the attempt and
   moves ``next_attempt_at`` to the end of a *lease*; the update is a compare-and-set (is the row still due?) with
   ``RETURNING``, so two dispatchers never both win a row, and on PostgreSQL the candidates are read with
   ``FOR UPDATE SKIP LOCKED`` so concurrent dispatchers do not even wait for each other. A dispatcher killed
   mid-sweep leaves its claimed rows pending; they become due again when the lease ends, so nothing is lost (a
   receiver may see a message twice, with the same ``webhook-id``).
2. **Send** outside any transaction, in a thread pool, at most ``per_endpoint_concurrency`` requests at a time per
   endpoint, each attempt with its own timeout. A 2xx answer is delivered; anything else, or no answer, is a failure.
3. **Record** the outcomes in one transaction: delivered, ``failed`` with the next attempt from the retry schedule,
   or ``dead`` when the schedule is exhausted. An endpoint whose deliveries die ``disable_after`` times in a row is
   disabled, and a ``webhook.endpoint_disabled`` event is emitted to the other endpoints.

Every connection goes through :class:`~labctl.outbox.targets.PinnedTransport`: the endpoint's host is resolved and
checked against the target policy at connect time, and the checked address is the one connected to, so a name that
now resolves to a private address is refused (a failed attempt saying why) instead of reached.

Two clocks: ``clock`` decides what is due (inject one in tests to jump past backoff waits); ``wall_clock`` stamps the
``webhook-timestamp`` header, which receivers compare with their own clocks.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, aliased

import labctl
from labctl.outbox import events, schedule, signing
from labctl.outbox.endpoints import redeliver as _redeliver
from labctl.outbox.targets import PinnedTransport, TargetPolicy
from labctl.store.db import Store
from labctl.store.webhook_models import OutboxEvent, WebhookDelivery, WebhookEndpoint

log = logging.getLogger("labctl.outbox")

OPEN_STATES = ("pending", "failed")
USER_AGENT = f"labctl-webhooks/{labctl.__version__}"
MAX_ANSWER_BYTES = 64 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    attempts: int  # the attempt count after claiming: the compare-and-set value when recording
    endpoint_id: str
    url: str
    msg_id: str
    body: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Dispatcher:
    """Delivers the outbox. Safe to run in several processes against one PostgreSQL store; one per SQLite file."""

    def __init__(self, store: Store, *, targets: TargetPolicy, clock: Callable[[], datetime] = utcnow,
                 wall_clock: Callable[[], datetime] = utcnow, transport: httpx.BaseTransport | None = None,
                 attempt_timeout_s: float = 10.0, per_endpoint_concurrency: int = 4, disable_after: int = 5,
                 batch_size: int = 100, claim_rounds: int = 4, lease_margin_s: float = 30.0,
                 max_workers: int = 32, rng: random.Random | None = None) -> None:
        if per_endpoint_concurrency < 1 or claim_rounds < 1 or batch_size < 1 or disable_after < 1:
            raise ValueError("per_endpoint_concurrency, claim_rounds, batch_size and disable_after must be >= 1")
        self.store = store
        self.clock = clock
        self.wall_clock = wall_clock
        self.attempt_timeout_s = attempt_timeout_s
        self.per_endpoint_concurrency = per_endpoint_concurrency
        self.disable_after = disable_after
        self.batch_size = batch_size
        self.claim_rounds = claim_rounds
        self.lease_margin_s = lease_margin_s
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        workers = max(1, max_workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        pinned = PinnedTransport(targets, transport or httpx.HTTPTransport(limits=limits))
        self._http = httpx.Client(transport=pinned, timeout=httpx.Timeout(attempt_timeout_s), follow_redirects=False,
                                  headers={"user-agent": USER_AGENT})
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._gates_lock = threading.Lock()
        self._postgres = store.engine.dialect.name == "postgresql"

    # -- public ----------------------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """One sweep: claim what is due, send it, record the outcomes; returns how many attempts were made."""
        jobs = self._claim(_utc(self.clock()))
        if not jobs:
            return 0
        outcomes = list(self._pool.map(self._attempt, jobs))
        self._record(outcomes)
        return len(outcomes)

    def run_forever(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Sweep until ``stop`` is set: back to back while there is work, every ``interval_s`` when idle."""
        while not stop.is_set():
            try:
                sent = self.run_once()
            except Exception:  # a broken sweep (database restarting) must not end delivery; the next one retries
                log.exception("webhook dispatch sweep failed")
                sent = 0
            if not sent:
                stop.wait(interval_s)

    def redeliver(self, delivery_id: int) -> WebhookDelivery:
        """Reset a delivery to pending, due now, with a fresh retry schedule."""
        return _redeliver(self.store, delivery_id, now=_utc(self.clock()))

    def close(self) -> None:
        """Wait for attempts in flight, then release the threads and connections."""
        self._pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- claim -----------------------------------------------------------------------------------------------------

    def _claim(self, now: datetime) -> list[_Job]:
        d = WebhookDelivery
        older = aliased(WebhookDelivery)
        blocked = (exists().where(older.endpoint_id == d.endpoint_id, older.session_id == d.session_id,
                                  older.id < d.id, older.state.in_(OPEN_STATES)))
        query = (select(d.id, d.endpoint_id)
                 .join(WebhookEndpoint, WebhookEndpoint.id == d.endpoint_id)
                 .where(d.state.in_(OPEN_STATES), d.next_attempt_at <= now, WebhookEndpoint.disabled_at.is_(None),
                        ~blocked)
                 .order_by(d.state, d.next_attempt_at, d.id)  # the order of the due index: no sort
                 .limit(self.batch_size))
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=d)
        per_endpoint_cap = self.per_endpoint_concurrency * self.claim_rounds
        with self.store.session() as db:
            chosen: dict[str, list[int]] = defaultdict(list)
            for delivery_id, endpoint_id in db.execute(query).all():
                if len(chosen[endpoint_id]) < per_endpoint_cap:
                    chosen[endpoint_id].append(delivery_id)
            claimed: dict[int, int] = {}
            for ids in chosen.values():
                # Long enough for every claimed row of this endpoint to be tried, with each phase of an attempt
                # (connect, send, answer) allowed the full timeout.
                rounds = math.ceil(len(ids) / self.per_endpoint_concurrency)
                lease_until = now + timedelta(seconds=rounds * 3 * self.attempt_timeout_s + self.lease_margin_s)
                # Compare-and-set: a row another dispatcher claimed since the read has its lease in the future and
                # no longer matches (SQLite runs writers one at a time; PostgreSQL re-checks a row it waited for).
                won = db.execute(update(d)
                                 .where(d.id.in_(ids), d.state.in_(OPEN_STATES), d.next_attempt_at <= now)
                                 .values(attempts=d.attempts + 1, next_attempt_at=lease_until, last_attempt_at=now)
                                 .returning(d.id, d.attempts)
                                 .execution_options(synchronize_session=False))
                claimed.update({delivery_id: attempts for delivery_id, attempts in won.all()})
            if not claimed:
                return []
            details = db.execute(
                select(d.id, d.endpoint_id, WebhookEndpoint.url, WebhookEndpoint.secret,
                       WebhookEndpoint.previous_secret, WebhookEndpoint.previous_secret_expires_at, OutboxEvent.id,
                       OutboxEvent.payload)
                .join(WebhookEndpoint, WebhookEndpoint.id == d.endpoint_id)
                .join(OutboxEvent, OutboxEvent.id == d.event_id)
                .where(d.id.in_(list(claimed)))
                .order_by(d.id)).all()
        wall = self.wall_clock()
        jobs = []
        for delivery_id, endpoint_id, url, secret, previous, previous_expires, msg_id, payload in details:
            active = signing.active_secrets(secret=secret, previous_secret=previous,
                                            previous_expires_at=previous_expires, now=wall)
            jobs.append(_Job(delivery_id=delivery_id, attempts=claimed[delivery_id], endpoint_id=endpoint_id, url=url,
                             msg_id=msg_id, body=events.body(payload), secrets=tuple(active)))
        return jobs

    # -- send ------------------------------------------------------------------------------------------------------

    def _gate(self, endpoint_id: str) -> threading.BoundedSemaphore:
        with self._gates_lock:
            gate = self._gates.get(endpoint_id)
            if gate is None:
                gate = self._gates[endpoint_id] = threading.BoundedSemaphore(self.per_endpoint_concurrency)
            return gate

    def _attempt(self, job: _Job) -> _Outcome:
        with self._gate(job.endpoint_id):
            try:
                headers = signing.headers(msg_id=job.msg_id, timestamp=self.wall_clock(), body=job.body,
                                          secrets=job.secrets)
                headers["content-type"] = "application/json"
                with self._http.stream("POST", job.url, content=job.body.encode(), headers=headers) as response:
                    status = response.status_code
                    # Only the status matters. Reading a short answer to its end lets the connection be reused; a
                    # long one is cut off (the connection is then closed) so a chatty receiver costs little.
                    read = 0
                    for chunk in response.iter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
            except httpx.HTTPError as exc:
                return _Outcome(job, None, f"{type(exc).__name__}: {exc}"[:1000])
            except Exception as exc:  # whatever goes wrong with one attempt is that attempt's failure, not the sweep's
                log.exception("unexpected error delivering %s to %s", job.msg_id, job.url)
                return _Outcome(job, None, f"{type(exc).__name__}: {exc}"[:1000])
        return _Outcome(job, status, None if 200 <= status < 300 else f"HTTP {status}")

    # -- record ----------------------------------------------------------------------------------------------------

    def _record(self, outcomes: list[_Outcome]) -> None:
        now = _utc(self.clock())
        by_id = {o.job.delivery_id: o for o in outcomes}
        with self.store.session() as db:
            rows = db.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(list(by_id)))
                              .order_by(WebhookDelivery.id)).all()
            endpoints = {e.id: e for e in db.scalars(select(WebhookEndpoint).where(
                WebhookEndpoint.id.in_({o.job.endpoint_id for o in outcomes}))).all()}
            for row in rows:
                outcome = by_id[row.id]
                if row.attempts != outcome.job.attempts or row.state not in OPEN_STATES:
                    continue  # redelivered (or recorded by another dispatcher) meanwhile: that one owns it now
                endpoint = endpoints[row.endpoint_id]
                row.last_status = outcome.status
                row.last_error = outcome.error
                if outcome.ok:
                    row.state = "delivered"
                    row.delivered_at = now
                    row.next_attempt_at = None
                    endpoint.consecutive_failures = 0
                    continue
                retry_at = schedule.next_attempt(row.attempts, now, self.rng)
                if retry_at is not None:
                    row.state = "failed"
                    row.next_attempt_at = retry_at
                    continue
                row.state = "dead"
                row.next_attempt_at = None
                log.warning("delivery %d of %s to %s is dead after %d attempts: %s", row.id, row.event_id,
                            endpoint.url, row.attempts, outcome.error)
                self._died(db, endpoint, outcome.error, now)

    def _died(self, db: Session, endpoint: WebhookEndpoint, error: str | None, now: datetime) -> None:
        endpoint.consecutive_failures += 1
        if endpoint.disabled_at is not None or endpoint.consecutive_failures < self.disable_after:
            return
        reason = (f"{endpoint.consecutive_failures} deliveries in a row died after the whole retry schedule; "
                  f"last error: {error}")
        endpoint.disabled_at = now
        endpoint.disabled_reason = reason
        log.warning("webhook endpoint %s (%s) disabled: %s", endpoint.id, endpoint.url, reason)
        db.flush()  # the endpoint is disabled before the event is fanned out, so it is not sent to itself
        events.emit(db, type="webhook.endpoint_disabled", session_id=None, now=now,
                    data={"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason})


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
