"""``POST /v1/hooks/exam``: signed with the reference ``standardwebhooks`` package, on SQLite and on PostgreSQL.

The ``grade.requested`` handler here is a real function that records its calls and raises ``NotFound`` for a learner
it does not know, as the submission flow will; the route, verification, de-duplication and the store are labctl's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from api.app import create_app
from labctl.errors import NotFound
from labctl.outbox import BadRequest, Conflict, Unauthorized
from labctl.outbox.inbound import sign_request, verify, verify_and_record
from labctl.outbox.signing import new_secret
from labctl.settings import Settings
from labctl.store.db import Store
from labctl.store.webhook_models import InboundMessage
from tests.support.wait import dead_kubeconfig
from tests.webhooks.apps import webhook_app

SECRET = new_secret()
KNOWN = {("ada", "tag-for-showback")}


class GradeRequests:
    """A grade.requested handler: submits (records) once per call, refuses learners and labs it does not know."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(data)
        time.sleep(self.delay_s)
        if (data.get("learner_id"), data.get("lab_id")) not in KNOWN:
            raise NotFound(f"learner {data.get('learner_id')} has no live session for lab {data.get('lab_id')}")
        return {"submission_id": f"sub-{len(self.calls)}", "state": "grading"}


def signed(data: dict[str, Any], *, msg_id: str, secret: str = SECRET, at: datetime | None = None,
           type: str = "grade.requested") -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": type, "data": data})
    when = at or datetime.now(UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
               "webhook-signature": Webhook(secret).sign(msg_id, when, body), "content-type": "application/json"}
    return body.encode(), headers


@pytest.fixture
def handler() -> GradeRequests:
    return GradeRequests()


@pytest.fixture
def client(store: Store, handler: GradeRequests) -> Iterator[TestClient]:
    with TestClient(webhook_app(store, exam_secret=SECRET, handlers={"grade.requested": handler})) as c:
        yield c


def inbound_rows(store: Store) -> int:
    with store.session() as db:
        return int(db.scalar(select(func.count()).select_from(InboundMessage)) or 0)


def assert_problem(response: Any, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["instance"] == "/v1/hooks/exam"
    assert needle in body["detail"], body["detail"]


def test_a_valid_request_is_handled_once_even_when_sent_three_times(client: TestClient, store: Store,
                                                                     handler: GradeRequests) -> None:
    body, headers = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_exam_1")
    answers = [client.post("/v1/hooks/exam", content=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len(handler.calls) == 1
    assert {json.dumps(a.json(), sort_keys=True) for a in answers} == {json.dumps(answers[0].json(), sort_keys=True)}
    assert answers[0].json()["result"] == {"submission_id": "sub-1", "state": "grading"}
    assert answers[0].json()["webhook_id"] == "msg_exam_1"
    assert inbound_rows(store) == 1

    # A new id is a new request (the exam platform meant it).
    body2, headers2 = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_exam_2")
    assert client.post("/v1/hooks/exam", content=body2, headers=headers2).json()["result"]["submission_id"] == "sub-2"


def test_concurrent_copies_act_once(store: Store) -> None:
    slow = GradeRequests(delay_s=0.5)
    body, headers = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_exam_race")
    statuses: list[int] = []
    with TestClient(webhook_app(store, exam_secret=SECRET, handlers={"grade.requested": slow})) as c:
        def send() -> None:
            statuses.append(c.post("/v1/hooks/exam", content=body, headers=headers).status_code)

        threads = [threading.Thread(target=send) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(slow.calls) == 1
        assert sorted(statuses) in ([200, 200, 200], [200, 200, 409], [200, 409, 409])
        assert c.post("/v1/hooks/exam", content=body, headers=headers).status_code == 200  # later: the first result
    assert len(slow.calls) == 1


@pytest.mark.parametrize("tamper", ["wrong-secret", "changed-body", "no-signature", "not-v1"])
def test_a_bad_signature_is_401_and_changes_nothing(client: TestClient, store: Store, handler: GradeRequests,
                                                    tamper: str) -> None:
    data = {"learner_id": "ada", "lab_id": "tag-for-showback"}
    body, headers = signed(data, msg_id="msg_bad", secret=new_secret() if tamper == "wrong-secret" else SECRET)
    if tamper == "changed-body":
        body = body.replace(b'"ada"', b'"adb"')
    if tamper == "no-signature":
        del headers["webhook-signature"]
    if tamper == "not-v1":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    response = client.post("/v1/hooks/exam", content=body, headers=headers)
    assert_problem(response, 401, "signature")
    assert handler.calls == [] and inbound_rows(store) == 0


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6), timedelta(days=-1)])
def test_a_stale_or_future_timestamp_is_400_and_changes_nothing(client: TestClient, store: Store,
                                                                handler: GradeRequests, offset: timedelta) -> None:
    body, headers = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_old",
                           at=datetime.now(UTC) + offset)
    response = client.post("/v1/hooks/exam", content=body, headers=headers)
    assert_problem(response, 400, "webhook-timestamp")
    assert handler.calls == [] and inbound_rows(store) == 0


