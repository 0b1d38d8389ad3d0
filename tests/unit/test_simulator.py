"""The demand simulator as a table of fixed cases: demand spread over Ready pods, each capped by its CPU or GPU, OOM
on too little memory or too small a slice, profiles interpolated across midnight, time compressed, exact sums; its
clock, replay, usage map and unit economics."""

from __future__ import annotations

import doctest
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from labctl.catalog import loader
from labctl.catalog.models import Demand
from labctl.settings import REPO_ROOT
from labctl.simulator import clock, economics, model
from labctl.simulator.model import PodState

GIB = 2**30
MIB = 2**20
A100_MIB = 81920
MONDAY = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # a Monday; the lab's clock starts at Mon 00:00 by default
WEB = "Deployment/web"
NODES = {"cpu-1": 8, "cpu-2": 4, "gpu-1": 96}


def demand(*, time_scale: float = 1, **workload: Any) -> Demand:
    declaration = {"workload": WEB, **workload}
    return Demand.model_validate({"time_scale": time_scale, "workloads": [declaration]})


def pod(name: str, *, ready: bool = True, cpu: str | None = "2", memory: int | None = 4 * GIB, node: str = "cpu-1",
        gpu: str | None = None, workload: str = WEB, labels: dict[str, str] | None = None) -> PodState:
    share, gpu_mib = model.gpu_of(gpu, 1, device_memory_mib=A100_MIB) if gpu else (Fraction(0), 0)
    return PodState(name=name, container="app", node=node, ready=ready,
                    cpu_limit_cores=Fraction(cpu) if cpu is not None else None, memory_limit_bytes=memory,
                    gpu_share=share, gpu_memory_mib=gpu_mib, workload=workload, labels=labels or {})


def run(d: Demand, pods: list[PodState], *, seconds: float = 60, at: timedelta = timedelta(hours=1)) -> model.Step:
    return model.step(d, pods, node_cpu_cores=NODES, started_at=MONDAY, now=MONDAY + at, seconds=seconds)


CPU = {"per_request": {"cpu_core_seconds": 0.1}}          # 2 cores serve 20 requests/s
GPU = {"per_request": {"gpu_seconds": 0.02}}             # a whole GPU serves 50/s, 3g.40gb 150/7, 1g.10gb 50/7


@dataclass(frozen=True)
class Case:
    name: str
    demand: Demand
    pods: list[PodState]
    offered: Fraction
    served: Fraction
    status: dict[str, str] = field(default_factory=dict)   # pods whose status is not "serving"
    cpu_cores: dict[str, float] = field(default_factory=dict)
    engine_active: dict[str, float] = field(default_factory=dict)


