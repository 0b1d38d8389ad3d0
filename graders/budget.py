#!/usr/bin/env python3
"""Budget: what the session spent against its budget, its reference cost, its starter's burn rate, and idle waste.

Up to four checks, each worth the same:

- ``spend``: accrued cost <= ``max_spend_percent`` % of the budget; beyond it the score falls linearly, reaching 0
  at twice that limit. The feedback compares with the instructor's reference cost when the snapshot has one.
- ``reference-cost`` (with ``max_reference_ratio``): accrued <= ratio x the reference cost, falling the same way.
- ``burn-rate`` (with ``max_burn_rate_ratio``): the burn rate at submission <= ratio x the starter's burn rate
  (``budget.starter_burn_rate_usd_per_hour`` of the snapshot, or the ``starter_burn_rate_usd_per_hour``
  parameter); the score is the share of the required cut achieved. Without a starter rate the check is an ``error``.
- ``idle-share`` (with ``max_idle_share``): the hourly cost of idle things (running pods under
  ``idle_cpu_millicores`` of CPU, claims no pod mounts, LoadBalancers with no endpoints) over the burn rate;
  above the limit the score falls linearly to 0 at a share of 1.

Parameters (YAML, as in lab.yaml)::

    params:
      max_spend_percent: 100          # default 100
      max_reference_ratio: 1.5        # optional
      max_burn_rate_ratio: 0.6        # optional
      starter_burn_rate_usd_per_hour: 0.9   # optional, overrides the snapshot's figure
      max_idle_share: 0.1             # optional
      idle_cpu_millicores: 5          # default 5
"""

from __future__ import annotations

from _kit import (
    Json,
    check,
    is_idle_pod,
    is_load_balancer,
    is_unmounted_claim,
    load_balancer_without_endpoints,
    main,
    names,
    optional_number,
    param_number,
    problem,
    ref,
    resources,
)


def grade(snapshot: Json, params: Json) -> list[Json]:
    budget, cost = snapshot.get("budget") or {}, snapshot.get("cost") or {}
    accrued = float(cost.get("accrued_usd") or 0.0)
    checks = [_spend_check(accrued, budget, param_number(params, "max_spend_percent", 100, low=0))]
    reference_ratio = optional_number(params, "max_reference_ratio", low=0)
    if reference_ratio is not None:
        checks.append(_reference_check(accrued, budget.get("reference_cost_usd"), reference_ratio))
    burn_ratio = optional_number(params, "max_burn_rate_ratio", low=0)
    if burn_ratio is not None:
        starter = optional_number(params, "starter_burn_rate_usd_per_hour", low=0)
        if starter is None and budget.get("starter_burn_rate_usd_per_hour") is not None:
            starter = float(budget["starter_burn_rate_usd_per_hour"])
        checks.append(_burn_check(float(cost.get("burn_rate_usd_per_hour") or 0.0), starter, burn_ratio))
    idle_share = optional_number(params, "max_idle_share", low=0, high=1)
    if idle_share is not None:
        idle_cores = param_number(params, "idle_cpu_millicores", 5, low=0) / 1000
        checks.append(_idle_check(snapshot, float(cost.get("burn_rate_usd_per_hour") or 0.0), idle_share, idle_cores))
    return checks


def _falling(value: float, limit: float) -> float:
    """1 up to ``limit``, then linearly down to 0 at twice the limit."""
    if value <= limit:
        return 1.0
    return max(0.0, 1 - (value - limit) / limit) if limit > 0 else 0.0


def _spend_check(accrued: float, budget: Json, percent: float) -> Json:
    budget_usd = float(budget.get("budget_usd") or 0.0)
    limit = budget_usd * percent / 100
    reference = budget.get("reference_cost_usd")
    compared = f" The reference solution cost {_usd(float(reference))}." if reference is not None else ""
    title = f"Spending stays within {percent:g} % of the {_usd(budget_usd)} budget"
    figures = {"accrued_usd": accrued, "limit_usd": limit, "budget_usd": budget_usd}
    if accrued <= limit:
        return check("spend", title, 1, 1, f"The session cost {_usd(accrued)} of its {_usd(budget_usd)} "
                     f"budget.{compared}")
    return check("spend", title, _falling(accrued, limit), 1, f"The session cost {_usd(accrued)}, over the "
                 f"{_usd(limit)} allowed.{compared}", [problem("session", "over budget", **figures)])


