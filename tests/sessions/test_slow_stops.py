"""A stop whose namespace is slow to go (content with a finalizer, an API group the namespace controller cannot
discover) is not lost: the session stays ``terminating`` with a ``cleanup_failed`` event that says what holds the
namespace back, and the reconcile job, which runs every 30 s however rare sweeps are, finishes it once the namespace
can go."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from labctl import runtime as runtime_mod
from labctl.localcluster.cluster import LocalCluster
from labctl.service import sessions as sessions_mod
from tests.adversarial.budget_world import World, quiet_world
from tests.support.wait import eventually

HOLD = "labctl.test/hold"


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    with quiet_world(tmp_path, local_cluster, sweep_interval_s=3600) as w:
        yield w


def test_a_stop_held_back_by_the_cluster_is_finished_by_the_reconcile_job(
        world: World, kube: client.ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    session = world.start("tag-for-showback", "slow-to-go")
    sid, namespace = session["id"], session["namespace"]
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="held", finalizers=[HOLD])))
    monkeypatch.setattr(sessions_mod, "DESTROY_WAIT_S", 3.0)  # the real wait is 120 s

    rt = world.rt
    rt.sessions.stop(sid, principal=None, actor="test")

    def named_the_hold() -> bool:
        rt.sessions.finish_stop(sid, actor="test")
        failed = [e["detail"] for e in world.events(sid) if e["kind"] == "cleanup_failed"]
        return bool(failed) and HOLD in str(failed[-1])  # the namespace controller's own words, once it has said them

    eventually(named_the_hold, timeout=90, interval=1)
    assert world.session(sid)["state"] == "terminating"

    jobs = rt.jobs()
    reconcile, interval = jobs["reconcile"]
    assert interval == runtime_mod.RECONCILE_INTERVAL_S < world.settings.sweep_interval_s
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})

    def finished() -> bool:
        reconcile()
        return world.session(sid)["state"] == "terminated"

    eventually(finished, timeout=120, interval=1)
    assert [e["kind"] for e in world.events(sid)][-1] == "terminated"
