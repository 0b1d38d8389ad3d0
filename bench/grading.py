"""Grading time per shipped lab: :func:`labctl.grading.runner.grade` on the lab's reference-solution snapshot.

    .venv/bin/python -m bench.grading [--runs 5]

For each lab of ``labs/``, the snapshot is ``tests/grading/fixtures/<lab>-solution.json`` (what the producer gives
the graders for the reference solution) and the lab's own graders and parameters run as labctl runs them: one limited
subprocess per grader, in the bubblewrap jail, one after another (``jailed grade()``). Side by side, in the same run:

- ``from source``: the jailed call with the graders' ``__pycache__`` moved aside, so every module a grader imports
  (their shared ``_kit.py``) is compiled at each start, as before labctl compiled them once
  (:mod:`labctl.grading.bytecode`); ``bytecode -/grader`` is what that saves a grader: the median time, and the CPU
  (user + system over every run of the unjailed call, with and without the bytecode: there the graders are this
  process's waited-for children, which a jail's killed pid 1 keeps them from being; loaded machines move CPU far less
  than times);
- ``unjailed grade()``: the same call with the development fallback (no bubblewrap, no uid change): the difference
  is what the jail costs (``jail +/grader``: median overhead per grader);
- ``interpreters``: the bare cost of starting as many Python interpreters as the lab has graders
  (``python -S -c pass`` as graders start, one after another): the floor for any one-process-per-grader design;
- ``in-process``: the same grader scripts' ``grade(snapshot, params)`` called in this process (imported once, no
  subprocess, no limits, no JSON round trip): the cost of the grading logic itself.

Each figure is the median and the maximum of ``--runs`` timed runs after one untimed warm-up run (file caches).
Bounded: 4 labs x (runs + 1) x 4 measurements, each well under a second; the acceptance target is under 2 s a lab.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.timing import timed
from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.grading import jail as jail_mod
from labctl.grading.runner import PYTHON_OPTIONS, default_jail, grade
from labctl.grading.snapshot import Snapshot, snapshot_dict
from labctl.settings import REPO_ROOT

LABS_DIR = REPO_ROOT / "labs"
MANIFESTS_DIR = REPO_ROOT / "manifests"
GRADERS_DIR = REPO_ROOT / "graders"
FIXTURES = REPO_ROOT / "tests" / "grading" / "fixtures"
TARGET_S = 2.0
MAX_RUNS = 50



def _labctl_grade(lab: Lab, snapshot: dict[str, Any], jail: jail_mod.Jail) -> Callable[[], object]:
    def run() -> object:
        result = grade(lab, snapshot, GRADERS_DIR, REPO_ROOT, jail=jail)
        failed = [f"{c.grader}/{c.id}" for c in result.checks if not c.passed]
        if failed or result.score != result.max_score:
            raise SystemExit(f"{lab.id}: the reference solution did not score full marks: {failed}")
        return result
    return run


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _bytecode_aside() -> Iterator[None]:
    """The graders' ``__pycache__`` renamed for the duration (``compile_once`` has run in this process already, so
    nothing writes it again meanwhile), then put back."""
    cache = GRADERS_DIR / "__pycache__"
    aside = GRADERS_DIR / "__pycache__.aside"
    if not cache.is_dir():  # labctl could not write it: the graders compile from source in both figures
        yield
        return
    cache.rename(aside)
    try:
        yield
    finally:
        aside.rename(cache)


def _interpreters(count: int) -> Callable[[], object]:
    def run() -> object:
        for _ in range(count):
            subprocess.run([sys.executable, *PYTHON_OPTIONS, "-c", "pass"], check=True)
        return count
    return run


def _load_grader(script: Path, cache: dict[Path, ModuleType]) -> ModuleType:
    if script not in cache:
        if str(GRADERS_DIR) not in sys.path:
            sys.path.insert(0, str(GRADERS_DIR))  # the graders import their helper module _kit
        spec = importlib.util.spec_from_file_location(f"bench_grader_{script.stem}", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        cache[script] = module
    return cache[script]


def _in_process(lab: Lab, snapshot: dict[str, Any], cache: dict[Path, ModuleType]) -> Callable[[], object]:
    graders = [(_load_grader((REPO_ROOT / g.script).resolve(), cache), g.params) for g in lab.graders]

    def run() -> object:
        data = snapshot_dict(Snapshot.model_validate(snapshot))  # as grade() validates and normalises it
        # Each grader receives its own decoded copy, as a subprocess would from stdin.
        text = json.dumps(data)
        return [module.grade(json.loads(text), dict(params)) for module, params in graders]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help=f"timed runs per figure (1-{MAX_RUNS}, default 5)")
    args = parser.parse_args(argv)
    runs = max(1, min(args.runs, MAX_RUNS))
    labs = loader.load_catalog(LABS_DIR, MANIFESTS_DIR)
    python = os.path.relpath(sys.executable) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable
    print(f"command: {' '.join([python, '-m', 'bench.grading', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.machine()}, "
          f"{platform.system()} {platform.release()}; Python {platform.python_version()} ({sys.executable})")
    jailed = default_jail()
    unjailed = jail_mod.unjailed("the benchmark's baseline")
    print(f"jail: {jailed.describe()}")
    print(f"runs: {runs} timed per figure after 1 warm-up; times in seconds, median / max")
    print()
    header = (f"{'lab':<22} {'graders':>7}  {'jailed grade()':>16}  {'from source':>16}  {'bytecode -/grader':>21}  "
              f"{'unjailed grade()':>16}  {'jail +/grader':>13}  {'interpreters':>16}  {'in-process':>16}  target")
    print(header)
    print("-" * len(header))
    cache: dict[Path, ModuleType] = {}
    worst = 0.0
    for lab in labs.values():
        fixture = FIXTURES / f"{lab.id}-solution.json"
        if not fixture.exists():  # the cloud labs: their graders are timed by their own tests' snapshots
            print(f"{lab.id:<22} {len(lab.graders):>7}  not timed: no reference-solution snapshot "
                  f"({fixture.relative_to(REPO_ROOT)})")
            continue
        snapshot = json.loads(fixture.read_text(encoding="utf-8"))
        graded = timed(_labctl_grade(lab, snapshot, jailed), runs)
        with _bytecode_aside():
            compiling = timed(_labctl_grade(lab, snapshot, jailed), runs)
        before = _children_cpu()
        plain = timed(_labctl_grade(lab, snapshot, unjailed), runs)
        between = _children_cpu()
        with _bytecode_aside():
            timed(_labctl_grade(lab, snapshot, unjailed), runs)
        cpu_saving = ((_children_cpu() - between) - (between - before)) / ((runs + 1) * len(lab.graders))
        bare = timed(_interpreters(len(lab.graders)), runs)
        inside = timed(_in_process(lab, snapshot, cache), runs)
        worst = max(worst, graded[1])
        overhead = (graded[0] - plain[0]) / len(lab.graders)
        saving = (compiling[0] - graded[0]) / len(lab.graders)
        verdict = "ok" if graded[1] < TARGET_S else "OVER"
        print(f"{lab.id:<22} {len(lab.graders):>7}  {graded[0]:>7.3f} / {graded[1]:.3f}  {compiling[0]:>7.3f} / "
              f"{compiling[1]:.3f}  {saving:>+7.3f} ({cpu_saving:+.3f} CPU)  {plain[0]:>7.3f} / "
              f"{plain[1]:.3f}  {overhead:>+13.3f}  {bare[0]:>7.3f} / {bare[1]:.3f}  {inside[0]:>7.3f} / "
              f"{inside[1]:.3f}  {verdict} (< {TARGET_S:g} s)")
    print()
    print(f"slowest grading run: {worst:.3f} s (target < {TARGET_S:g} s per lab)")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