CASES = [
    Case("3 ready pods under capacity serve everything", demand(rps=30, **CPU),
         [pod("a"), pod("b"), pod("c")], offered=Fraction(1800), served=Fraction(1800),
         cpu_cores={"a": 1.0, "b": 1.0, "c": 1.0}),
    Case("3 ready pods over capacity drop the excess", demand(rps=90, **CPU),
         [pod("a"), pod("b"), pod("c")], offered=Fraction(5400), served=Fraction(3600),
         cpu_cores={"a": 2.0, "b": 2.0, "c": 2.0}),
    Case("a pod that is not Ready serves nothing: the others take its share", demand(rps=30, **CPU),
         [pod("a"), pod("b"), pod("c", ready=False)], offered=Fraction(1800), served=Fraction(1800),
         status={"c": "not-ready"}, cpu_cores={"a": 1.5, "b": 1.5, "c": 0.0}),
    Case("... and over capacity the two Ready pods drop what one more would serve", demand(rps=60, **CPU),
         [pod("a"), pod("b"), pod("c", ready=False)], offered=Fraction(3600), served=Fraction(2400),
         status={"c": "not-ready"}),
    Case("max_utilisation 0.9 keeps a pod at 90 % of its CPU", demand(rps=90, max_utilisation=0.9, **CPU),
         [pod("a"), pod("b"), pod("c")], offered=Fraction(5400), served=Fraction(3240),
         cpu_cores={"a": 1.8}),
    Case("no CPU limit: the node's allocatable CPU (8 cores) is the cap", demand(rps=100, **CPU),
         [pod("a", cpu=None)], offered=Fraction(6000), served=Fraction(4800), cpu_cores={"a": 8.0}),
    Case("no CPU limit, two pods on a node: half its CPU each; a pod with a limit keeps its limit",
         demand(rps=120, **CPU), [pod("a", cpu=None), pod("b", cpu=None), pod("c", cpu="1", node="cpu-1")],
         offered=Fraction(7200), served=Fraction(60 * (40 + 40 + 10)), cpu_cores={"a": 4.0, "b": 4.0, "c": 1.0}),
    Case("no CPU limit on a smaller node (4 cores)", demand(rps=100, **CPU), [pod("a", cpu=None, node="cpu-2")],
         offered=Fraction(6000), served=Fraction(2400), cpu_cores={"a": 4.0}),
    Case("a whole GPU serves 40/s of 50 possible", demand(rps=40, **GPU), [pod("g", gpu="nvidia.com/gpu")],
         offered=Fraction(2400), served=Fraction(2400), engine_active={"g": 0.8}),
    Case("a 3g.40gb slice (3/7 of a GPU) serves 150/7 per second", demand(rps=40, **GPU),
         [pod("g", gpu="nvidia.com/mig-3g.40gb")], offered=Fraction(2400), served=Fraction(150, 7) * 60,
         engine_active={"g": 1.0}),
    Case("a 1g.10gb slice (1/7 of a GPU) serves 50/7 per second", demand(rps=40, **GPU),
         [pod("g", gpu="nvidia.com/mig-1g.10gb")], offered=Fraction(2400), served=Fraction(50, 7) * 60,
         engine_active={"g": 1.0}),
    Case("the GPU caps a pod with plenty of CPU", demand(rps=40, per_request={"cpu_core_seconds": 0.001,
                                                                            "gpu_seconds": 0.02}),
         [pod("g", gpu="nvidia.com/mig-1g.10gb")], offered=Fraction(2400), served=Fraction(50, 7) * 60,
         cpu_cores={"g": 0.05 / 7}),
    Case("a pod without a GPU serves nothing of a GPU workload", demand(rps=40, **GPU), [pod("g")],
         offered=Fraction(2400), served=Fraction(0)),
    Case("GPU OOM: 12000 MiB of weights do not fit a 1g.10gb slice", demand(rps=5, per_replica={
        "gpu_memory_mib": 12000}, **GPU), [pod("g", gpu="nvidia.com/mig-1g.10gb")], offered=Fraction(300),
         served=Fraction(0), status={"g": "oom"}),
    Case("... and fit a 2g.20gb slice", demand(rps=5, per_replica={"gpu_memory_mib": 12000}, **GPU),
         [pod("g", gpu="nvidia.com/mig-2g.20gb")], offered=Fraction(300), served=Fraction(300)),
    Case("OOM on a pod whose base memory is above its limit, Ready or not", demand(rps=10, per_replica={
        "memory": "2Gi"}, **CPU), [pod("a", memory=GIB), pod("b", memory=GIB, ready=False), pod("c")],
         offered=Fraction(600), served=Fraction(300), status={"a": "oom", "b": "oom"}),
    Case("memory at the limit under load is not OOM (1Gi + 64/s x 4Mi = 1.25Gi)", demand(
        rps=64, per_request={"cpu_core_seconds": 0.01, "memory_per_rps": "4Mi"}, per_replica={"memory": "1Gi"}),
         [pod("a", memory=GIB + 256 * MIB)], offered=Fraction(3840), served=Fraction(3840)),
    Case("... one request per second more is", demand(
        rps=65, per_request={"cpu_core_seconds": 0.01, "memory_per_rps": "4Mi"}, per_replica={"memory": "1Gi"}),
         [pod("a", memory=GIB + 256 * MIB)], offered=Fraction(3900), served=Fraction(0), status={"a": "oom"}),
    Case("memory follows the load a pod serves, not what it drops (CPU caps it at 20/s)", demand(
        rps=100, per_request={"cpu_core_seconds": 0.1, "memory_per_rps": "4Mi"}, per_replica={"memory": "1Gi"}),
         [pod("a", memory=GIB + 100 * MIB)], offered=Fraction(6000), served=Fraction(1200)),
    Case("scaled to zero: everything offered is dropped", demand(rps=30, **CPU), [],
         offered=Fraction(1800), served=Fraction(0)),
    Case("no pod Ready: everything offered is dropped", demand(rps=30, **CPU), [pod("a", ready=False)],
         offered=Fraction(1800), served=Fraction(0), status={"a": "not-ready"}),
    Case("a demand that costs nothing is served whatever the pods", demand(rps=1000), [pod("a", cpu="0.001")],
         offered=Fraction(60000), served=Fraction(60000)),
    Case("no demand", demand(rps=0, **CPU), [pod("a")], offered=Fraction(0), served=Fraction(0)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_step(case: Case) -> None:
    result = run(case.demand, case.pods).workload(WEB)
    assert (result.offered, result.served) == (case.offered, case.served)
    assert result.served + result.dropped == result.offered
    by_name = {p.name: p for p in result.pods}
    assert {name: p.status for name, p in by_name.items() if p.status != "serving"} == case.status
    for name, cores in case.cpu_cores.items():
        assert by_name[name].cpu_cores == pytest.approx(cores)
    for name, active in case.engine_active.items():
        assert by_name[name].gpu_engine_active == pytest.approx(active)
    for p in by_name.values():
        assert p.served + p.dropped == p.offered
        assert 0 <= p.gpu_engine_active <= 1
        if p.status != "serving":
            assert p.served == 0 and p.cpu_cores == 0 and p.gpu_engine_active == 0
    ready = [p for p in case.pods if p.ready]
    if ready:  # the demand is spread evenly over the Ready pods, and over nobody else
        assert {by_name[p.name].offered for p in ready} == {case.offered / len(ready)}
    assert sum((p.offered for p in result.pods), Fraction(0)) == (case.offered if ready else 0)
    assert result.failing == tuple(name for name, status in case.status.items() if status == "oom")


def test_failing_pods_say_why_and_report_what_they_held() -> None:
    d = demand(rps=65, per_request={"cpu_core_seconds": 0.01, "memory_per_rps": "4Mi"},
               per_replica={"memory": "1Gi", "gpu_memory_mib": 30000})
    ((mem,), (small,), (none,)) = (run(d, [p]).workload(WEB).pods for p in (
        pod("mem", memory=GIB + 256 * MIB, gpu="nvidia.com/gpu"),
        pod("slice", memory=8 * GIB, gpu="nvidia.com/mig-2g.20gb"), pod("none", memory=8 * GIB)))
    assert mem.reason == "OOM: needs 1284 MiB at 65 requests/s, memory limit 1280 MiB"
    assert mem.memory_bytes == GIB + 256 * MIB and mem.gpu_memory_used_mib == 30000
    assert small.reason == "GPU OOM: needs 30000 MiB of GPU memory, its GPU has 20480 MiB"
    assert small.memory_bytes == GIB and small.gpu_memory_used_mib == 20480
    assert none.reason == "GPU OOM: needs 30000 MiB of GPU memory, it has no GPU"


def test_usage_is_the_average_over_the_step_in_dcgm_terms() -> None:
    d = demand(rps=14, per_request={"cpu_core_seconds": 0.05, "gpu_seconds": 0.02, "memory_per_rps": "2Mi"},
               per_replica={"memory": "512Mi", "gpu_memory_mib": 9000})
    step = run(d, [pod("g0", gpu="nvidia.com/mig-1g.10gb"), pod("g1", gpu="nvidia.com/mig-1g.10gb"),
                   pod("idle", workload="Deployment/other")])
    g0 = step.workload(WEB).pods[0]
    assert (g0.cpu_cores, g0.gpu_engine_active, g0.gpu_memory_used_mib) == (0.35, 0.98, 9000)   # 7/s of 50/7
    assert g0.memory_bytes == 512 * MIB + 7 * 2 * MIB
    assert step.usage() == {
        "g0": {"app": {"cpu": pytest.approx(0.35), "memory": 526 * MIB, "nvidia.com/gpu": 0.98}},
        "g1": {"app": {"cpu": pytest.approx(0.35), "memory": 526 * MIB, "nvidia.com/gpu": 0.98}},
        "idle": {"app": {"cpu": 0.0, "memory": 0.0}},
    }
    assert [(p.name, p.status) for p in step.idle] == [("idle", "idle")]


def test_pods_are_matched_by_workload_or_selector_and_the_first_declaration_wins() -> None:
    d = Demand.model_validate({"workloads": [
        {"workload": WEB, "rps": 10},
        {"selector": {"app": "web"}, "rps": 4},
        {"selector": {"app": "web", "tier": "batch"}, "rps": 2},
    ]})
    step = run(d, [pod("w", labels={"app": "web"}), pod("s", workload="StatefulSet/web", labels={"app": "web"}),
                   pod("b", workload="Job/x", labels={"app": "web", "tier": "batch"}),
                   pod("o", workload="Job/y", labels={"app": "other"})])
    assert [(w.key, [p.name for p in w.pods]) for w in step.workloads] == [
        (WEB, ["w"]), ("selector app=web", ["s", "b"]), ("selector app=web,tier=batch", [])]
    assert [p.name for p in step.idle] == ["o"]
    assert step.workload("selector app=web,tier=batch").dropped == 120
    with pytest.raises(KeyError, match="no workload 'Deployment/nope'"):
        step.workload("Deployment/nope")


DAILY = {"22:00": 10, "02:00": 50}   # 30 requests/s at midnight, on the line from 22:00 to 02:00


def test_daily_profile_interpolates_across_midnight() -> None:
    curve = demand(daily=DAILY).workloads[0].curve
    hour = 3600
    assert clock.rate_at(curve, Fraction(0)) == 30
    assert clock.rate_at(curve, Fraction(23 * hour)) == 20
    assert clock.rate_at(curve, Fraction(hour)) == 40
    assert clock.rate_at(curve, Fraction(12 * hour)) == 30     # 02:00 -> 22:00 falls from 50 to 10
    assert clock.rate_at(curve, Fraction(7 * 86400 + hour)) == 40  # every day alike
    # 23:00 Sunday to 01:00 Monday: 20 -> 40 requests/s, a mean of 30, over 7200 s.
    step = run(demand(daily=DAILY), [pod("a")], seconds=7200, at=timedelta(hours=1))
    assert step.workload(WEB).offered == 216_000
    assert step.simulated_start == -3600 and step.simulated_end == 3600


def test_weekly_profile_and_named_shapes() -> None:
    weekly = demand(weekly={"Mon 00:00": 0, "Mon 12:00": 100, "Tue 00:00": 0})
    assert clock.rate_at(weekly.workloads[0].curve, Fraction(6 * 3600)) == 50
    assert clock.rate_at(weekly.workloads[0].curve, Fraction(3 * 86400)) == 0   # Thursday: Tue to next Mon
    assert clock.rate_at(weekly.workloads[0].curve, Fraction(6 * 86400)) == 0   # the weekend
    office = demand(shape="business-hours", peak_rps=200).workloads[0].curve
    assert office.period_seconds == 7 * 86400
    assert clock.rate_at(office, Fraction(86400 + 12 * 3600)) == 200        # Tue 12:00
    assert clock.rate_at(office, Fraction(86400 + 3 * 3600)) == 10          # Tue 03:00: 5 %
    diurnal = demand(shape="diurnal", peak_rps=10).workloads[0].curve
    assert clock.rate_at(diurnal, Fraction(15 * 3600)) == 10
    assert clock.rate_at(diurnal, Fraction(2 * 3600)) == Fraction(5, 2)       # 3.5 at 00:00 -> 1.5 at 04:00


def test_time_compression_plays_a_day_in_five_minutes() -> None:
    daily = {"00:00": 0, "12:00": 100}
    fast = demand(time_scale=288, daily=daily)
    whole_day = run(fast, [pod("a")], seconds=300, at=timedelta(seconds=300))
    assert whole_day.workload(WEB).offered == 300 * 50          # the day's mean rate, in 300 real seconds
    assert (whole_day.simulated_start, whole_day.simulated_end) == (0, 86400)
    morning = run(fast, [pod("a")], seconds=150, at=timedelta(seconds=150))
    assert morning.workload(WEB).offered == 150 * 50
    slow = run(demand(daily=daily), [pod("a")], seconds=150, at=timedelta(seconds=150))
    assert slow.workload(WEB).offered == Fraction(150 * 150 * 100, 2 * 43200)   # real time: barely off zero
    start = Demand.model_validate({"time_scale": 288, "start": "Tue 12:00",
                                   "workloads": [{"workload": WEB, "daily": daily}]})
    noon = run(start, [pod("a")], seconds=1, at=timedelta(seconds=1))
    assert noon.simulated_start == 86400 + 43200
    assert noon.workload(WEB).offered == pytest.approx(100, rel=1e-2)


def test_capped_profile_is_integrated_exactly_whatever_the_step_length() -> None:
    d = demand(time_scale=288, daily={"00:00": 0, "12:00": 100}, **CPU)   # 2 pods x 20/s cap 40 of up to 100
    pods = [pod("a"), pod("b")]
    one = run(d, pods, seconds=300, at=timedelta(seconds=300)).workload(WEB)
    pieces = [run(d, pods, seconds=7, at=timedelta(seconds=7 * i)).workload(WEB) for i in range(1, 43)]
    pieces.append(run(d, pods, seconds=6, at=timedelta(seconds=300)).workload(WEB))
    assert sum(p.offered for p in pieces) == one.offered == 15000
    assert sum(p.served for p in pieces) == one.served
    # served = the area under min(rate, 40): rate = 100 t / 150 s rises past 40 at t = 60 s, falls back at 240 s.
    assert one.served == Fraction(60 * 40, 2) * 2 + 180 * 40


def test_replay_plays_the_grading_window_in_steps_that_join_exactly() -> None:
    d = Demand.model_validate({"time_scale": 288, "grading_window": "2d", "workloads": [
        {"workload": WEB, "daily": {"00:00": 0, "12:00": 100}, **CPU}]})
    steps = model.replay(d, [pod("a"), pod("b")], node_cpu_cores=NODES, step_seconds=45, anchor=MONDAY)
    assert len(steps) == 14 and steps[-1].ended - steps[0].started == timedelta(seconds=600)
    assert all(a.simulated_end == b.simulated_start for a, b in itertools.pairwise(steps))
    offered, served, dropped = model.totals(steps)[WEB]
    assert (offered, served) == (2 * 15000, 2 * (2400 + 7200))
    assert served + dropped == offered


def test_gpu_of_resources() -> None:
    assert model.gpu_of("nvidia.com/gpu", 2, device_memory_mib=A100_MIB) == (2, 2 * A100_MIB)
    assert model.gpu_of("nvidia.com/mig-1g.10gb", 1, device_memory_mib=A100_MIB) == (Fraction(1, 7), 10240)
    assert model.gpu_of("nvidia.com/mig-7g.80gb", 1, device_memory_mib=A100_MIB) == (1, 81920)
    assert model.gpu_of("cpu", 4, device_memory_mib=A100_MIB) == (0, 0)
    with pytest.raises(ValueError, match="cannot hold -1"):
        model.gpu_of("nvidia.com/gpu", -1, device_memory_mib=A100_MIB)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: run(demand(rps=1), [pod("a")], seconds=0), "longer than zero seconds"),
    (lambda: run(demand(rps=1), [pod("a"), pod("a")]), "pods listed twice: a"),
    (lambda: run(demand(rps=1), [pod("a", cpu=None, node="elsewhere")]), "node 'elsewhere' has no allocatable CPU"),
    (lambda: model.step(demand(rps=1), [], node_cpu_cores={}, started_at=datetime(2026, 12, 7), now=MONDAY,
                        seconds=1), "started_at|since must carry a time zone"),
    (lambda: model.replay(demand(rps=1), [], node_cpu_cores={}, step_seconds=-1, anchor=MONDAY),
     "longer than zero"),
])
def test_bad_input_is_refused_with_a_clear_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_served_share_and_cost_per_1000_requests() -> None:
    assert economics.served_share(Fraction(2, 3), 1) == Decimal(2) / Decimal(3)
    assert economics.served_share(Decimal("950"), 1000) == Decimal("0.95")
    assert economics.served_share(0, 0) is None
    assert economics.cost_per_1000_requests(Decimal("1.5"), 3000) == Decimal("0.5")
    assert economics.cost_per_1000_requests(Decimal("1.5"), Fraction(1, 2)) == Decimal(3000)
    assert economics.cost_per_1000_requests(Decimal("1.5"), 0) is None
    with pytest.raises(ValueError, match="cannot exceed offered"):
        economics.served_share(11, 10)
    with pytest.raises(ValueError, match="cost_usd cannot be negative"):
        economics.cost_per_1000_requests(-1, 10)


