"""The starter's figures: what the sandbox as labctl made it would have served, dropped and cost over the grading
window, for the receipt to set beside the learner's.

Computed by labctl, never written by anyone: while provisioning, before any learner credential exists
(:mod:`labctl.service.baseline`: the pods the lab's starters made, with their fixed replica counts, scheduled ones
counted as serving even if still starting, priced by the meter from the price sheet, with the starter's burn rate)
the pure model plays the whole grading window against those pods (:func:`labctl.simulator.model.replay`, exact
integrals, so the step length does not matter), and each workload's cost is its pods' hourly rate x the window's
real seconds. Deterministic: the same pods and sheet
give the same figures. Nothing reacts (no HPA): this is the starter's fixed shape, which is the point of the
comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from labctl.catalog.models import Demand
from labctl.grading.snapshot import ServiceFigures
from labctl.simulator import economics, ledger, model


def figures(demand: Demand, pods: Sequence[model.PodState], *, node_cpu_cores: Mapping[str, Fraction | float],
            hourly_usd: Mapping[str, Decimal], anchor: datetime) -> list[ServiceFigures]:
    """Each declared workload's figures over the grading window, played once against ``pods`` (``hourly_usd``:
    pod name -> USD per hour; ``anchor`` only dates the step)."""
    (whole,) = model.replay(demand, pods, node_cpu_cores=node_cpu_cores,
                            step_seconds=model.window_seconds(demand), anchor=anchor)
    costs = ledger.workload_costs(whole, hourly_usd)
    out: list[ServiceFigures] = []
    for result in whole.workloads:
        offered, served = ledger.to_ledger(result.offered), ledger.to_ledger(result.served)
        cost = costs[result.key]
        share = economics.served_share(served, offered)
        unit = economics.cost_per_1000_requests(cost, served)
        out.append(ServiceFigures(workload=result.key, offered=float(offered), served=float(served),
                                  dropped=float(offered - served), served_share=None if share is None else float(share),
                                  cost_usd=float(cost), cost_per_1000_requests=None if unit is None else float(unit)))
    return out
