"""Simulator step time: one sweep's :func:`labctl.simulator.model.step` over 200 sessions x 10 pods.

    .venv/bin/python -m bench.simulator_step [--sessions 200] [--runs 5]

Each session runs a lab with two declared workloads on a simulated day in 5 minutes (``time_scale: 288``): a web
front end with a daily profile, CPU-bound, 6 pods (one not Ready, one without a CPU limit), and an inference service
on a weekly profile, GPU-bound, 4 pods on MIG slices (1g.10gb, 3g.40gb, one whole GPU, one 1g.10gb too small for
its weights: OOM). One sweep steps every session by 30 s, each session at its own point of the day so steps cross
profile points and capacity caps. The baseline, in the same run, is the cost meter's pure pricing of the same pods:
:func:`labctl.cost.model.container_hourly_usd` for every pod on its node's unit rates from the price sheet (what a
sweep already does for each pod). Each figure is the median and the maximum of ``--runs`` timed sweeps after one
untimed warm-up. Bounded: at most 2,000 sessions, 50 runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

from bench.timing import timed
from labctl.catalog.models import Demand
from labctl.cost import model as cost_model
from labctl.cost import prices
from labctl.settings import REPO_ROOT
from labctl.simulator import model
from labctl.simulator.model import PodState

PODS_PER_SESSION = 10
MAX_SESSIONS = 2_000
MAX_RUNS = 50
STEP_S = 30
READY_AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
A100_MIB = 81920
NODE_CPU = {"cpu-node": 4, "gpu-node": 96}
GIB = 2**30

DEMAND = Demand.model_validate({"time_scale": 288, "workloads": [
    {"workload": "Deployment/web", "daily": {"00:00": 20, "04:00": 8, "09:00": 90, "14:00": 120, "20:00": 60},
     "per_request": {"cpu_core_seconds": 0.02, "memory_per_rps": "1Mi"}, "per_replica": {"memory": "256Mi"},
     "max_utilisation": 0.9},
    {"workload": "Deployment/llm", "shape": "business-hours", "peak_rps": 30,
     "per_request": {"cpu_core_seconds": 0.05, "gpu_seconds": 0.02}, "per_replica": {"memory": "6Gi",
                                                                                      "gpu_memory_mib": 9000}},
]})


def session_pods(index: int) -> list[PodState]:
    """One session's 10 pods (names unique per session, CPU limits varying a little between sessions)."""
    web = [PodState(name=f"s{index}-web-{i}", container="app", node="cpu-node", ready=i != 5,
                    cpu_limit_cores=None if i == 4 else Fraction(1 + index % 3, 2), memory_limit_bytes=GIB,
                    workload="Deployment/web") for i in range(6)]
    slices = ["nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb", "nvidia.com/gpu", "nvidia.com/mig-1g.5gb"]
    llm = []
    for i, resource in enumerate(slices):
        share, memory = model.gpu_of(resource, 1, device_memory_mib=A100_MIB)
        llm.append(PodState(name=f"s{index}-llm-{i}", container="server", node="gpu-node", ready=True,
                            cpu_limit_cores=Fraction(2), memory_limit_bytes=8 * GIB, gpu_share=share,
                            gpu_memory_mib=memory, workload="Deployment/llm"))
    return web + llm



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_step", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200, help=f"sessions per sweep (1-{MAX_SESSIONS})")
    parser.add_argument("--runs", type=int, default=5, help=f"timed sweeps per figure (1-{MAX_RUNS}, default 5)")
    args = parser.parse_args(argv)
    sessions = max(1, min(args.sessions, MAX_SESSIONS))
    runs = max(1, min(args.runs, MAX_RUNS))
    fleet = [session_pods(i) for i in range(sessions)]
    # Each session at its own moment of its simulated week, 30 s of real time per step.
    nows = [READY_AT + timedelta(seconds=STEP_S * (1 + i % 67)) for i in range(sessions)]

    def simulate() -> object:
        return [model.step(DEMAND, pods, node_cpu_cores=NODE_CPU, started_at=READY_AT, now=now, seconds=STEP_S)
                for pods, now in zip(fleet, nows, strict=True)]

    sheet = prices.load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    cpu_rates = cost_model.unit_rates(sheet.node_price("aws", "us-east-1", "m5.xlarge", "on-demand"))
    gpu_rates = cost_model.unit_rates(sheet.node_price("aws", "us-east-1", "p4de.24xlarge", "spot", gpus=8,
                                                       gpu_product="NVIDIA-A100-SXM4-80GB"))
    requests = {"cpu-node": {"cpu": "500m", "memory": "1Gi"},
                "gpu-node": {"cpu": "2", "memory": "8Gi", "nvidia.com/mig-1g.10gb": 1}}
    usage = {"cpu": 0.4, "memory": 600 * 2**20}

    def price() -> object:
        return [cost_model.container_hourly_usd(requests[p.node], usage,
                                                cpu_rates if p.node == "cpu-node" else gpu_rates,
                                                node_gpu_memory_mib=A100_MIB).hourly_usd
                for pods in fleet for p in pods]

    steps = simulate()
    assert isinstance(steps, list)
    failing = sum(len(w.failing) for one in steps for w in one.workloads)
    if failing != sessions:  # the 1g.5gb pod of each session, and nothing else
        raise SystemExit(f"expected one OOM pod per session, got {failing}")
    python = os.path.relpath(sys.executable) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable
    print(f"command: {' '.join([python, '-m', 'bench.simulator_step', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.machine()}, "
          f"{platform.system()} {platform.release()}; Python {platform.python_version()} ({sys.executable})")
    print(f"sweep: {sessions} sessions x {PODS_PER_SESSION} pods, 2 workloads each, {STEP_S} s steps; "
          f"{runs} timed sweeps after 1 warm-up; seconds, median / max")
    print()
    stepped, priced = timed(simulate, runs), timed(price, runs)
    pods = sessions * PODS_PER_SESSION
    header = f"{'figure':<44} {'sweep':>17}  {'per pod':>10}"
    print(header)
    print("-" * len(header))
    for name, (median, worst) in (("simulator step (labctl.simulator.model)", stepped),
                                  ("baseline: cost-model pricing of the same pods", priced)):
        print(f"{name:<44} {median:>7.4f} / {worst:.4f}  {median / pods * 1e6:>7.1f} us")
    print()
    print(f"simulator / pricing: {stepped[0] / priced[0]:.1f}x; one sweep's step of {sessions} sessions takes "
          f"{stepped[0] / STEP_S:.2%} of the {STEP_S} s sweep interval")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
