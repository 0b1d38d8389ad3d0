"""The replay of a lab's grading window at submission, on the live, frozen sandbox.

A lab with ``demand`` is graded on what its sandbox does over the lab's ``grading_window`` of simulated time from
the demand's ``start``, played ``time_scale`` times faster than real time: the window lasts
``grading_window / time_scale`` real seconds (at most the setting ``replay_max_s``: a longer window is played
faster, :func:`labctl.simulator.model.compressed`), cut into steps of ``step_seconds``
(:func:`labctl.simulator.model.plan`). Each step inventories the live pods, plays that step's slice of the window on
them (:func:`labctl.simulator.model.play`), writes their usage (kwok's usage objects, so metrics-server and the HPA the
learner made see it), prices the inventory and accrues it (:meth:`labctl.service.sweeps.Sweeper.record`): the money to
the session as any metering (it is what the sandbox really costs meanwhile), the requests and each workload's pod
cost to the service ledger's window of this submission. Then it sleeps until the step's end in real time. The
learner cannot write (the sandbox is frozen) but kube-controller-manager still acts: the HPA scales the Deployment
and ReplicaSets add and remove pods, which the next step's inventory finds. The final snapshot is taken after the
window, with the window's figures as its ``service`` section.

Replays are mostly waiting: a class's replays run side by side (on the grading workers of
:mod:`labctl.service.background`), but their steps, which read the cluster, price and write the store, take one of
the replayer's ``steps_at_once`` slots (eight per core): the sleep between steps holds none. Without the bound, an
exam's hundreds of replays stepped at once, and their store writes waited on one another past the store's busy
timeout (SQLite's single writer: "database is locked", a grading lost until the reconciler found it).

Each intermediate step's inventory comes from the provider's watch cache (``interim``): the learner cannot write the
frozen sandbox, and what kube-controller-manager does in it (the HPA's scaling, the pods it makes and removes) the
cache sees by watch; an exam's hundreds of replays then cost the apiserver no lists. The final snapshot, the graded
one, is read from the apiserver, so it sees at least what the freeze left. Where the cache is not synced (or does not
hold the sandbox) a step reads directly, said once a freeze in the log.

The loop runs in the grading task. Each step records ``progress`` and ``heartbeat_at`` on the submission, in the
transaction of the step's accrual (one store write a step, plus one read of the session and submission); a process
killed mid-replay leaves a ``grading`` submission whose heartbeat stops, which ``Submissions.reconcile`` replays
again from the start (the window's rows are cleared first; the money already accrued stays: it was spent). A session
that leaves ``submitted`` (stopped, expired) ends the replay at the next step with :class:`Cancelled`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from labctl.catalog.models import Demand
from labctl.cost.prices import PriceSheet
from labctl.grading.snapshot import Snapshot
from labctl.service import simulation
from labctl.service.sweeps import Sweeper
from labctl.simulator import ledger, model
from labctl.store.models import SandboxSession, Submission

WRITE_RETRIES = 5
# Replay steps side by side: each mostly waits on the cluster's answers (its usage write; the final snapshot's dozen
# lists) and on the store's writer, so several per core; few enough that their store writes never queue past the
# store's busy timeout.
STEPS_AT_ONCE = 8 * len(os.sched_getaffinity(0))

log = logging.getLogger("labctl.replay")

REPLAYING = "replaying"


class Cancelled(Exception):
    """The session left ``submitted`` (or the submission its grading) during the replay."""


@dataclass(frozen=True)
class Progress:
    """How far a replay is: the simulated clock reached, and real seconds done of the window's total."""

    phase: str
    simulated_at: str
    done_s: float
    total_s: float

    @classmethod
    def of(cls, demand: Demand, done: Fraction) -> Progress:
        total = model.window_seconds(demand)
        return cls(phase=REPLAYING, simulated_at=model.simulated_at(demand, done), done_s=round(float(done), 3),
                   total_s=round(float(total), 3))

    def as_json(self) -> dict[str, object]:
        return {"phase": self.phase, "simulated_at": self.simulated_at, "done_s": self.done_s,
                "total_s": self.total_s}


