"""The snapshot model: the fixtures validate and round-trip, unknown or inconsistent data is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.grading.snapshot import Snapshot, dump_snapshot, load_snapshot, snapshot_dict
from tests.grading import live

Json = dict[str, Any]


@pytest.fixture
def data() -> Json:
    return live.load_fixture("move-batch-to-spot")


FIRST_NODE = live.load_fixture("move-batch-to-spot")["nodes"][0]["name"]


@pytest.mark.parametrize("lab_id", ["autoscale-to-demand", "cost-per-inference", "gpu-rightsizing", "idle-hunter",
                                    "move-batch-to-spot", "tag-for-showback"])
def test_fixtures_round_trip(lab_id: str) -> None:
    path = live.fixture_path(lab_id)
    snap = load_snapshot(path)
    assert load_snapshot(dump_snapshot(snap)) == snap
    assert snapshot_dict(snap) == live.load_fixture(lab_id)
    assert dump_snapshot(snap).startswith('{"schema":"labctl.snapshot/v1"')


def test_lookups(data: Json) -> None:
    snap = Snapshot.model_validate(data)
    thumbnailer = snap.resource("Deployment", "thumbnailer")
    assert thumbnailer is not None and thumbnailer.ref == "Deployment/thumbnailer"
    assert thumbnailer.pod_template_labels is not None and thumbnailer.pod_template_labels["team"] == "storefront"
    pods = snap.pods_of("Job", "embeddings-backfill")
    assert len(pods) == 4 and all(p.node and p.node.startswith("cpu-spot-") for p in pods)
    node = snap.node(pods[0].node)
    assert node is not None and node.capacity_type == "spot" and node.taints[0].key == "cloud.google.com/gke-spot"
    assert snap.node(None) is None and snap.resource("Deployment", "nope") is None
    pdb = snap.resource("PodDisruptionBudget", "thumbnailer")
    assert pdb is not None and pdb.selector is not None and pdb.selector.matches({"app": "thumbnailer", "x": "y"})
    assert not pdb.selector.matches({"app": "other"})


def test_a_plain_map_selector_reads_as_match_labels(data: Json) -> None:
    data["resources"].append({"kind": "Service", "name": "web", "selector": {"app": "web"},
                              "service_type": "ClusterIP"})
    service = Snapshot.model_validate(data).resource("Service", "web")
    assert service is not None and service.selector is not None
    assert service.selector.matchLabels == {"app": "web"} and service.selector.matches({"app": "web"})


def test_match_expressions() -> None:
    selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                     {"key": "legacy", "operator": "DoesNotExist"}]}
    snap = Snapshot.model_validate({**live.load_fixture("idle-hunter"), "resources": [
        {"kind": "PodDisruptionBudget", "name": "p", "selector": selector, "min_available": "50%"}]})
    pdb = snap.resources[0]
    assert pdb.selector is not None
    assert pdb.selector.matches({"tier": "a"})
    assert not pdb.selector.matches({"tier": "c"})
    assert not pdb.selector.matches({"tier": "a", "legacy": "1"})


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(schema="labctl.snapshot/v2"), "Input should be 'labctl.snapshot/v1'"),
    (lambda d: d["resources"][0].update(lables={}), "Extra inputs are not permitted"),
    (lambda d: d["resources"].append(copy.deepcopy(d["resources"][0])), "resource Deployment/thumbnailer appears "
                                                                        "twice"),
    (lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][0])), f"node {FIRST_NODE} appears twice"),
    (lambda d: d["session"].update(taken_at="2026-07-20T08:00:00+00:00"), "is before started_at"),
    (lambda d: d["session"].update(started_at="2026-07-20T08:00:00"), "Input should have timezone info"),
    (lambda d: d["cost"].update(usage_source="guess"), "Input should be 'simulator', 'metrics' or 'requests'"),
    (lambda d: d["cost"].update(usage_source="kwok"), "Input should be 'simulator', 'metrics' or 'requests'"),
    (lambda d: next(n for n in d["nodes"] if n["capacity_type"] == "spot").update(capacity_type="on-demand"),
     "must equal hourly_usd"),
    (lambda d: d["resources"][0].update(min_available="half"), "a whole number or a percentage"),
    (lambda d: d["resources"][0]["containers"][0].update(usage={"gpu_engine_active": 1.5}),
     "less than or equal to 1"),
])
def test_invalid_snapshots_are_refused(data: Json, change: Any, message: str) -> None:
    change(data)
    with pytest.raises(ValidationError) as caught:
        Snapshot.model_validate(data)
    assert message in str(caught.value)


def test_load_from_text_and_path(tmp_path: Path, data: Json) -> None:
    path = tmp_path / "snap.json"
    text = dump_snapshot(Snapshot.model_validate(data), indent=2)
    path.write_text(text, encoding="utf-8")
    assert load_snapshot(path) == load_snapshot(text) == Snapshot.model_validate(data)