def test_the_example_lab_whole_gpus_idle_at_an_eighth_and_two_1g_slices_serve_the_day() -> None:
    lab = loader.load_lab(REPO_ROOT / "tests" / "fixtures" / "labs" / "llm-serving" / "lab.yaml")
    assert lab.demand is not None
    key = "Deployment/llm-inference"

    def replicas(gpu: str, count: int) -> list[PodState]:
        return [pod(f"llm-{i}", cpu="8", memory=64 * GIB, node="gpu-1", gpu=gpu, workload=key) for i in range(count)]

    # The starter at the 14:00 peak (175 real seconds into the 5-minute day): 6 requests/s on each whole GPU.
    peak = model.step(lab.demand, replicas("nvidia.com/gpu", 2), node_cpu_cores=NODES, started_at=MONDAY,
                      now=MONDAY + timedelta(seconds=175), seconds=Fraction(1, 1000)).workload(key)
    first = peak.pods[0]
    assert first.gpu_engine_active == pytest.approx(0.12, rel=1e-4)
    assert first.gpu_memory_used_mib == 7000 and first.cpu_cores == pytest.approx(0.9, rel=1e-4)
    assert first.memory_bytes == pytest.approx(6000 * MIB, rel=1e-6)

    def day(pods: list[PodState]) -> Decimal | None:
        steps = model.replay(lab.demand, pods, node_cpu_cores=NODES, step_seconds=30, anchor=MONDAY)
        offered, served, _ = model.totals(steps)[key]
        return economics.served_share(served, offered)

    assert day(replicas("nvidia.com/mig-1g.10gb", 2)) == 1      # 6.43/s a slice covers the 6/s peak
    one_slice = day(replicas("nvidia.com/mig-1g.10gb", 1))
    assert one_slice is not None and Decimal("0.5") < one_slice < 1
    assert day(replicas("nvidia.com/mig-1g.5gb", 2)) == 0       # 7000 MiB of weights do not fit 5 GB: OOM


@pytest.mark.parametrize("module", [clock, model, economics], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted >= 1
    assert result.failed == 0
