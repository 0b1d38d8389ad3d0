"""Render time of one session's objects: the sandbox templates and the lab's starters, as a start renders them.

    .venv/bin/python -m bench.render [--sessions 200] [--runs 5]

Each timed run renders ``--sessions`` sessions of every shipped Kubernetes lab in turn (``sandbox_objects`` and
``starter_objects`` for a distinct session id, namespace and learner each), the way ``POST /v1/sessions`` does. The
baseline, in the same run, is how it was done before: a new Jinja2 environment per render (every template read and
compiled again) and PyYAML's pure-Python safe loader. Both produce the same objects (checked before timing). Each
figure is the median and the maximum of ``--runs`` timed runs after one untimed warm-up. Bounded: at most 2,000
sessions, 50 runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import yaml

from bench.timing import timed
from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import render
from labctl.settings import REPO_ROOT

MAX_SESSIONS = 2_000
MAX_RUNS = 50
MANIFESTS = REPO_ROOT / "manifests"
STARTED = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def specs(labs: list[Lab], sessions: int) -> list[SandboxSpec]:
    return [SandboxSpec(session_id=f"s-{lab.id[:8]}-{i}", lab=lab, learner_id=f"learner-{i}",
                        namespace=f"lab-{lab.id}-{i}"[:63], expires_at=STARTED + timedelta(hours=2),
                        budget_usd=5.0, started_at=STARTED)
            for i in range(sessions) for lab in labs]


def current(all_specs: list[SandboxSpec]) -> list[list[dict[str, Any]]]:
    return [render.sandbox_objects(s, MANIFESTS) + render.starter_objects(s, MANIFESTS) for s in all_specs]


class _Before:
    """The rendering of before, kept here as the baseline: a fresh environment per render, the pure-Python loader."""

    @staticmethod
    def environment(manifests_dir: Path) -> jinja2.Environment:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(manifests_dir)),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                 autoescape=False)  # noqa: S701 - YAML, not HTML
        env.globals.pop("namespace", None)
        return env

    @classmethod
    def render(cls, names: list[str], context: dict[str, Any]) -> list[dict[str, Any]]:
        env = cls.environment(MANIFESTS)
        return [doc for name in names
                for doc in yaml.load_all(env.get_template(name).render(**context), Loader=yaml.SafeLoader) if doc]


def before(all_specs: list[SandboxSpec]) -> list[list[dict[str, Any]]]:
    out = []
    for s in all_specs:
        sandbox_names = list(render.sandbox_templates(MANIFESTS))
        context = render.sandbox_context(s)
        starter_context = {"namespace": s.namespace, "session_id": s.session_id, "lab_id": s.lab.id,
                           "learner_id": s.learner_id}
        objects = _Before.render(sandbox_names, context)
        starters = _Before.render(list(s.lab.starter), starter_context)
        for doc in starters:
            meta = doc.setdefault("metadata", {})
            meta["namespace"] = s.namespace
            meta["labels"] = {**(meta.get("labels") or {}), render.SESSION_LABEL: s.session_id}
        out.append(objects + starters)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sessions, runs = min(args.sessions, MAX_SESSIONS), min(args.runs, MAX_RUNS)
    labs = [lab for lab in loader.load_catalog(REPO_ROOT / "labs", MANIFESTS).values()
            if lab.provider == "kubernetes"]
    all_specs = specs(labs, sessions)
    if current(all_specs[:len(labs)]) != before(all_specs[:len(labs)]):
        print("the two renderings differ: the benchmark would compare different work", file=sys.stderr)
        return 1
    now_med, now_max = timed(lambda: current(all_specs), runs)
    old_med, old_max = timed(lambda: before(all_specs), runs)
    n = len(all_specs)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"libyaml {'yes' if yaml.__with_libyaml__ else 'no'}")
    print(f"render {n} sessions ({len(labs)} labs x {sessions}), median / max of {runs} runs:")
    print(f"  {'labctl (one environment, libyaml)':<44} {now_med * 1000 / n:8.3f} ms/session  "
          f"(max {now_max * 1000 / n:.3f})  {n / now_med:8.0f} sessions/s")
    print(f"  {'baseline (new environment, pure-Python)':<44} {old_med * 1000 / n:8.3f} ms/session  "
          f"(max {old_max * 1000 / n:.3f})  {n / old_med:8.0f} sessions/s")
    print(f"  speed-up: {old_med / now_med:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
