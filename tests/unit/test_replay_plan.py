"""The pure parts of a grading window's replay: the plan of its steps, one slice played, the simulated clock shown as
progress, the cost of each workload's pods over a step, and the starter's figures over the window; figures by hand."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

import pytest

from labctl.catalog.models import Demand
from labctl.simulator import ledger, model, starter
from labctl.simulator.model import PodState, Slice

MONDAY = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
WEB, API = "Deployment/web", "Deployment/api"
# A day in 90 s; web follows the day (0 at midnight, 100/s at noon), api is constant.
DAY = Demand.model_validate({"time_scale": 960, "grading_window": "1d", "workloads": [
    {"workload": WEB, "daily": {"00:00": 0, "12:00": 100}, "per_request": {"cpu_core_seconds": 0.01}},
    {"workload": API, "rps": 4, "per_request": {"cpu_core_seconds": 0.1}},
]})


def pod(name: str, workload: str, cpu: str = "1") -> PodState:
    return PodState(name=name, container="app", node="n", ready=True, cpu_limit_cores=Fraction(cpu),
                    memory_limit_bytes=None, workload=workload)


def test_the_plan_cuts_the_window_in_steps_that_join_exactly_and_cover_it() -> None:
    assert model.window_seconds(DAY) == 90
    parts = model.plan(DAY, step_seconds=7)
    assert [p.index for p in parts] == list(range(13))
    assert all(p.length == 7 for p in parts[:-1]) and parts[-1].length == 6  # 12 x 7 + 6 = 90
    assert parts[0].since == 0 and parts[-1].until == 90
    assert all(a.until == b.since for a, b in pairwise(parts))
    assert model.plan(DAY, step_seconds=90) == (Slice(index=0, since=Fraction(0), length=Fraction(90)),)
    assert model.plan(DAY, step_seconds=1000) == (Slice(index=0, since=Fraction(0), length=Fraction(90)),)
    # A window that is not a whole number of real seconds: 1 d at 7x is 12342 6/7 s.
    odd = DAY.model_copy(update={"time_scale": Decimal(7)})
    assert sum(p.length for p in model.plan(odd, step_seconds=1000)) == Fraction(86400, 7)


@pytest.mark.parametrize("step_seconds", [0, -5])
def test_a_step_must_last(step_seconds: float) -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        model.plan(DAY, step_seconds=step_seconds)


def test_slices_played_one_by_one_equal_the_static_replay_and_sum_to_the_window() -> None:
    pods = [pod("web-0", WEB), pod("web-1", WEB), pod("api-0", API, cpu="0.2")]
    static = model.replay(DAY, pods, node_cpu_cores={}, step_seconds=5, anchor=MONDAY)
    played = [model.play(DAY, pods, node_cpu_cores={}, part=p, anchor=MONDAY) for p in model.plan(DAY, step_seconds=5)]
    assert tuple(played) == static
    assert played[0].started == MONDAY and played[-1].ended == MONDAY + timedelta(seconds=90)
    assert played[1].simulated_start == 5 * 960  # the window's clock starts at the lab's start (Mon 00:00)
    web_offered = sum((s.workload(WEB).offered for s in played), Fraction(0))
    # The day's mean rate is 50/s (a triangle, 0 -> 100 -> 0), over 90 real seconds.
    assert web_offered == 50 * 90
    # api: 4/s asked, 0.2 cores serve 2/s: half is dropped, every step.
    offered, served, dropped = model.totals(played)[API]
    assert (offered, served, dropped) == (360, 180, 180)


def test_progress_shows_the_simulated_clock() -> None:
    assert model.simulated_at(DAY, Fraction(0)) == "Mon 00:00"
    assert model.simulated_at(DAY, Fraction(45)) == "Mon 12:00"
    assert model.simulated_at(DAY, Fraction(90)) == "Tue 00:00"
    sunday = DAY.model_copy(update={"start": "Sun 23:00"})
    assert model.simulated_at(sunday, Fraction(15, 4)) == "Mon 00:00"  # the week wraps


def test_each_workloads_cost_over_a_step_is_its_pods_rates_times_the_steps_seconds() -> None:
    pods = [pod("web-0", WEB), pod("web-1", WEB), pod("api-0", API)]
    one = model.play(DAY, pods, node_cpu_cores={}, part=Slice(index=0, since=Fraction(0), length=Fraction(30)),
                     anchor=MONDAY)
    rates = {"web-0": Decimal("0.048"), "web-1": Decimal("0.0168"), "api-0": Decimal("0.123457")}
    costs = ledger.workload_costs(one, rates)
    # (0.048 + 0.0168) x 30 / 3600 = 0.00054; 0.123457 x 30 / 3600 = 0.001028808... -> 0.001029
    assert costs == {WEB: Decimal("0.000540"), API: Decimal("0.001029")}
    assert ledger.workload_costs(one, {}) == {WEB: Decimal(0), API: Decimal(0)}  # a pod without a rate costs 0


def test_the_starters_figures_are_the_window_played_once_on_its_fixed_pods() -> None:
    pods = [pod("web-0", WEB), pod("api-0", API, cpu="0.2")]
    rates = {"web-0": Decimal("0.036"), "api-0": Decimal("0.012")}
    figures = {f.workload: f for f in starter.figures(DAY, pods, node_cpu_cores={}, hourly_usd=rates,
                                                      anchor=MONDAY)}
    web, api = figures[WEB], figures[API]
    # web: one pod of 1 core serves 100/s at most, so all of the day (peak 100/s) is served.
    assert (web.offered, web.served, web.dropped, web.served_share) == (4500, 4500, 0, 1)
    assert web.cost_usd == pytest.approx(0.0009)              # 0.036 $/h x 90 s
    assert web.cost_per_1000_requests == pytest.approx(0.0009 / 4500 * 1000)
    assert (api.offered, api.served, api.dropped, api.served_share) == (360, 180, 180, 0.5)
    assert api.cost_usd == pytest.approx(0.0003)
    again = starter.figures(DAY, list(reversed(pods)), node_cpu_cores={}, hourly_usd=rates, anchor=MONDAY)
    assert {f.workload: f for f in again} == figures           # deterministic


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(model)
    assert result.attempted >= 3 and result.failed == 0
