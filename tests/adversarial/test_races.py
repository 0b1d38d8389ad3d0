"""Commands racing sweeps: 30 sessions under ``labctl serve`` with its real sweep loop running every second, while
threads fire DELETE, submit, extend, suspend, resume, reset, budget requests and learners' GETs at random sessions.

Nothing may answer a 5xx (a 503 only with ``Retry-After``), every error is a problem document, the service log holds
no traceback, and once the dust settles every session's state agrees with the cluster: a ``suspended`` sandbox has
its Deployments at zero and its quota at ``pods: 0``, a ``ready`` one has them back, a ``terminated`` one has no
namespace, and the learner's own kubectl may write exactly when the state says the sandbox is not frozen.
Run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labctl.localcluster.cluster import LocalCluster
from tests.support.postgres import fresh_database
from tests.support.server import Server
from tests.support.wait import eventually

LAB = "tag-for-showback"
SESSIONS = 30
RACE_S = 45.0
FIRING_THREADS = 8
STARTER_REPLICAS = {"web-frontend": 2, "recommender-api": 2, "model-cache": 1}
QUOTA_PODS = "20"
VARYING = re.compile(r"tag-for-showback-[0-9a-f]+|[0-9:T.+-]{19,}")  # ids and times, left out of the summary
SETTLED = {"ready", "suspended", "graded", "terminated"}


@dataclass
class Racer:
    sid: str
    learner: str
    token: str


@pytest.fixture(params=["sqlite", "postgresql"])
def racing_server(request: pytest.FixtureRequest, local_cluster: LocalCluster,
                  tmp_path: Path) -> Iterator[Server]:
    """``labctl serve`` with sweeps every second, on a fresh SQLite file or a fresh PostgreSQL database."""
    env = {"LABCTL_SWEEP_INTERVAL_S": "1", "LABCTL_SIMULATE_DEMAND": "false"}
    if request.param == "postgresql":
        env["LABCTL_DATABASE_URL"] = fresh_database(request.getfixturevalue("postgres_url"), prefix="races")
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.close(timeout_s=240)


def _start_racers(server: Server) -> list[Racer]:
    def start(i: int) -> Racer:
        learner = f"racer-{i:02d}"
        with server.client() as admin:
            r = admin.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner})
            assert r.status_code == 201, r.text
            t = admin.post("/v1/tokens", json={"name": learner, "role": "learner", "learner_id": learner})
            assert t.status_code in (200, 201), t.text
        return Racer(sid=r.json()["id"], learner=learner, token=t.json()["token"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(start, range(SESSIONS)))


# (weight, name): learners mostly poll; the rest are the commands issue 13 saw fail.
COMMANDS = [(30, "get"), (8, "extend"), (8, "suspend"), (8, "resume"), (5, "reset"), (6, "submit"),
            (6, "budget"), (2, "delete")]
DELETABLE = SESSIONS // 3  # only these may be stopped, so most sessions stay live to the end and are checked live


def _fire(server: Server, racers: list[Racer], until: float, seed: int) -> list[tuple[str, httpx.Response]]:
    rng = random.Random(seed)
    names = [name for weight, name in COMMANDS for _ in range(weight)]
    answers: list[tuple[str, httpx.Response]] = []
    with server.client() as admin:
        while time.monotonic() < until:
            racer = rng.choice(racers)
            command = rng.choice(names)
            if command == "delete" and racers.index(racer) >= DELETABLE:
                command = "get"
            learner = {"Authorization": f"Bearer {racer.token}"}
            as_learner = rng.random() < 0.5
            headers = learner if as_learner else {}
            base = f"/v1/sessions/{racer.sid}"
            if command == "get":
                r = admin.get(base, headers=learner)
            elif command == "extend":
                r = admin.post(f"{base}/extend", json={"seconds": 60}, headers=headers)
            elif command in ("suspend", "resume", "reset"):
                r = admin.post(f"{base}/{command}", headers=headers)
            elif command == "submit":
                r = admin.post(f"{base}/submissions", headers=learner)
            elif command == "budget":
                r = admin.post(f"{base}/budget-requests", json={"usd": 0.5, "reason": "racing"}, headers=learner)
            else:
                r = admin.delete(base, headers=headers)
            answers.append((f"{command} {racer.sid}", r))
    return answers


def _settle(server: Server, racers: list[Racer]) -> dict[str, dict[str, Any]]:
    """Every session in a resting state (resets, stops and gradings finished), read once more after a sweep."""
    wanted = {r.sid for r in racers}

    def settled() -> dict[str, dict[str, Any]] | None:
        with server.client() as admin:
            rows = {s["id"]: s for s in admin.get("/v1/sessions", params={"lab_id": LAB}).json()
                    if s["id"] in wanted}
        busy = {sid: s["state"] for sid, s in rows.items() if s["state"] not in SETTLED}
        assert not busy, busy
        return rows

    eventually(settled, timeout=180, interval=1)
    time.sleep(2)  # two more sweeps: nothing may move a settled session
    result = settled()
    assert result is not None
    return result


def _namespace(core: client.CoreV1Api, name: str) -> client.V1Namespace | None:
    try:
        return core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _learner_can_write(cluster: LocalCluster, kubeconfig: Path) -> bool:
    """The learner's own kubectl, with the kubeconfig labctl issued: may it create a ConfigMap?"""
    out = subprocess.run([str(cluster.tools.kubectl), "--kubeconfig", str(kubeconfig), "auth", "can-i", "create",
                          "configmaps"], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent)})
    assert out.stdout.strip() in ("yes", "no"), (out.stdout, out.stderr)
    return out.stdout.strip() == "yes"


