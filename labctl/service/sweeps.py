"""The sweeps: meter every live session, then act on its timers and budget.

One pass (:meth:`Sweeper.run_once`) is level-triggered and idempotent: it first repairs what the store and the
backends disagree on (a live session whose sandbox vanished ends; a sandbox left behind a finished one goes), then
it reads the store, prices each sandbox's
current inventory, accrues ``burn rate x time since the last metering`` into the ledger in the same transaction that
moves ``last_metered_at`` (so a restart never counts the same time twice) and adds the reading to the session's
series (:mod:`labctl.store.meter_readings`, the learner page's chart), then runs the pure policy
(:mod:`labctl.service.policy`) and carries out what it decided: terminate on expiry or an exhausted budget, warn
before expiry, suspend on budget, idleness or off-hours, resume when working hours begin. A reading that fails is
counted on the session (``meter_failures``, reset by the next success); at ``meter_failure_limit`` failures in a
row the policy suspends the session, because spending nobody can follow must stop (fail closed). Where the lab declares
demand, each metering also plays one simulator step, accrues its requests and each workload's pod cost into the
service ledger's live window in the same transaction, and returns the snapshot with each declared workload's outcome
figures (``service``). While a session is ``submitted`` the sweeps still meter its money but play no demand: the
grading replays its own window (:mod:`labctl.service.replay`) through :meth:`Sweeper.record`. Cloud labs with
``guardrails`` have that snapshot judged by the detective control (:mod:`labctl.service.guardrails`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labctl.catalog.models import Demand
from labctl.cost import meter
from labctl.cost.prices import PriceSheet
from labctl.errors import LabctlError, NotFound
from labctl.grading.snapshot import ServiceFigures, Snapshot
from labctl.ports import ProviderError, SandboxSpec
from labctl.service import background, baseline, guardrails, leader, policy, simulation, states
from labctl.service.baseline import Baseline
from labctl.service.sessions import Sessions
from labctl.simulator import economics, ledger, model, starter
from labctl.store import meter_readings
from labctl.store.models import SandboxSession
from labctl.store.service_ledger import ServiceLedger

log = logging.getLogger("labctl.sweeps")

METERED_STATES = ("ready", "suspended", "submitted", "graded")
BASELINE_WAIT_S = 10.0  # the longest provisioning waits for the starter's pods before taking its baseline
BASELINE_POLL_S = 0.2


@dataclass
class SweepReport:
    metered: int = 0
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (session, kind, reason)
    errors: list[tuple[str, str]] = field(default_factory=list)


class Sweeper:
    def __init__(self, *, sessions: Sessions, prices: Callable[[], PriceSheet],
                 meter_failure_limit: int = policy.METER_FAILURE_LIMIT, simulate: bool = True,
                 replay_max_s: float | None = None) -> None:
        self.sessions = sessions
        self.prices = prices
        self.meter_failure_limit = meter_failure_limit
        self.simulate = simulate  # play labs' demand (the local cluster); off where real workloads run
        self.guardrails = guardrails.Guardrails(sessions=sessions)  # cloud labs: the detective control
        self.replay_max_s = replay_max_s  # the longest a grading window's replay lasts (labctl.service.replay)
        self._removing: list[Future[None]] = []  # this pass's sandbox removals (on background.REMOVALS)

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.sessions.clock

    def run_once(self, *, held: Callable[[], bool] = leader.always) -> SweepReport:
        """Meter every live session, then act on timers and budgets; ``held`` is asked before each session (the
        leader lock renewed), and the pass stops there once it answers ``False`` (another replica leads now)."""
        report = SweepReport()
        self._repair_disagreements(report)
        with self.sessions.store.session() as db:
            ids = list(db.scalars(select(SandboxSession.id).where(SandboxSession.state.in_(METERED_STATES))))
        sheet = self.prices()
        for done, session_id in enumerate(ids):
            if not held():
                log.warning("sweep stopped after %d of %d sessions: this replica no longer leads", done, len(ids))
                return report
            # One session's failure (an unreachable API, a surprising object) must not stop the others' sweep.
            error: str | None = None
            try:
                snapshot = self.meter(session_id, sheet)
                report.metered += 1
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                report.errors.append((session_id, f"meter: {exc}"))
                log.warning("metering %s failed: %s", session_id, exc, exc_info=not isinstance(exc, LabctlError))
            else:
                self._guard(session_id, snapshot, report)
            try:
                self._count_meter_result(session_id, error=error)
                for action in self.act(session_id):
                    report.actions.append((session_id, action.kind, action.reason))
            except Exception as exc:
                report.errors.append((session_id, f"timers: {exc}"))
                log.warning("timers of %s failed: %s", session_id, exc, exc_info=not isinstance(exc, LabctlError))
        for removal in self._removing:  # this pass's expiries and exhausted budgets, removed side by side
            removal.result()
        self._removing.clear()
        self.sessions.reconcile(held=held)
        return report

    def _repair_disagreements(self, report: SweepReport) -> None:
        """Compare the backends' sandboxes with the store: a live session whose sandbox is gone ends (terminated,
        with the reason, instead of being metered at $0/h); a sandbox left behind a finished session is removed.
        Each repair is an event; a backend that cannot list now is left for the next pass."""
        listed_at = self.clock()
        try:
            listing = self.sessions.provider.sandboxes()
        except ProviderError as exc:
            report.errors.append(("*", f"listing sandboxes: {exc}"))
            return
        present = listing.sessions
        with self.sessions.store.session() as db:
            rows = db.execute(select(SandboxSession.id, SandboxSession.state).where(
                SandboxSession.provider.in_(listing.providers),
                # A session of a cluster that did not list this pass is not judged by its silence.
                SandboxSession.cluster.is_(None) | SandboxSession.cluster.in_(listing.clusters),
                SandboxSession.state.in_(METERED_STATES) | SandboxSession.id.in_(present))).all()
        for session_id, state in rows:
            try:
                if state in METERED_STATES and session_id not in present:
                    if self.sessions.end_lost(session_id, listed_at=listed_at, actor="sweep") is not None:
                        report.actions.append((session_id, "terminate", "its sandbox no longer exists"))
                elif state in states.FINAL and session_id in present \
                        and self.sessions.remove_leftover(session_id, actor="sweep"):
                    report.actions.append((session_id, "cleanup", f"sandbox left behind a {state} session"))
            except (LabctlError, ProviderError) as exc:
                report.errors.append((session_id, f"repair: {exc}"))

    def _guard(self, session_id: str, snapshot: Snapshot, report: SweepReport) -> None:
        """The lab's guardrails over the fresh snapshot (:mod:`labctl.service.guardrails`); a failure is reported,
        and the next sweep tries again."""
        try:
            for finding in self.guardrails.check(session_id, snapshot):
                report.actions.append((session_id, f"guardrail_{finding.action}", finding.violation.detail))
        except Exception as exc:
            report.errors.append((session_id, f"guardrails: {exc}"))
            log.warning("guardrails of %s failed: %s", session_id, exc, exc_info=not isinstance(exc, LabctlError))

    def meter(self, session_id: str, sheet: PriceSheet) -> Snapshot:
        """Price the sandbox now and accrue into the ledger; returns the priced snapshot, with the ledger's figures."""
        row = self.sessions.row_of(session_id)
        spec = self.sessions.spec_of(row)
        now = self.clock()
        taken = self.sessions.provider.snapshot(spec, now=now)
        simulated = self._simulate(row, spec, taken, now=now)
        step, fresh = simulated if simulated is not None else (None, False)
        return self.record(session_id, taken, sheet, now=now, step=step, fresh=fresh)

    def record(self, session_id: str, taken: Snapshot, sheet: PriceSheet, *, now: datetime,
               step: model.Step | None = None, fresh: bool = True, window: str = ledger.LIVE,
               also: Callable[[Session], None] | None = None) -> Snapshot:
        """Price ``taken`` (with ``step``'s usage, when the simulator played one on its pods) and accrue it: money
        to the session (burn rate x time since the last metering), and, for a ``fresh`` step, its requests and each
        workload's pod cost to the service ledger's ``window``, in one transaction, with what ``also`` writes (a
        replay's heartbeat). Returns the priced snapshot with the ledger's figures (``service``: that window's)."""
        if step is not None:
            taken = simulation.with_usage(taken, step)
        priced = meter.price(taken, sheet)
        burn = round(priced.burn_rate_usd_per_hour, 6)  # the ledger's precision
        note = "; ".join(priced.warnings) or None

        def accrue(db: Session, current: SandboxSession) -> tuple[Decimal, Decimal | None,
                                                                  list[ServiceFigures] | None] | None:
            """The ledger's step in one transaction (run again on the fresh row when a command wrote it first)."""
            if current.state not in METERED_STATES:
                return None
            if also is not None:
                also(db)
            since = current.last_metered_at or current.ready_at or current.created_at
            elapsed = max(0.0, (now - since).total_seconds())
            # The rate in force since the last sweep is the one that sweep measured; the first sweep uses today's.
            rate = Decimal(current.burn_rate_usd_per_hour or 0) if current.last_metered_at else burn
            hours = Decimal(elapsed) / Decimal(3600)
            current.accrued_usd = Decimal(current.accrued_usd or 0) + rate * hours
            current.pod_hours = Decimal(current.pod_hours or 0) + priced.running_pods * hours
            current.spot_pod_hours = Decimal(current.spot_pod_hours or 0) + priced.spot_pods * hours
            current.idle_usd = Decimal(current.idle_usd or 0) + priced.idle_usd_per_hour * hours
            current.burn_rate_usd_per_hour = burn
            current.last_metered_at = max(now, current.last_metered_at or now)
            if step is not None and fresh:  # served, dropped and each workload's cost beside the money, one commit
                ledger.accrue(db, session_id=session_id, step=step, window=window,
                              costs=ledger.workload_costs(step, pod_rates(priced.snapshot)))
            service = _service(step, ledger.ledger(db, session_id=session_id, window=window)) \
                if step is not None else None
            meter_readings.record(db, session_id=session_id, at=now, accrued_usd=current.accrued_usd,
                                  burn_rate_usd_per_hour=burn,
                                  service=[f.model_dump(mode="json") for f in service] if service else None)
            if note != current.meter_note:
                for warning in priced.warnings:
                    if warning not in (current.meter_note or ""):
                        db.add(self.sessions.new_event(session_id, "pricing_warning", "meter", reason=warning))
                current.meter_note = note
            return Decimal(current.accrued_usd), current.starter_burn_rate_usd_per_hour, service

        try:
            accrued = self.sessions.write(session_id, accrue)
        except NotFound:
            accrued = None
        if accrued is None:
            return _with_ledger(priced.snapshot, burn=burn, accrued=None, starter=None)
        total, starter_burn, service = accrued
        result = _with_ledger(priced.snapshot, burn=burn, accrued=total, starter=starter_burn)
        return result.model_copy(update={"service": service}) if service is not None else result

    def replayed(self, lab_id: str) -> Demand | None:
        """The lab's demand as its grading window is replayed (compressed to ``replay_max_s`` if need be)."""
        demand = self.sessions.lab(lab_id).demand
        return None if demand is None else model.compressed(demand, max_seconds=self.replay_max_s)

    def baseline(self, session_id: str, *, wait_s: float = BASELINE_WAIT_S) -> Baseline:
        """The starter's figures (:mod:`labctl.service.baseline`), taken while provisioning: once its workloads have
        all their pods on nodes (at most ``wait_s``), its burn rate as a metering would price it now, and its play
        of the grading window. Reads the sandbox and the price sheet; writes nothing."""
        row = self.sessions.row_of(session_id)
        spec = self.sessions.snapshot_spec(row)
        deadline = time.monotonic() + wait_s
        while True:
            now = self.clock()
            taken = self.sessions.provider.snapshot(spec, now=now)
            missing = baseline.unsettled(taken)
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(BASELINE_POLL_S)
        # The starter's shape, not its first seconds: a scheduled pod still starting counts as serving.
        pods = [dataclasses.replace(p, ready=True) for p in simulation.pod_states(taken)]
        cores = simulation.node_cpu_cores(taken)
        live = spec.lab.demand if self.simulate else None
        if live is not None:  # priced with the use its demand gives it now, as a metering would
            taken = simulation.with_usage(taken, model.step(live, pods, node_cpu_cores=cores, seconds=1,
                                                            started_at=now - timedelta(seconds=1), now=now))
        sheet = self.prices()
        priced = meter.price(taken, sheet)
        window = self.replayed(row.lab_id) if self.simulate else None
        service = None if window is None else starter.figures(window, pods, node_cpu_cores=cores,
                                                               hourly_usd=pod_rates(priced.snapshot), anchor=now)
        return Baseline(burn_rate_usd_per_hour=round(priced.burn_rate_usd_per_hour, 6), service=service,
                        unsettled=tuple(missing))

    def _simulate(self, row: SandboxSession, spec: SandboxSpec, snap: Snapshot, *,
                  now: datetime) -> tuple[model.Step, bool] | None:
        """Play the lab's demand since the last metering on the pods as they are and write what they used; with
        ``True`` when the step is new time (to accrue), ``False`` for a reading taken no time after the last one
        (a submission right after a sweep), which replays the last second only for the pods' use now."""
        demand = spec.lab.demand
        if not self.simulate or demand is None or row.ready_at is None or row.state == "submitted":
            return None  # submitted: the grading replays its own window on the pods (labctl.service.replay)
        since = max(row.last_metered_at or row.ready_at, row.ready_at)
        seconds = (now - since).total_seconds()
        fresh = seconds > 0
        if not fresh:
            seconds = min(1.0, (now - row.ready_at).total_seconds())
            if seconds <= 0:
                return None
        step = model.step(demand, simulation.pod_states(snap), node_cpu_cores=simulation.node_cpu_cores(snap),
                          started_at=row.ready_at, now=now, seconds=seconds)
        self.sessions.provider.write_usage(spec, step.usage())
        return step, fresh

    def _count_meter_result(self, session_id: str, *, error: str | None) -> None:
        """A success resets the session's run of meter failures; a failure extends it (with an event)."""
        if error is None:
            with self.sessions.store.session() as db:
                db.execute(update(SandboxSession).where(SandboxSession.id == session_id,
                                                        SandboxSession.meter_failures != 0)
                           .values(meter_failures=0, version=SandboxSession.version + 1))
            return
        row = self.sessions.row_of(session_id)
        failures = (row.meter_failures or 0) + 1
        self.sessions.update(session_id, meter_failures=failures,
                             event=("meter_failed", "meter", f"reading {failures} in a row failed: {error}"))

    def act(self, session_id: str) -> list[policy.Action]:
        """Decide and carry out what the session's timers and budget call for now."""
        row = self.sessions.row_of(session_id)
        lab = self.sessions.lab(row.lab_id)
        assert row.expires_at is not None
        facts = policy.Facts(
            state=row.state, expires_at=row.expires_at, accrued_usd=Decimal(row.accrued_usd or 0),
            budget_usd=Decimal(row.budget_usd), thresholds_crossed=tuple(row.thresholds_crossed or ()),
            suspend_reason=row.suspend_reason,
            last_activity_at=row.last_activity_at,
            expiry_warned_at=row.expiry_warned_at,
            meter_failures=row.meter_failures or 0,
        )
        actions = policy.decide(facts, lab, self.clock(), meter_failure_limit=self.meter_failure_limit)
        for action in actions:
            self._carry_out(session_id, action)
        return actions

    def _carry_out(self, session_id: str, action: policy.Action) -> None:
        s = self.sessions
        row = s.row_of(session_id)
        if (action.percent is not None and action.kind in ("notify", "terminate")
                and action.percent not in (row.thresholds_crossed or [])):  # one announcement per crossing
            crossed = sorted({*(row.thresholds_crossed or []), action.percent})
            lab = s.lab(row.lab_id)
            threshold = next(t.action for t in lab.budget.thresholds if t.percent == action.percent)
            s.update(session_id, thresholds_crossed=crossed,
                     event=("budget_threshold_crossed", "meter", action.reason),
                     announce=("budget.threshold_crossed", {
                         "percent": action.percent, "accrued_usd": float(row.accrued_usd or 0),
                         "budget_usd": float(row.budget_usd), "action": threshold}))
        if action.kind == "terminate":
            s.stop(session_id, principal=None, reason=action.reason, actor="timer")
            self._removing.append(background.REMOVALS.submit(f"removing the sandbox of {session_id}",
                                                             s.finish_stop, session_id, actor="timer"))
        elif action.kind == "warn_expiry":
            row = s.row_of(session_id)
            assert row.expires_at is not None
            expires = row.expires_at
            s.update(session_id, expiry_warned_at=self.clock(), event=("expiring", "timer", action.reason),
                     announce=("session.expiring", {
                         "expires_at": expires.isoformat(),
                         "seconds_left": max(0, int((expires - self.clock()).total_seconds()))}))
        elif action.kind == "suspend":
            s.suspend(session_id, principal=None, cause=action.cause or "timer", reason=action.reason, actor="timer")
        elif action.kind == "resume":
            s.resume(session_id, principal=None, reason=action.reason, actor="timer")


