"""Crash windows and races on one session: a reset in flight is never provisioned a second time by a reconciler
(this process's or another replica's), a crash that left a session ``submitted`` without its submission (or
``graded`` and frozen with attempts left) is repaired, and concurrent commands never give a 5xx."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from labctl.localcluster.cluster import LocalCluster
from labctl.service.auth import Principal
from labctl.store.models import SandboxSession
from tests.adversarial.budget_world import World, quiet_world
from tests.support.server import Server
from tests.support.wait import eventually

INSTRUCTOR = Principal(name="admin", role="instructor")


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    # A pause between applied objects keeps the reset's provisioning going for seconds: the window to race in.
    with quiet_world(tmp_path, local_cluster, provision_step_delay_s=0.3) as w:
        yield w


def test_a_reset_in_flight_is_not_provisioned_again_by_a_reconciler(world: World) -> None:
    sid = world.start("tag-for-showback", "resetter")["id"]
    sessions = world.rt.sessions
    other_replica = copy.copy(sessions)  # another replica over the same store and cluster
    other_replica.holder, other_replica._held = "replica-b", set()
    outcome: list[Any] = []
    resetting = threading.Thread(target=lambda: outcome.append(sessions.reset(sid, principal=INSTRUCTOR)))
    resetting.start()
    eventually(lambda: sessions.row_of(sid).state == "provisioning", timeout=30, interval=0.05)
    counts = []
    while resetting.is_alive():
        counts.append(sessions.reconcile())  # the sweep of this process
        counts.append(other_replica.reconcile())  # and of another replica over the same store
    resetting.join()
    assert outcome and outcome[0].state == "ready"
    assert counts and all(c["resumed"] == 0 for c in counts), counts
    kinds = [e["kind"] for e in world.events(sid)]
    assert kinds == ["created", "ready", "provisioning", "ready"], kinds
    row = sessions.row_of(sid)
    assert row.lease_holder is None  # released when the reset finished


def test_a_crash_between_submit_steps_is_repaired_and_uses_no_attempt(world: World, tmp_path: Path) -> None:
    learner = world.token("crashed", "learner", "crashed")
    sid = world.start("tag-for-showback", "crashed", headers=learner)["id"]
    kubectl = world.kubectl_as(sid, learner, tmp_path / "laptop")
    sessions = world.rt.sessions

    def crash_into(state: str) -> None:
        """What a process killed mid-submission left: a frozen sandbox and the session in ``state``, no row."""
        sessions.provider.freeze(sessions.spec_of(sessions.row_of(sid)), frozen=True)
        with world.rt.store.session() as db:
            row = db.get(SandboxSession, sid)
            assert row is not None
            row.state = state
        assert kubectl("create", "configmap", f"before-{state}", "--from-literal=a=b").returncode != 0  # frozen

    for state in ("submitted", "graded"):
        crash_into(state)
        assert world.rt.submissions.reconcile() >= 1
        assert world.session(sid)["state"] == "ready"
        writable = kubectl("create", "configmap", f"after-{state}", "--from-literal=a=b")
        assert writable.returncode == 0, writable.stderr
    r = world.client.post(f"/v1/sessions/{sid}/submissions", headers=learner)
    assert r.status_code == 202, r.text
    submitted = [e for e in world.events(sid) if e["kind"] == "submitted"]
    assert submitted[-1]["detail"]["reason"] == "attempt 1 of 3"  # the crashes used none


def test_concurrent_commands_on_one_session_never_give_a_5xx(server: Server) -> None:
    with server.client() as admin:
        session = admin.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "mash"}).json()
        token = admin.post("/v1/tokens", json={"name": "mash", "role": "learner", "learner_id": "mash"}).json()["token"]
    sid = session["id"]
    base = f"/v1/sessions/{sid}"
    commands: list[tuple[str, str, Any]] = [
        *[("GET", base, None)] * 16, *[("POST", f"{base}/extend", {"seconds": 60})] * 4,
        *[("POST", f"{base}/suspend", None)] * 4, *[("POST", f"{base}/resume", None)] * 4,
        *[("POST", f"{base}/budget-requests", {"usd": 0.5, "reason": "more"})] * 4,
        *[("POST", f"{base}/reset", None)] * 2,
    ]

    def send(command: tuple[str, str, Any]) -> httpx.Response:
        method, path, body = command
        with server.client(token) as c:
            return c.request(method, path, json=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, commands))
    statuses = sorted({r.status_code for r in answers})
    assert all(s < 500 for s in statuses), [(r.status_code, r.text) for r in answers if r.status_code >= 500]
    assert set(statuses) <= {200, 409}, statuses
    for r in answers:
        if r.status_code == 409:
            assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]
    with server.client() as admin:
        final = admin.get(f"/v1/sessions/{sid}").json()
    assert final["state"] in ("ready", "suspended")