def test_an_unknown_learner_is_404_and_leaves_no_record(client: TestClient, store: Store,
                                                        handler: GradeRequests) -> None:
    body, headers = signed({"learner_id": "nobody", "lab_id": "tag-for-showback"}, msg_id="msg_who")
    response = client.post("/v1/hooks/exam", content=body, headers=headers)
    assert_problem(response, 404, "nobody")
    assert len(handler.calls) == 1 and inbound_rows(store) == 0


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b'{"type": "exam.exploded", "data": {}}', 422, "no handler for event type 'exam.exploded'"),
    (b'{"type": "grade.requested"}', 422, "event object"),
    (b'["grade.requested"]', 422, "event object"),
    (b"grade now please", 400, "not JSON"),
])
def test_unknown_types_and_malformed_bodies_are_rejected(client: TestClient, store: Store, handler: GradeRequests,
                                                         body: bytes, status: int, needle: str) -> None:
    when = datetime.now(UTC)
    headers = {"webhook-id": "msg_odd", "webhook-timestamp": str(int(when.timestamp())),
               "webhook-signature": Webhook(SECRET).sign("msg_odd", when, body.decode())}
    assert_problem(client.post("/v1/hooks/exam", content=body, headers=headers), status, needle)
    assert handler.calls == [] and inbound_rows(store) == 0


def test_without_a_configured_secret_the_hook_is_off(store: Store) -> None:
    body, headers = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_off")
    with TestClient(webhook_app(store)) as c:
        response = c.post("/v1/hooks/exam", content=body, headers=headers)
    assert response.status_code == 503 and "LABCTL_EXAM_WEBHOOK_SECRET" in response.json()["detail"]


def test_a_claim_left_by_a_dead_request_is_taken_over(store: Store, handler: GradeRequests) -> None:
    now = datetime.now(UTC)
    body, headers = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_orphan", at=now)
    with store.session() as db:  # what a request killed between claiming and completing leaves behind
        db.add(InboundMessage(webhook_id="msg_orphan", type="grade.requested", received_at=now, claimed_at=now))
    handlers = {"grade.requested": handler}
    with pytest.raises(Conflict, match="being processed"):
        verify_and_record(store, headers=headers, body=body, secret=SECRET, now=now, handlers=handlers)
    later = now + timedelta(minutes=3)
    row = verify_and_record(store, headers=headers, body=body, secret=SECRET, now=later,
                            handlers=handlers, claim_timeout=timedelta(minutes=2))
    assert row.result == {"submission_id": "sub-1", "state": "grading"} and len(handler.calls) == 1


def test_verify_checks_headers_with_the_injected_clock() -> None:
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    body = '{"type":"grade.requested","data":{}}'
    headers = sign_request(secret=SECRET, msg_id="msg_v", body=body, timestamp=at)
    assert Webhook(SECRET).sign("msg_v", at, body) == headers["webhook-signature"]
    assert verify(headers=headers, body=body.encode(), secret=SECRET, now=at + timedelta(minutes=4)) == (
        "msg_v", {"type": "grade.requested", "data": {}})
    with pytest.raises(BadRequest, match="too old"):
        verify(headers=headers, body=body.encode(), secret=SECRET, now=at + timedelta(minutes=5, seconds=1))
    with pytest.raises(BadRequest, match="too far in the future"):
        verify(headers=headers, body=body.encode(), secret=SECRET, now=at - timedelta(minutes=6))
    with pytest.raises(BadRequest, match="Unix seconds"):
        verify(headers={**headers, "webhook-timestamp": "yesterday"}, body=body.encode(), secret=SECRET, now=at)
    with pytest.raises(BadRequest, match="webhook-id"):
        verify(headers={**headers, "webhook-id": ""}, body=body.encode(), secret=SECRET, now=at)
    with pytest.raises(Unauthorized):
        verify(headers={**headers, "webhook-signature": "v1,not-base64!"}, body=body.encode(), secret=SECRET, now=at)


def test_the_service_wires_grade_requested_to_the_learners_live_session(tmp_path: Path) -> None:
    dead = dead_kubeconfig(tmp_path)
    settings = Settings(data_dir=tmp_path, kubeconfig=dead, exam_webhook_secret=SECRET,  # type: ignore[arg-type]
                        admin_token="service-wiring-admin-token-0123456789")  # type: ignore[arg-type]
    body, headers = signed({"learner_id": "ada", "lab_id": "tag-for-showback"}, msg_id="msg_wiring")
    with TestClient(create_app(settings, background=False)) as c:
        response = c.post("/v1/hooks/exam", content=body, headers=headers)
        listed = c.get("/v1/webhooks/endpoints",
                       headers={"Authorization": "Bearer service-wiring-admin-token-0123456789"})
    # Wired to the submission flow: with no live session for the learner, a 404 naming them (nothing recorded).
    assert response.status_code == 404
    assert response.json()["detail"] == "learner 'ada' has no live session in lab 'tag-for-showback'"
    assert listed.status_code == 200 and listed.json() == []
