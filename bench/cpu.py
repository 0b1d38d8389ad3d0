"""Where a benchmark's CPU went: the seconds each process of the run used during a block, from ``/proc``.

A benchmark on this machine shares its cores with the control plane it drives, so a figure is read beside what each
part used meanwhile: the ``labctl serve`` process, its children (``children``: the processes it started and waited
for, the graders' jailed interpreters among them), kube-apiserver, etcd, kube-controller-manager, kwok, the benchmark
itself and the whole machine; "the rest" is the machine's busy time no named process accounts for. A jailed grader's
CPU reaches ``its children`` only as far as every process between it and the server waited for its child, and the
kernel's work to make and remove its namespaces is nobody's: on this machine ``its children`` showed a fraction of
what the graders used, the rest of it is in "the rest".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labctl.localcluster.cluster import LocalCluster

CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kwok-controller")
SERVE, CHILDREN, BENCH, MACHINE = "labctl serve", "its children", "the bench", "machine"


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far; for ``labctl serve`` also ``its children``'s (the
    waited-for children's, as the kernel adds them up); ``machine``: the busy seconds of all cores."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / tick
        if name == SERVE:
            used[CHILDREN] = (int(fields[13]) + int(fields[14])) / tick
    cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    used[MACHINE] = (sum(cpu) - cpu[3] - cpu[4]) / tick  # all but idle and iowait
    return used


def part_pids(cluster: LocalCluster, serve_pid: int) -> dict[str, int]:
    """The serve process, the benchmark's own and the control plane's processes (kwokctl's pid files)."""
    pids = {SERVE: serve_pid, BENCH: os.getpid()}
    for name in CONTROL_PLANE:
        path = cluster.cluster_dir / "pids" / f"{name}.pid"
        if path.exists():
            pids[name] = int(path.read_text().strip())
    return pids


@contextmanager
def cpu_used(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    """Fill ``into`` with the CPU seconds each process (and the machine) used during the block, and ``wall``."""
    before, started = cpu_seconds(pids), time.monotonic()
    yield
    after = cpu_seconds(pids)
    into.update({name: after[name] - before[name] for name in after if name in before})
    into["wall"] = time.monotonic() - started


def cpu_line(used: dict[str, float], during: str) -> str:
    """One line: the cores each part kept busy on average during the block."""
    wall = used.get("wall", 0.0) or 1.0
    cores = os.cpu_count() or 1
    named = [name for name in (SERVE, CHILDREN, *CONTROL_PLANE, BENCH) if name in used]
    parts = ", ".join(f"{name} {used[name] / wall:.2f}" for name in named)
    rest = used[MACHINE] - sum(used[name] for name in named)
    return (f"    cores busy during {during} ({wall:.1f} s): {MACHINE} {used[MACHINE] / wall:.2f} of {cores}; {parts}; "
            f"the rest {rest / wall:.2f}")


def cost_line(used: dict[str, float], count: int, each: str) -> str:
    """One line: the CPU seconds one of ``count`` units of work (``each``: "start", "submission") cost during the
    block, by part, and the rate the machine's cores allow at that cost: the ceiling a CPU-bound run meets."""
    cores, units = os.cpu_count() or 1, max(count, 1)
    per = used[MACHINE] / units
    plane = sum(used.get(name, 0.0) for name in CONTROL_PLANE) / units
    ours = (used.get(SERVE, 0.0) + used.get(CHILDREN, 0.0)) / units
    ceiling = f"{cores / per:.1f}" if per > 0 else "unbounded"
    return (f"    CPU a {each}: {per:.2f} core-seconds (labctl serve and its children {ours:.2f}, the control plane "
            f"{plane:.2f}); at that cost this machine's {cores} cores allow {ceiling} {each}s/s")


def settle(*, quiet_cores: float = 0.3, window_s: float = 2.0, limit_s: float = 180.0) -> float:
    """Wait until the machine is quiet (fewer than ``quiet_cores`` busy over a ``window_s`` window: the control
    plane has caught up with what the last step made), at most ``limit_s``; the seconds waited. A benchmark measures
    its block on a settled cluster, as a class meets a pool filled well before it."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = cpu_seconds({})[MACHINE]
        time.sleep(window_s)
        if (cpu_seconds({})[MACHINE] - before) / window_s < quiet_cores:
            break
    return time.monotonic() - started