def _reference_check(accrued: float, reference: float | None, ratio: float) -> Json:
    title = f"Spending stays within {ratio:g} x the reference solution's cost"
    if reference is None:
        return check("reference-cost", title, 0, 1, "The reference cost is not known, so spending cannot be compared "
                     "with it.", [problem("session", "no budget.reference_cost_usd in the snapshot")], status="error")
    limit = float(reference) * ratio
    if accrued <= limit:
        return check("reference-cost", title, 1, 1, f"The session cost {_usd(accrued)}; the reference solution "
                     f"{_usd(float(reference))}.")
    return check("reference-cost", title, _falling(accrued, limit), 1, f"The session cost {_usd(accrued)}, more than "
                 f"{ratio:g} x the reference solution's {_usd(float(reference))}.",
                 [problem("session", "over the reference cost", accrued_usd=accrued, limit_usd=limit)])


def _burn_check(burn: float, starter: float | None, ratio: float) -> Json:
    title = f"The burn rate is at most {ratio:.0%} of the starter's"
    if starter is None:
        return check("burn-rate", title, 0, 1, "The starter's burn rate is not known, so the saving cannot be judged.",
                     [problem("session", "no budget.starter_burn_rate_usd_per_hour in the snapshot")], status="error")
    target = starter * ratio
    figures = {"burn_rate_usd_per_hour": burn, "starter_usd_per_hour": starter, "target_usd_per_hour": target}
    if burn <= target:
        return check("burn-rate", title, 1, 1, f"The sandbox now burns {_rate(burn)}, down from the starter's "
                     f"{_rate(starter)} (target {_rate(target)}).")
    achieved = (starter - burn) / (starter - target) if starter > target else 0.0
    return check("burn-rate", title, achieved, 1, f"The sandbox burns {_rate(burn)}: more than {ratio:.0%} of the "
                 f"starter's {_rate(starter)} (target {_rate(target)}).",
                 [problem("session", "burn rate above the target", **figures)])


def _idle_check(snapshot: Json, burn: float, limit: float, idle_cores: float) -> Json:
    idle = [r for r in resources(snapshot) if _is_idle(snapshot, r, idle_cores)]
    idle_hourly = sum(float(r.get("hourly_usd") or 0.0) for r in idle)
    share = min(idle_hourly / burn, 1.0) if burn > 0 else 0.0
    title = f"Idle resources are at most {limit:.0%} of the burn rate"
    evidence = [problem(ref(r), "idle, still billed", hourly_usd=r.get("hourly_usd")) for r in idle]
    if share <= limit + 1e-12:
        return check("idle-share", title, 1, 1, f"Idle resources cost {_rate(idle_hourly)}, {share:.0%} of the "
                     f"{_rate(burn)} burn rate.", evidence)
    score = max(0.0, 1 - (share - limit) / (1 - limit)) if limit < 1 else 0.0
    return check("idle-share", title, score, 1, f"Idle resources cost {_rate(idle_hourly)}, {share:.0%} of the "
                 f"{_rate(burn)} burn rate: {names(ref(r) for r in idle)}.", evidence)


def _is_idle(snapshot: Json, res: Json, idle_cores: float) -> bool:
    if res.get("kind") == "Pod":
        return is_idle_pod(res, idle_cores)
    if is_load_balancer(res):
        return load_balancer_without_endpoints(snapshot, res)
    return is_unmounted_claim(res)


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _rate(value: float) -> str:
    return f"${value:,.4f}/h"


if __name__ == "__main__":
    main(grade)