class Replayer:
    def __init__(self, *, sweeper: Sweeper, step_seconds: float = 5.0, steps_at_once: int = STEPS_AT_ONCE,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.sweeper = sweeper
        self.step_seconds = step_seconds
        self.slots = threading.BoundedSemaphore(steps_at_once)  # held by a step, never by the sleep between
        self.sleep = sleep          # real time must pass: the controller-manager reacts in real time
        self.monotonic = monotonic

    def run(self, *, submission_id: str, session_id: str, sheet: PriceSheet) -> Snapshot:
        """Replay the grading window of ``session_id``'s lab on its live sandbox, accruing into the window
        ``submission_id``; returns the final priced snapshot with the window's ``service`` figures.

        Raises :class:`Cancelled` when the session leaves ``submitted``, ``ProviderError`` when the sandbox cannot be
        read or written."""
        sessions = self.sweeper.sessions
        row = sessions.row_of(session_id)
        spec = sessions.spec_of(row)
        demand = self.sweeper.replayed(row.lab_id)
        if demand is None:
            raise ValueError(f"lab {spec.lab.id} declares no demand: there is no grading window to replay")
        parts = model.plan(demand, step_seconds=self.step_seconds)
        if not parts:
            raise ValueError(f"lab {spec.lab.id}'s grading window {demand.grading_window} is empty: nothing to replay")
        with self.slots:
            self._check_open(submission_id, session_id)  # one that is over clears nothing
            with sessions.store.session() as db:
                cleared = ledger.clear(db, session_id=session_id, window=submission_id)
        anchor = sessions.clock()
        begun = self.monotonic()
        log.info("replaying %s of %s for %s: %d steps of %gs%s", demand.grading_window, spec.lab.id, submission_id,
                 len(parts), self.step_seconds, " (again, from the start)" if cleared else "")
        for part in parts:
            with self.slots:
                row = self._check_open(submission_id, session_id)
                self._step(submission_id, row, demand, sheet, part=part, anchor=anchor, fresh=True,
                           beat=Progress.of(demand, part.until))
            wait = float(part.until) - (self.monotonic() - begun)
            if wait > 0:
                self.sleep(wait)
        with self.slots:
            row = self._check_open(submission_id, session_id)
            # The sandbox as the window left it: its pods' use at the window's end, the window's figures, no new
            # counts; read from the apiserver (the graded snapshot sees at least what the freeze left).
            return self._step(submission_id, row, demand, sheet, part=parts[-1], anchor=anchor, fresh=False)

    def _step(self, submission_id: str, row: SandboxSession, demand: Demand, sheet: PriceSheet, *,
              part: model.Slice, anchor: datetime, fresh: bool, beat: Progress | None = None) -> Snapshot:
        """One step: an intermediate one (``beat``: its progress) reads the watch cache and writes its accrual and the
        heartbeat in one transaction; the final one (no ``beat``) reads the apiserver."""
        sessions = self.sweeper.sessions
        spec = sessions.spec_of(row)
        now = sessions.clock()
        taken = sessions.provider.snapshot(spec, now=now, interim=beat is not None)
        step = model.play(demand, simulation.pod_states(taken), node_cpu_cores=simulation.node_cpu_cores(taken),
                          part=part, anchor=anchor)
        sessions.provider.write_usage(spec, step.usage())
        also = None if beat is None else functools.partial(self._beat, submission_id=submission_id, progress=beat,
                                                           now=now)
        for _ in range(WRITE_RETRIES):
            try:
                return self.sweeper.record(row.id, taken, sheet, now=now, step=step, fresh=fresh,
                                           window=submission_id, also=also)
            except StaleDataError:  # a sweep or a stop wrote the session meanwhile: nothing of ours was kept
                continue
        raise ValueError(f"session {row.id} kept changing under the replay's step {part.index}")

    def _check_open(self, submission_id: str, session_id: str) -> SandboxSession:
        """The session's row, read with its submission in one transaction; :class:`Cancelled` unless the session is
        ``submitted`` and the submission ``grading``."""
        with self.sweeper.sessions.store.session() as db:
            row = db.get(SandboxSession, session_id)
            sub = db.get(Submission, submission_id)
            state = sub.state if sub is not None else "gone"
        if row is None:
            raise Cancelled(f"the session is gone and the submission {state}: the replay stopped")
        if row.state != "submitted" or state != "grading":
            raise Cancelled(f"the session is {row.state} ({row.reason or 'no reason given'}) and the submission "
                            f"{state}: the replay stopped")
        return row

    @staticmethod
    def _beat(db: Session, *, submission_id: str, progress: Progress, now: datetime) -> None:
        """The step's progress and heartbeat, in the step's accrual transaction (a submission still grading)."""
        sub = db.get(Submission, submission_id)
        if sub is not None and sub.state == "grading":
            sub.progress = progress.as_json()
            sub.heartbeat_at = now
