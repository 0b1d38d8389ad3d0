"""The inventory -> snapshot step is total: whatever the apiserver stores becomes a valid, priceable snapshot.

The inventories are real apiserver answers (the stored reference solutions, ``fixtures/*.inventory.json``); the
tests bend them the way a learner or an odd cluster can (quantities in every spelling the apiserver keeps, huge and
tiny figures, text of any script in labels and annotations, optional fields missing, a taint without a value,
fractional measured use) and check that the producer never raises, the model accepts the result, the meter prices
it, and it round-trips as JSON without a NaN or an infinity. The property-style test draws its cases from a seeded
generator, so a failure names the seed that reproduces it.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labctl.cost import meter
from labctl.grading.snapshot import BudgetInfo, SessionInfo, Snapshot, dump_snapshot, load_snapshot, snapshot_dict
from labctl.providers.kubernetes import snapshot as producer
from labctl.providers.kubernetes.inventory import Inventory
from tests.grading import live

Json = dict[str, Any]
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SESSION = SessionInfo(id="s", lab_id="tag-for-showback", learner_id="ada", provider="kubernetes",
                      started_at=NOW - timedelta(hours=3), taken_at=NOW)
BUDGET = BudgetInfo(budget_usd=2)
MAX = float(producer.MAX_QUANTITY)


@pytest.mark.parametrize(("text", "value"), [
    ("500m", 0.5), ("1500m", 1.5), ("1e3", 1000.0), ("10e99", MAX), ("0.5Gi", 2.0**29), ("512Mi", 2.0**29),
    ("1m", 0.001), ("1n", 1e-9), ("9223372036854775807", MAX), ("10e399", MAX), ("9Ei", MAX), (7, 7.0), (0.25, 0.25),
    ("", None), ("abc", None), ("-1", None), ("1.2.3", None), (True, None), (None, None), (float("nan"), None),
])
def test_quantities_in_every_spelling_the_apiserver_keeps(text: object, value: float | None) -> None:
    assert producer.quantity(text) == (pytest.approx(value) if value is not None else None)


def _inventory(lab_id: str = "tag-for-showback") -> Inventory:
    return live.load_inventories(lab_id)["solution"]


def _made(inv: Inventory) -> Snapshot:
    snap = producer.build(inv, session=SESSION, budget=BUDGET, now=NOW)
    priced = meter.price(snap, live.sheet()).snapshot
    text = json.dumps(snapshot_dict(priced), allow_nan=False)  # no NaN, no infinity reaches a grader
    assert load_snapshot(text) == load_snapshot(dump_snapshot(priced))
    return priced


def test_the_stored_inventories_build() -> None:
    for lab_id in live.catalog():
        snap = _made(live.load_inventories(lab_id)["solution"])
        assert snap.of_kind("Pod") and snap.nodes and snap.cost.burn_rate_usd_per_hour > 0


def test_named_odd_cases() -> None:
    inv = copy.deepcopy(_inventory())
    node = inv.nodes[0]
    node["metadata"]["resourceVersion"] = "edited"  # as the apiserver gives every change a new version
    node.setdefault("spec", {})["taints"] = [{"key": "dedicated", "effect": "NoSchedule"},  # no value
                                             {"key": "odd", "value": "x", "effect": "Sometimes"}]  # not an effect
    inv.pvcs.append({"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                     "metadata": {"name": "milli", "creationTimestamp": "2026-12-01T10:00:00Z"},
                     "spec": {"resources": {"requests": {"storage": "1500m"}}}})
    inv.pvcs.append({"kind": "PersistentVolumeClaim", "apiVersion": "v1", "metadata": {"name": "huge"},
                     "spec": {"resources": {"requests": {"storage": "10e399"}}}})
    pod = inv.pods[0]
    pod["metadata"]["labels"] = None
    pod["metadata"]["annotations"] = {"note": "Ünïcødé ✓ 数据", "empty": ""}
    pod["spec"].pop("tolerations", None)
    pod.pop("status", None)
    inv.usage = {inv.pods[1]["metadata"]["name"]: {c["name"]: {"cpu": "1500u", "memory": "1500m"}
                                                   for c in inv.pods[1]["spec"]["containers"]}}
    inv.usage_source = "metrics"
    snap = _made(inv)
    taken = snap.node(node["metadata"]["name"])
    assert taken is not None and [(t.key, t.value) for t in taken.taints] == [("dedicated", "")]
    assert snap.resource("PersistentVolumeClaim", "milli").storage == 2  # type: ignore[union-attr]
    huge = snap.resource("PersistentVolumeClaim", "huge")
    assert huge is not None and huge.storage == 2**63 and huge.hourly_usd and huge.hourly_usd > 1e5
    measured = snap.resource("Pod", inv.pods[1]["metadata"]["name"])
    assert measured is not None and measured.containers[0].usage is not None
    assert (measured.containers[0].usage.cpu, measured.containers[0].usage.memory) == (pytest.approx(0.0015), 2)
    bare = snap.resource("Pod", pod["metadata"]["name"])
    assert bare is not None and bare.labels == {} and bare.phase is None and bare.annotations["empty"] == ""


# --- generated cases --------------------------------------------------------------------------------------------------

SUFFIXES = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
TEXT = ["", "a", "Ünïcødé", "数据", "✓", "x" * 63, "z" * 5000, " spaced ", "tab\there", "new\nline", "null", "0"]


def _quantity(rng: random.Random) -> object:
    form = rng.randrange(6)
    if form == 0:
        return str(rng.randrange(0, 10**rng.randrange(1, 25)))
    if form == 1:
        return f"{rng.randrange(0, 10**6)}.{rng.randrange(0, 10**6)}{rng.choice(SUFFIXES)}"
    if form == 2:
        return f"{rng.randrange(1, 1000)}e{rng.choice('+-')}{rng.randrange(0, 450)}"
    if form == 3:
        return f"{rng.randrange(0, 10**4)}{rng.choice(SUFFIXES)}"
    if form == 4:
        return rng.choice([0, 1, 2**63, 2**70, 0.5, 1e300])
    return rng.choice(["", "oops", "1..2", "-5", "1e", None])


def _bend(obj: Json, rng: random.Random) -> None:
    """Bend one API object: odd quantities anywhere in resources, odd text in labels, optional fields dropped."""
    meta = obj.setdefault("metadata", {})
    if rng.random() < 0.5:
        meta["labels"] = {f"k{i}.example/{rng.choice(TEXT[1:2])}{i}": rng.choice(TEXT) for i in range(3)}
    if rng.random() < 0.5:
        meta["annotations"] = {rng.choice(TEXT) or "k": rng.choice(TEXT) for _ in range(3)}
    for key in ("ownerReferences", "creationTimestamp", "labels"):
        if rng.random() < 0.2:
            meta.pop(key, None)
    spec = obj.get("spec") or {}
    template = (spec.get("template") or {}).get("spec") or spec
    for container in [*(template.get("containers") or []), *(template.get("initContainers") or [])]:
        container["resources"] = {which: {name: _quantity(rng) for name in ("cpu", "memory", "nvidia.com/gpu")
                                          if rng.random() < 0.7} for which in ("requests", "limits")}
    if "resources" in spec and isinstance(spec["resources"], dict):
        spec["resources"] = {"requests": {"storage": _quantity(rng)}}
    for key in ("status", "spec"):
        if rng.random() < 0.1:
            obj.pop(key, None)


@pytest.mark.parametrize("seed", range(60))
def test_build_is_total_over_generated_inventories(seed: int) -> None:
    rng = random.Random(seed)
    inv = copy.deepcopy(_inventory(rng.choice(sorted(live.catalog()))))
    for group in (inv.pods, inv.workloads, inv.pvcs, inv.services, inv.pdbs):
        for obj in group:
            if rng.random() < 0.6:
                _bend(obj, rng)
    for node in inv.nodes:
        node.setdefault("status", {})["capacity"] = {"cpu": _quantity(rng), "memory": _quantity(rng)}
        node.setdefault("spec", {})["taints"] = [{"key": "k", "effect": "NoSchedule", **(
            {"value": rng.choice(TEXT)} if rng.random() < 0.5 else {})}]
    inv.usage = {p["metadata"]["name"]: {c.get("name", "c"): {"cpu": _quantity(rng), "memory": _quantity(rng)}
                                         for c in (p.get("spec") or {}).get("containers") or []}
                 for p in inv.pods if p.get("metadata", {}).get("name")}
    inv.usage_source = "metrics"
    _made(inv)


def test_config_maps_and_autoscalers_are_declarations_kept_within_caps() -> None:
    """The stored cost-per-inference solution holds the learner's unit-cost ConfigMap; a stuffed one is capped, a
    nameless one skipped; autoscalers keep what was declared and the controller's status, odd counts left out."""
    inv = copy.deepcopy(live.load_inventories("cost-per-inference")["solution"])
    stuffed = {f"k{i:03d}": "x" * (producer.MAX_CONFIG_VALUE + 5) for i in range(producer.MAX_CONFIG_KEYS + 3)}
    inv.config_maps += [{"kind": "ConfigMap", "metadata": {"name": "stuffed"}, "data": stuffed},
                        {"kind": "ConfigMap", "metadata": {}, "data": {"a": "b"}},
                        {"kind": "ConfigMap", "metadata": {"name": "binary-only"}, "binaryData": {"x": "AAEC"}}]
    inv.autoscalers = [
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                  "minReplicas": 2, "maxReplicas": 10,
                  "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                      "type": "Utilization", "averageUtilization": 70}}}]},
         "status": {"currentReplicas": 3, "desiredReplicas": 4}},
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "odd"},
         "spec": {"scaleTargetRef": {"kind": "Deployment"}, "minReplicas": "two", "maxReplicas": -1}}]
    snap = _made(inv)
    assert snap.config_maps is not None
    kept = {c.name: c for c in snap.config_maps}
    assert list(kept) == ["binary-only", "stuffed", "unit-cost"]
    assert kept["unit-cost"].data == {"usd_per_1000_requests": "0.01159"} and not kept["unit-cost"].truncated
    assert kept["stuffed"].truncated and len(kept["stuffed"].data) == producer.MAX_CONFIG_KEYS
    assert {len(v) for v in kept["stuffed"].data.values()} == {producer.MAX_CONFIG_VALUE}
    assert kept["binary-only"].data == {} and not kept["binary-only"].truncated
    assert snap.autoscalers is not None
    odd, web = snap.autoscalers
    assert (web.target is not None and str(web.target), web.min_replicas, web.max_replicas, web.current_replicas,
            web.desired_replicas) == ("Deployment/web", 2, 10, 3, 4)
    assert web.metrics[0]["resource"]["target"]["averageUtilization"] == 70
    assert (odd.target, odd.min_replicas, odd.max_replicas) == (None, None, None)
    # An inventory without either (the stored ones of the other labs) gives a snapshot without the sections.
    plain = _made(_inventory())
    assert plain.config_maps is None and plain.autoscalers is None
