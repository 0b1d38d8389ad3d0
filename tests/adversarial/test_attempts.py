"""Attempts and budget belong to the learner and the lab: deleting a session and starting again gives neither new
attempts nor new money; only an instructor's grant does. A submission that fails on labctl's side uses no attempt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.localcluster.cluster import LocalCluster
from tests.adversarial.budget_world import ADMIN, QUIET_TIME, MeterOutage, World, labs_with, make_world
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.wait import eventually

LAB = "tag-for-showback"
LABCTL = str(Path(sys.executable).parent / "labctl")


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    labs = labs_with(tmp_path, LAB, {"time": QUIET_TIME, "attempts": 1})
    w = make_world(tmp_path, local_cluster, labs)
    with w.client:
        yield w
        w.stop_all()


def _submit(w: World, sid: str, headers: dict[str, str]) -> dict[str, object]:
    r = w.client.post(f"/v1/sessions/{sid}/submissions", headers=headers)
    assert r.status_code == 202, r.text
    return dict(w.client.get(f"/v1/submissions/{r.json()['id']}", headers=headers).json())


def _delete(w: World, sid: str, headers: dict[str, str]) -> None:
    assert w.client.delete(f"/v1/sessions/{sid}", headers=headers).status_code == 202
    # The sandbox is removed by the removal workers, after the answer.
    eventually(lambda: w.session(sid)["state"] == "terminated", timeout=180)


def test_starting_again_gives_no_new_attempts_or_money(world: World) -> None:
    learner = world.token("phoenix", "learner", "phoenix")
    first = world.start(LAB, "phoenix", headers=learner)
    world.sweep()
    world.clock.advance(minutes=30)
    world.sweep()
    spent = world.session(first["id"])["cost"]["accrued_usd"]
    assert spent > 0
    assert _submit(world, first["id"], learner)["state"] == "graded"
    assert world.session(first["id"])["state"] == "graded"  # its only attempt: frozen
    _delete(world, first["id"], learner)

    second = world.start(LAB, "phoenix", headers=learner)
    assert second["budget_usd"] == pytest.approx(2 - spent, abs=1e-4)  # the lab's $2 less what the first spent
    refused = world.client.post(f"/v1/sessions/{second['id']}/submissions", headers=learner)
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"no attempts left: 1 of 1 used for lab {LAB}"

    grant = {"lab_id": LAB, "learner_id": "phoenix", "attempts": 1, "usd": 1.5, "reason": "lost work to an outage"}
    assert world.client.post("/v1/sessions/grants", json=grant, headers=learner).status_code == 403
    r = world.client.post("/v1/sessions/grants", json=grant, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert (r.json()["attempts_left"], r.json()["attempts_used"]) == (1, 1)
    assert r.json()["budget_left_usd"] == pytest.approx(3.5 - spent, abs=1e-3)
    assert world.session(second["id"])["budget_usd"] == pytest.approx(3.5 - spent, abs=1e-4)
    granted = [e for e in world.events(second["id"]) if e["kind"] == "granted"]
    assert len(granted) == 1 and "lost work to an outage" in granted[0]["detail"]["reason"]
    assert _submit(world, second["id"], learner)["state"] == "graded"


def test_no_money_left_means_no_new_session(world: World) -> None:
    first = world.start(LAB, "broke")
    world.sweep()
    rate = world.session(first["id"])["cost"]["burn_rate_usd_per_hour"]
    world.clock.advance(hours=2.5 / rate)  # $2.50 of a $2 budget
    world.sweep()
    _delete(world, first["id"], ADMIN)
    refused = world.client.post("/v1/sessions", json={"lab_id": LAB, "learner_id": "broke"}, headers=ADMIN)
    assert refused.status_code == 409
    assert "no budget left" in refused.json()["detail"]
    assert refused.headers["content-type"] == "application/problem+json"


def test_an_infrastructure_failure_uses_no_attempt(world: World, tmp_path: Path) -> None:
    learner = world.token("unlucky", "learner", "unlucky")
    session = world.start(LAB, "unlucky", headers=learner)
    sid = session["id"]
    outage = MeterOutage(world.rt.sessions.provider)
    world.rt.sessions.provider = outage
    outage.armed = True
    failed = _submit(world, sid, learner)
    assert failed["state"] == "error"
    assert "no attempt was used" in str(failed["error"])
    assert world.session(sid)["state"] == "ready"
    kubectl = world.kubectl_as(sid, learner, tmp_path / "laptop")
    writable = kubectl("create", "configmap", "still-mine", "--from-literal=a=b")
    assert writable.returncode == 0, writable.stderr  # unfrozen: the learner keeps working

    outage.armed = False
    assert _submit(world, sid, learner)["state"] == "graded"  # the lab's only attempt is still there
    again = world.client.post(f"/v1/sessions/{sid}/submissions", headers=learner)
    assert again.status_code == 409


def _labctl(server: Server, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABCTL_URL": server.url, "LABCTL_TOKEN": token}
    return subprocess.run([LABCTL, *args], env=env, capture_output=True, text=True, timeout=120)


def test_instructors_grant_with_the_cli_and_learners_cannot(server: Server) -> None:
    with server.client() as c:
        token = c.post("/v1/tokens", json={"name": "g", "role": "learner", "learner_id": "granted"}).json()["token"]
    made = _labctl(server, "sessions", "grant", "--lab", LAB, "--learner", "granted", "--attempts", "2",
                   "--usd", "1", "--reason", "accommodation", "-o", "json")
    assert made.returncode == 0, made.stderr
    allowance = json.loads(made.stdout)
    assert (allowance["attempts"], allowance["attempts_left"], allowance["budget_usd"]) == (5, 5, 3.0)
    refused = _labctl(server, "sessions", "grant", "--lab", LAB, "--learner", "granted", "--attempts", "9",
                      "--reason", "me", token=token)
    assert refused.returncode == 1
    assert "instructor" in refused.stderr
    nothing = _labctl(server, "sessions", "grant", "--lab", LAB, "--learner", "granted", "--reason", "zero")
    assert nothing.returncode == 1
    assert "at least one attempt or some money" in nothing.stderr
