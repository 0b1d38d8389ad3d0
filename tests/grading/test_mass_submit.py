"""An exam's end through a real ``labctl serve`` (SQLite) on the local cluster: more learners submit at once than
the API has request threads (``LABCTL_REQUEST_THREADS=8``, 10 submissions of a lab whose grading window is replayed
for 10 s), and the API still answers while every replay runs: the gradings run on their own workers, not on the
request threads (before, each held one for its whole replay, and ``/healthz`` waited for the first to end). Every
submission is graded exactly once (one grade, one ``submission.graded`` event each), no answer is a 5xx and the log
holds no traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, select

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT
from labctl.store.webhook_models import OutboxEvent
from tests.support.server import Server
from tests.support.wait import eventually

LAB = "tag-for-showback"
LEARNERS = 10
REQUEST_THREADS = 8
DEMAND = {
    "time_scale": 288, "start": "Mon 00:00", "grading_window": "1d",
    "workloads": [{"workload": "Deployment/web-frontend", "daily": {"00:00": 2, "08:00": 12, "18:00": 4},
                   "per_request": {"cpu_core_seconds": 0.01}}],
}


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory, local_cluster: LocalCluster) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("mass-submit")
    labs = data / "labs"
    shutil.copytree(REPO_ROOT / "labs" / LAB, labs / LAB)
    path = labs / LAB / "lab.yaml"
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "demand": DEMAND, "attempts": 1}, sort_keys=False))
    srv = Server(data_dir=data, kubeconfig=local_cluster.kubeconfig, ready_timeout_s=180,
                 extra_env={"LABCTL_LABS_DIR": str(labs), "LABCTL_REQUEST_THREADS": str(REQUEST_THREADS),
                            "LABCTL_REPLAY_MAX_S": "10", "LABCTL_REPLAY_STEP_S": "5"})
    try:
        yield srv.start()
    finally:
        srv.close()


def _start(c: httpx.Client, learner: str) -> str:
    r = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _graded_events(srv: Server) -> dict[str, int]:
    """``submission.graded`` events in the outbox, by submission id."""
    engine = create_engine(f"sqlite:///{srv.data_dir / 'labctl.db'}")
    try:
        with engine.connect() as db:
            payloads = db.scalars(select(OutboxEvent.payload).where(OutboxEvent.type == "submission.graded")).all()
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    for payload in payloads:
        sub = payload["data"]["submission_id"]
        counts[sub] = counts.get(sub, 0) + 1
    return counts


def test_an_exams_end_is_graded_once_each_while_the_api_answers(exam: Server) -> None:
    with exam.client() as c, ThreadPoolExecutor(max_workers=LEARNERS) as pool:
        sessions = list(pool.map(lambda i: _start(c, f"examinee-{i}"), range(LEARNERS)))
        answers = list(pool.map(lambda sid: c.post(f"/v1/sessions/{sid}/submissions"), sessions))
        assert [a.status_code for a in answers] == [202] * LEARNERS, [a.text for a in answers]
        submissions = [str(a.json()["id"]) for a in answers]

        # Asked once all were accepted: each replay lasts 10 s, so the API answers before any grade is written.
        assert c.get("/healthz").status_code == 200
        during: list[dict[str, Any]] = [c.get(f"/v1/submissions/{s}").json() for s in submissions]
        assert [d["state"] for d in during] == ["grading"] * LEARNERS, during

        def finished() -> list[dict[str, Any]] | None:
            bodies = [c.get(f"/v1/submissions/{s}").json() for s in submissions]
            return bodies if all(b["state"] != "grading" for b in bodies) else None

        done: list[dict[str, Any]] = eventually(finished, timeout=300, interval=2)
        assert [d["state"] for d in done] == ["graded"] * LEARNERS, [d.get("error") for d in done]
        assert all(d["receipt"]["service"] for d in done)  # graded on the replayed window
        for sid in sessions:
            assert len(c.get(f"/v1/sessions/{sid}/submissions").json()) == 1
    assert _graded_events(exam) == dict.fromkeys(submissions, 1)
    log = (exam.data_dir / "serve.log").read_text()
    assert "Traceback" not in log
    assert 'HTTP/1.1" 5' not in log  # uvicorn's access lines: no 5xx answered
