#!/usr/bin/env python3
"""Reported unit cost: the cost per 1,000 requests the learner computed and wrote in a ConfigMap agrees with the
figure labctl measured, within a relative tolerance.

The learner's figure is a declaration (the snapshot's ``config_maps``: text the learner writes); the measured one is
the snapshot's ``service`` figure for the workload (labctl's meter and service ledger). Only the agreement of the
two is graded: the reported number is never taken as a cost. One check, ``reported-unit-cost:<workload>``: passes
when ``|reported - measured| <= tolerance x measured``. It fails with score 0 when the ConfigMap or its key is
missing, the value is not a plain non-negative decimal number (``0.0116``; no unit, no currency sign), the figures
disagree, or the workload served nothing (then there is no unit cost to agree with). No service figures for the
workload make the check an ``error``.

Parameters (YAML, as in lab.yaml)::

    params:
      workload: Deployment/chat-inference   # required: a workload of the snapshot's service section
      config_map: unit-cost                 # default
      key: usd_per_1000_requests            # default
      tolerance: 0.10                       # default: 10 % of the measured figure
"""

from __future__ import annotations

import math
import re

from _kit import Json, ParamError, check, main, param_number, problem

_DECIMAL = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def _text(params: Json, key: str, default: str | None = None) -> str:
    value = params.get(key, default)
    if not isinstance(value, str) or not value:
        raise ParamError(f"'{key}' must be a non-empty text, not {value!r}")
    return value


def grade(snapshot: Json, params: Json) -> list[Json]:
    workload = _text(params, "workload")
    name = _text(params, "config_map", "unit-cost")
    key = _text(params, "key", "usd_per_1000_requests")
    tolerance = param_number(params, "tolerance", 0.10, low=0, high=1)
    figures = next((f for f in snapshot.get("service") or [] if f.get("workload") == workload), None)
    config = next((c for c in snapshot.get("config_maps") or [] if c.get("name") == name), None)
    return [_judge(workload, figures, name, config, key, tolerance)]


def _judge(workload: str, figures: Json | None, name: str, config: Json | None, key: str,
           tolerance: float) -> Json:
    check_id = f"reported-unit-cost:{workload}"
    where = f"ConfigMap/{name}"
    title = f"{where} reports {workload}'s cost per 1,000 requests within {tolerance:.0%} of labctl's figure"
    if figures is None:
        return check(check_id, title, 0, 1, f"No service figures for {workload}, so the reported unit cost cannot be "
                     "compared with anything.", [problem(workload, "no service figures")], status="error")
    measured = figures.get("cost_per_1000_requests")
    if measured is None:
        return check(check_id, title, 0, 1, f"{workload} served no request, so it has no unit cost for {where} to "
                     "agree with.", [problem(workload, "served nothing", cost_usd=figures.get("cost_usd"))],
                     passed=False)
    value = float(measured)
    if config is None:
        return check(check_id, title, 0, 1, f"There is no {where}: write the unit cost you computed for {workload} "
                     f"under the key {key} (USD per 1,000 requests served, e.g. 0.0125).",
                     [problem(where, "missing", measured_usd_per_1000=value)], passed=False)
    raw = (config.get("data") or {}).get(key)
    if raw is None:
        return check(check_id, title, 0, 1, f"{where} has no key {key}: write the unit cost you computed for "
                     f"{workload} there (USD per 1,000 requests served).",
                     [problem(where, f"no key {key}", keys=sorted(config.get("data") or {}))], passed=False)
    text = str(raw).strip()
    reported = float(text) if _DECIMAL.match(text) else math.nan
    if not math.isfinite(reported):
        return check(check_id, title, 0, 1, f"{where} {key}={str(raw)[:40]!r} is not a plain decimal number of USD "
                     "(write e.g. 0.0125: no unit, no currency sign).",
                     [problem(where, "not a number", key=key, value=str(raw)[:200])], passed=False)
    gap = abs(reported - value)
    apart = f"{gap / value:.1%} apart" if value > 0 else "labctl's figure is zero"
    text = f"{where} reports ${reported:.6g} per 1,000 requests; labctl measured ${value:.6g} for {workload} ({apart})"
    if gap <= tolerance * value:
        return check(check_id, title, 1, 1, f"{text}: within {tolerance:.0%}.")
    return check(check_id, title, 0, 1, f"{text}: not within {tolerance:.0%}. Recompute it from the pods' price "
                 "per hour and the requests they served (labctl sessions metrics).",
                 [problem(where, f"reported {reported:.6g}, measured {value:.6g}", key=key, reported=reported,
                          measured_usd_per_1000=value, tolerance=tolerance)], passed=False)


if __name__ == "__main__":
    main(grade)