def pod_rates(snap: Snapshot) -> dict[str, Decimal]:
    """Each priced pod's hourly rate, by name (what :func:`labctl.simulator.ledger.workload_costs` multiplies)."""
    return {r.name: Decimal(str(r.hourly_usd)) for r in snap.of_kind("Pod") if r.hourly_usd is not None}


def _service(step: model.Step, rows: list[ServiceLedger]) -> list[ServiceFigures]:
    """Each declared workload's figures from the ledger window's rows: requests, the cost its pods accrued step by
    step (pods that came and went included), and the unit economics of the two."""
    counted = {row.workload: row for row in rows}
    return [_figures(result.key, counted.get(result.key)) for result in step.workloads]


def _figures(workload: str, row: ServiceLedger | None) -> ServiceFigures:
    """One workload's outcome figures from its ledger row (none yet: all zero)."""
    offered, served, dropped, cost = (row.offered, row.served, row.dropped, Decimal(row.cost_usd or 0)) if row \
        else (Decimal(0),) * 4
    share = economics.served_share(served, offered)
    unit = economics.cost_per_1000_requests(cost, served)
    return ServiceFigures(workload=workload, offered=float(offered), served=float(served), dropped=float(dropped),
                          served_share=None if share is None else float(share), cost_usd=float(cost),
                          cost_per_1000_requests=None if unit is None else float(unit))


def _with_ledger(snap: Snapshot, *, burn: Decimal, accrued: Decimal | None, starter: Decimal | None) -> Snapshot:
    """The priced snapshot with the ledger's figures: the burn rate at its precision, what was accrued, the starter's
    burn rate (a new snapshot; the meter's is not changed)."""
    cost = snap.cost.model_copy(update={"burn_rate_usd_per_hour": float(burn)}
                                | ({"accrued_usd": float(accrued)} if accrued is not None else {}))
    budget = snap.budget.model_copy(update={"starter_burn_rate_usd_per_hour": float(starter)}) \
        if starter is not None else snap.budget
    return snap.model_copy(update={"cost": cost, "budget": budget})
