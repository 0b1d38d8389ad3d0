#!/usr/bin/env python3
"""Unit cost: each workload of the lab's simulated demand costs at most a target per 1,000 requests served.

Reads the snapshot's ``service`` section (the cost of the workload's pods over the requests it served, from labctl's
meter and service ledger). Dropped requests earn nothing, so a cut that drops traffic raises the unit cost; pair this
check with ``slo``. One check per workload: passes at or under ``max_usd_per_1000``; above it the score falls
linearly to 0 at twice the target. With ``starter_usd_per_1000`` the feedback says how far from the starter's figure
the learner moved. A workload that served nothing makes its check fail with score 0 (nothing served has no unit
cost worth paying).

Parameters (YAML, as in lab.yaml)::

    params:
      workloads: [Deployment/llm-inference]   # default: every workload in the snapshot's service section
      max_usd_per_1000: 0.05                  # required
      starter_usd_per_1000: 0.40              # optional: the starter's figure, for the feedback
"""

from __future__ import annotations

from _kit import Json, ParamError, check, main, optional_number, param_number, param_strings, problem


def grade(snapshot: Json, params: Json) -> list[Json]:
    target = param_number(params, "max_usd_per_1000", low=0)
    starter = optional_number(params, "starter_usd_per_1000", low=0)
    figures = {str(f.get("workload")): f for f in snapshot.get("service") or []}
    wanted = param_strings(params, "workloads") or list(figures)
    if not wanted:
        raise ParamError("name the 'workloads' to judge: the snapshot has no simulated demand")
    return [_judge(ref, figures.get(ref), target, starter) for ref in wanted]


def _judge(ref: str, figures: Json | None, target: float, starter: float | None) -> Json:
    title = f"{ref} costs at most ${target:.4f} per 1,000 requests served"
    if figures is None:
        return check(f"unit-cost:{ref}", title, 0, 1, f"No service figures for {ref}, so its unit cost cannot be "
                     "judged.", [problem(ref, "no service figures")], status="error")
    unit = figures.get("cost_per_1000_requests")
    if unit is None:
        return check(f"unit-cost:{ref}", title, 0, 1, f"{ref} served no request, so every dollar it cost was wasted.",
                     [problem(ref, "served nothing", cost_usd=figures.get("cost_usd"))], passed=False)
    value = float(unit)
    versus = f" (the starter's: ${starter:.4f})" if starter is not None else ""
    text = f"{ref} cost ${value:.4f} per 1,000 requests served{versus}"
    if value <= target:
        return check(f"unit-cost:{ref}", title, 1, 1, f"{text}: at or under the ${target:.4f} target.")
    score = max(0.0, 1 - (value - target) / target) if target > 0 else 0.0
    evidence = [problem(ref, f"${value:.4f} per 1,000 requests is above ${target:.4f}", cost_per_1000_requests=value,
                        cost_usd=figures.get("cost_usd"), served=figures.get("served"))]
    return check(f"unit-cost:{ref}", title, score, 1, f"{text}, above the ${target:.4f} target.", evidence,
                 passed=False)


if __name__ == "__main__":
    main(grade)
