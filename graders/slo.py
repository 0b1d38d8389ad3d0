#!/usr/bin/env python3
"""Service level: each workload of the lab's simulated demand served at least its target share of what it was
offered over the session.

Reads the snapshot's ``service`` section (requests offered, served and dropped per declared workload, from labctl's
service ledger: nothing the learner writes). A configuration that saves money by dropping requests fails here. One
check per workload; the score is ``served_share / min_served_share`` (capped at 1). A workload with no figures, or
nothing offered, makes its check an ``error`` (there is no service level to judge).

Parameters (YAML, as in lab.yaml)::

    params:
      workloads: [Deployment/llm-inference]   # default: every workload in the snapshot's service section
      min_served_share: 0.99                  # required, 0-1
"""

from __future__ import annotations

from _kit import Json, ParamError, check, main, param_number, param_strings, problem


def grade(snapshot: Json, params: Json) -> list[Json]:
    target = param_number(params, "min_served_share", low=0, high=1)
    figures = {str(f.get("workload")): f for f in snapshot.get("service") or []}
    wanted = param_strings(params, "workloads") or list(figures)
    if not wanted:
        raise ParamError("name the 'workloads' to judge: the snapshot has no simulated demand")
    return [_judge(ref, figures.get(ref), target) for ref in wanted]


def _judge(ref: str, figures: Json | None, target: float) -> Json:
    title = f"{ref} serves at least {target:.1%} of its requests"
    share = None if figures is None else figures.get("served_share")
    if figures is None or share is None:
        return check(f"slo:{ref}", title, 0, 1, f"No requests were offered to {ref}, so its service level cannot be "
                     "judged.", [problem(ref, "no service figures")], status="error")
    served, offered, dropped = (float(figures.get(k) or 0.0) for k in ("served", "offered", "dropped"))
    text = f"{ref} served {float(share):.2%} of {offered:,.0f} requests ({dropped:,.0f} dropped)"
    score = min(1.0, float(share) / target) if target > 0 else 1.0
    if float(share) >= target:
        return check(f"slo:{ref}", title, 1, 1, f"{text}: at or above the {target:.1%} target.")
    evidence = [problem(ref, f"served share {float(share):.2%} is below {target:.1%}", served=served,
                        offered=offered, dropped=dropped, served_share=float(share))]
    return check(f"slo:{ref}", title, score, 1, f"{text}, below the {target:.1%} target: too few Ready replicas, "
                 "or pods too small (or failing) for the load.", evidence, passed=False)


if __name__ == "__main__":
    main(grade)