def _disagreements(server: Server, cluster: LocalCluster, kube: client.ApiClient, racers: list[Racer],
                   rows: dict[str, dict[str, Any]], home: Path) -> list[str]:
    core, apps, batch = client.CoreV1Api(kube), client.AppsV1Api(kube), client.BatchV1Api(kube)
    wrong: list[str] = []
    for racer in racers:
        row = rows[racer.sid]
        state, ns = row["state"], row["namespace"]
        if state == "terminated":
            if _namespace(core, ns) is not None:
                wrong.append(f"{racer.sid} is terminated but its namespace {ns} exists")
            continue
        if _namespace(core, ns) is None:
            wrong.append(f"{racer.sid} is {state} but its namespace {ns} is gone")
            continue
        replicas = {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items}
        quota = core.read_namespaced_resource_quota("sandbox", ns).spec.hard.get("pods")
        cron_suspended = {c.metadata.name: bool(c.spec.suspend) for c in batch.list_namespaced_cron_job(ns).items}
        if state == "suspended":
            if any(replicas.values()) or quota != "0" or not all(cron_suspended.values()):
                wrong.append(f"{racer.sid} is suspended but runs: replicas {replicas}, quota pods {quota}, "
                             f"cronjobs suspended {cron_suspended}")
        elif replicas != STARTER_REPLICAS or quota != QUOTA_PODS or any(cron_suspended.values()):
            wrong.append(f"{racer.sid} is {state} but replicas {replicas}, quota pods {quota}, cronjobs suspended "
                         f"{cron_suspended}")
        with server.client(racer.token) as learner:
            r = learner.get(f"/v1/sessions/{racer.sid}/kubeconfig")
        assert r.status_code == 200, r.text
        config = home / racer.learner / "kubeconfig.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(r.text)
        writable = _learner_can_write(cluster, config)
        if writable != (state in ("ready", "suspended")):
            wrong.append(f"{racer.sid} is {state} but the learner {'may' if writable else 'may not'} write")
    return wrong


def test_commands_racing_sweeps_give_no_5xx_and_states_agree_with_the_cluster(
        racing_server: Server, local_cluster: LocalCluster, kube: client.ApiClient, tmp_path: Path) -> None:
    racers = _start_racers(racing_server)
    until = time.monotonic() + RACE_S
    with ThreadPoolExecutor(max_workers=FIRING_THREADS) as pool:
        batches = list(pool.map(lambda seed: _fire(racing_server, racers, until, seed), range(FIRING_THREADS)))
    answers = [a for batch in batches for a in batch]

    failures = [f"{what}: {r.status_code} {r.text[:300]}" for what, r in answers if r.status_code >= 500
                and not (r.status_code == 503 and r.headers.get("retry-after"))]
    assert not failures, f"{len(failures)} of {len(answers)} answers were 5xx:\n" + "\n".join(failures[:20])
    not_problems = [f"{what}: {r.status_code} {r.headers.get('content-type')} {r.text[:200]}" for what, r in answers
                    if r.status_code >= 400 and (r.headers.get("content-type") != "application/problem+json"
                                                 or not r.json().get("detail"))]
    assert not not_problems, "\n".join(not_problems[:20])
    refusals = Counter(f"{what.split()[0]} {r.status_code}: {VARYING.sub('…', r.json()['detail'])[:90]}"
                       for what, r in answers if r.status_code >= 400)
    print(f"{len(answers)} answers; refusals:", *sorted(refusals.items(), key=lambda kv: -kv[1]), sep="\n  ")
    reset_outcomes = {r.json()["state"] for what, r in answers if what.startswith("reset") and r.status_code < 300}
    assert reset_outcomes <= {"ready"}, reset_outcomes  # an answered reset made the sandbox again
    kinds = {what.split()[0] for what, r in answers if r.status_code < 300}
    assert {"get", "extend", "suspend", "resume", "reset", "submit", "budget"} <= kinds, kinds  # each really raced

    rows = _settle(racing_server, racers)
    wrong = _disagreements(racing_server, local_cluster, kube, racers, rows, tmp_path / "laptops")
    assert not wrong, "\n".join(wrong)
    log = (racing_server.data_dir / "serve.log").read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    assert "unhandled error" not in log

