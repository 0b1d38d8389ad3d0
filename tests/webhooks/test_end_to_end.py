"""The exam platform's whole loop through a running `labctl serve`: signed events out, "grade now" in.

A receiver built on the `standardwebhooks` package (not on labctl's code) verifies every event; the inbound
grade.requested is signed the way an exam platform would sign it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labctl.localcluster.cluster import LocalCluster
from labctl.outbox.inbound import sign_request
from labctl.outbox.signing import new_secret
from tests.support.server import Server
from tests.support.wait import eventually
from tests.webhooks.receiver import Receiver


def _types(receiver: Receiver, session_id: str) -> list[str]:
    return [a.event["type"] for a in receiver.unique() if a.event["data"].get("session_id") == session_id]


def test_session_events_and_grade_requested_round_trip(local_cluster: LocalCluster, tmp_path: Path) -> None:
    exam_secret = new_secret()
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_EXAM_WEBHOOK_SECRET": exam_secret,
                            "LABCTL_WEBHOOK_ALLOW": "127.0.0.1"}).start()  # the receiver is on loopback
    receiver = Receiver()
    try:
        with srv.client() as c:
            receiver.start()
            made = c.post("/v1/webhooks/endpoints", json={"url": receiver.url, "events": ["*"]})
            assert made.status_code == 201, made.text
            receiver.secrets.append(made.json()["secret"])  # the receiver knows only what labctl handed out

            session = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "examinee"}).json()
            sid = session["id"]
            eventually(lambda: "session.ready" in _types(receiver, sid), timeout=30)

            body = json.dumps({"type": "grade.requested",
                               "data": {"learner_id": "examinee", "lab_id": "tag-for-showback"}})
            answers = []
            for msg_id in ("msg_exam_1", "msg_exam_1", "msg_exam_1", "msg_exam_2"):
                headers = sign_request(secret=exam_secret, msg_id=msg_id, body=body, timestamp=datetime.now(UTC))
                answers.append(c.post("/v1/hooks/exam", content=body, headers=headers))
            assert [a.status_code for a in answers] == [200, 200, 200, 200], [a.text for a in answers]
            results = [a.json()["result"] for a in answers]
            assert len({r["submission_id"] for r in results}) == 1  # one submission, however often asked
            submission_id = results[0]["submission_id"]

            graded = eventually(lambda: [a.event for a in receiver.unique()
                                         if a.event["type"] == "submission.graded"], timeout=60)
            data: dict[str, Any] = graded[0]["data"]
            assert data["submission_id"] == submission_id
            assert (data["learner_id"], data["lab_id"]) == ("examinee", "tag-for-showback")
            assert data["max_score"] > 0 and isinstance(data["checks"], list) and "items" in data["receipt"]
            assert len(c.get(f"/v1/sessions/{sid}/submissions").json()) == 1

            c.delete(f"/v1/sessions/{sid}")
            eventually(lambda: "session.terminated" in _types(receiver, sid), timeout=120)
            order = _types(receiver, sid)
            assert order.index("session.ready") < order.index("session.terminated")
            assert all(a.verified for a in receiver.arrivals)

            stale = sign_request(secret=exam_secret, msg_id="msg_old", body=body,
                                 timestamp=datetime.fromtimestamp(time.time() - 3600, tz=UTC))
            assert c.post("/v1/hooks/exam", content=body, headers=stale).status_code == 400
            forged = sign_request(secret=new_secret(), msg_id="msg_forged", body=body, timestamp=datetime.now(UTC))
            assert c.post("/v1/hooks/exam", content=body, headers=forged).status_code == 401
            nobody = json.dumps({"type": "grade.requested", "data": {"learner_id": "ghost", "lab_id": "idle-hunter"}})
            unknown = c.post("/v1/hooks/exam", content=nobody,
                             headers=sign_request(secret=exam_secret, msg_id="msg_ghost", body=nobody,
                                                  timestamp=datetime.now(UTC)))
            assert unknown.status_code == 404
            assert unknown.headers["content-type"] == "application/problem+json"
            assert "ghost" in unknown.json()["detail"]
    finally:
        receiver.stop()
        srv.stop_all_sessions()
        srv.stop()
