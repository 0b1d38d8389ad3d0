"""Where a replay's snapshots come from: its intermediate steps from the watch cache (the frozen sandbox costs the
apiserver no lists), its final, graded snapshot straight from the apiserver (it sees at least what the freeze left);
with the cache unsynced every step reads directly, said once in the log. Each step's heartbeat is written in the
transaction of its accrual.

The spies below wrap the real reads (the cache's answer and the direct lists), which go on unchanged. A simulated day
lasts 10 real seconds: 2 steps of 5 s and the final snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import cache, inventory
from labctl.store.models import Submission
from tests.grading.replay_world import INSTRUCTOR, World, make_world, running_world
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import _pods_running

SELECTOR = "app=legacy-dashboard"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, local_cluster: LocalCluster) -> Iterator[World]:
    yield from running_world(make_world(tmp_path_factory.mktemp("replay-cache"), local_cluster, seconds_per_day=10))


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every sandbox read from now on, in order: ``(namespace, "cache" | "direct")``; a cache that answered None
    (the caller then reads directly) is not counted as a cache read."""
    reads: list[tuple[str, str]] = []
    cached, collect = cache.ClusterCache.inventory, inventory.collect

    def from_cache(self: cache.ClusterCache, namespace: str) -> Any:
        inv = cached(self, namespace)
        if inv is not None:
            reads.append((namespace, "cache"))
        return inv

    def direct(api: client.ApiClient, namespace: str) -> Any:
        reads.append((namespace, "direct"))
        return collect(api, namespace)

    monkeypatch.setattr(cache.ClusterCache, "inventory", from_cache)
    monkeypatch.setattr(inventory, "collect", direct)
    return reads


def _ready(world: World, kube: client.ApiClient, learner: str) -> tuple[str, str]:
    session = world.start(learner)
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, SELECTOR, 3), timeout=90)
    assert world.rt.sweeper.run_once().errors == []  # the first metering (and the watch cache started)
    assert world.rt.provider.watch_cache().wait_ready(30)
    eventually(lambda: world.rt.provider.watch_cache().inventory(ns) is not None, timeout=30)
    return sid, ns


def _graded(world: World, sid: str, monkeypatch: pytest.MonkeyPatch, ns: str,
            ) -> tuple[list[str], list[tuple[bool, datetime | None]]]:
    """Grade a submission of ``sid``; the reads of ``ns`` it made, and the heartbeats its steps' accruals wrote."""
    rt = world.rt
    sub = rt.submissions.submit(sid, principal=INSTRUCTOR)
    beats: list[tuple[bool, datetime | None]] = []  # (the accrual carried a write of ours, heartbeat after it)
    record = rt.sweeper.record

    def watched(session_id: str, taken: Any, sheet: Any, **kw: Any) -> Any:
        """The heartbeat each accrual's transaction carried (read back after it committed)."""
        snap = record(session_id, taken, sheet, **kw)
        with rt.store.session() as db:
            row = db.get(Submission, sub.id)
            beats.append((kw.get("also") is not None, row.heartbeat_at if row is not None else None))
        return snap

    monkeypatch.setattr(rt.sweeper, "record", watched)
    reads = _reads(monkeypatch)
    rt.submissions.grade(sub.id)
    monkeypatch.undo()
    assert world.submission(sub.id)["state"] == "graded"
    return [source for namespace, source in reads if namespace == ns], beats


def test_the_steps_read_the_cache_and_the_graded_snapshot_the_apiserver(
        world: World, kube: client.ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    sid, ns = _ready(world, kube, "cached")
    reads, beats = _graded(world, sid, monkeypatch, ns)
    assert reads == ["cache", "cache", "direct"]
    # Each intermediate step's heartbeat was written with its accrual (a new one each step); the final has none.
    assert [carried for carried, _ in beats] == [True, True, False], beats
    first, second = (stamp for _, stamp in beats[:2])
    assert first is not None and second is not None and first < second, beats


def test_with_the_cache_unsynced_every_step_reads_directly_said_once(
        world: World, kube: client.ApiClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        ) -> None:
    sid, ns = _ready(world, kube, "uncached")
    watched = world.rt.provider.watch_cache()
    watched.stop()
    watched.distrust()  # stopped, its watches never speak again: unsynced for the rest of the module
    with caplog.at_level(logging.INFO, logger="labctl.providers.kubernetes"):
        reads, _ = _graded(world, sid, monkeypatch, ns)
    assert reads == ["direct", "direct", "direct"]
    said = [r.getMessage() for r in caplog.records if "read the apiserver directly" in r.getMessage()]
    assert len(said) == 1 and ns in said[0], said
