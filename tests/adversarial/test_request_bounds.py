"""Bodies bounded, authentication first, and no input that gets a 5xx: against a real `labctl serve` on SQLite and on
a real PostgreSQL server (which refuses NUL characters in text, so a NUL that reached a query would be a 500 there).

"Before the body is read" is shown on the wire: a raw socket sends only the request head, announcing a body it never
sends, and the answer arrives anyway.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from labctl.localcluster.cluster import LocalCluster
from labctl.outbox.inbound import sign_request
from labctl.outbox.signing import new_secret
from labctl.store.db import open_store
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.tokens import bearer
from tests.webhooks.conftest import reset_schema

LIMIT = 1024 * 1024
EXAM_SECRET = new_secret()
AS_ADMIN = bearer(ADMIN_TOKEN)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, local_cluster: LocalCluster,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"LABCTL_EXAM_WEBHOOK_SECRET": EXAM_SECRET}
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        store = open_store(url)
        reset_schema(store)
        store.engine.dispose()
        env["LABCTL_DATABASE_URL"] = url
    srv = Server(data_dir=tmp_path_factory.mktemp(f"bounds-{request.param}"), kubeconfig=local_cluster.kubeconfig,
                 extra_env=env).start()
    yield srv
    srv.stop()


def head_only(server: Server, head: str) -> tuple[int, dict[str, object]]:
    """Send a request head and no body; return the status and problem document the server answers with."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, rest = data.split(b"\r\n", 1)
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1])


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: Server) -> None:
    for auth in ("", f"Authorization: Bearer {ADMIN_TOKEN}\n"):
        status, problem = head_only(server, f"POST /v1/sessions HTTP/1.1\nHost: labctl\n{auth}"
                                            f"Content-Type: application/json\nContent-Length: {100 * LIMIT}\n\n")
        assert status == 413 and problem["status"] == 413
        assert f"larger than {LIMIT} bytes (LABCTL_MAX_BODY_BYTES)" in str(problem["detail"])


def test_a_streamed_body_is_counted_and_cut_off_at_the_limit(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"lab_id": "'
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in all, sent without a content-length
        yield b'", "learner_id": "ada"}'

    with httpx.Client(base_url=server.url, headers=AS_ADMIN, timeout=60) as http:
        r = http.post("/v1/sessions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        near = http.post("/v1/sessions", json={"lab_id": "x" * (LIMIT - 100), "learner_id": "ada"})
        assert near.status_code == 422  # under the limit: read and validated as usual
        # A route that reads its own body (the signed exam hook) is counted the same way.
        hook = http.post("/v1/hooks/exam", content=chunks(), headers={"webhook-signature": "v1,AAAA"})
    assert hook.status_code == 413 and hook.headers["content-type"] == "application/problem+json"
    assert f"larger than {LIMIT} bytes" in hook.json()["detail"]


def test_anonymous_callers_get_401_before_their_body_is_read_or_validated(server: Server) -> None:
    status, problem = head_only(server, "POST /v1/sessions HTTP/1.1\nHost: labctl\n"
                                        "Content-Type: application/json\nContent-Length: 5000\n\n")
    assert status == 401 and "missing Authorization header" in str(problem["detail"])
    status, problem = head_only(server, "POST /v1/hooks/exam HTTP/1.1\nHost: labctl\n"
                                        "Content-Type: application/json\nContent-Length: 5000\n\n")
    assert status == 401 and "webhook-signature" in str(problem["detail"])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for body in (b"{not json", b'{"lab_id": 5}', b"[" * 5000):
            r = http.post("/v1/sessions", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 401, r.text  # never a 422 that tells a stranger about the schema
            r = http.post("/v1/hooks/exam", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 401, r.text


NUL_REQUESTS = [
    ("GET", "/v1/sessions/ab%00cd", None),
    ("GET", "/v1/sessions?learner_id=a%00b", None),
    ("DELETE", "/v1/sessions/%00", None),
    ("POST", "/v1/sessions", {"lab_id": "tag-for-showback\u0000", "learner_id": "ada"}),
    ("POST", "/v1/sessions/s-1/budget-requests", {"usd": 1, "reason": "more\u0000money"}),
    ("POST", "/v1/tokens", {"name": "nul\u0000name", "role": "exam"}),
    ("POST", "/v1/tokens", {"name": "key", "role": "exam", "extra\u0000key": 1}),
    ("POST", "/v1/webhooks/endpoints", {"url": "https://example.com/h", "description": "\u0000"}),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_REQUESTS)
def test_nul_characters_anywhere_are_a_400_problem(server: Server, method: str, path: str,
                                                   body: dict[str, object] | None) -> None:
    with httpx.Client(base_url=server.url, headers=AS_ADMIN, timeout=30) as http:
        r = http.request(method, path, json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "NUL character" in r.json()["detail"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("body", "status", "needle"), [
    ('{"lab_id": ' + nested(40) + ', "learner_id": "ada"}', 400, "nested deeper than 32 levels"),
    ('{"lab_id": ' + nested(100_000) + ', "learner_id": "ada"}', 400, "nested deeper than 32 levels"),
    ('{"lab_id": "x", "learner_id": "ada", "n": NaN}', 400, "NaN is not a JSON number"),
    ('{"lab_id": "x", "learner_id": "ada", "n": ' + "9" * 5000 + "}", 400, "does not accept"),
])
def test_hostile_json_is_a_400_problem(server: Server, body: str, status: int, needle: str) -> None:
    with httpx.Client(base_url=server.url, headers=AS_ADMIN, timeout=30) as http:
        r = http.post("/v1/sessions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"/v1/webhooks/deliveries/{2**80}/redeliver", None),
    ("POST", "/v1/webhooks/deliveries/-1/redeliver", None),
    ("DELETE", f"/v1/tokens/{10**30}", None),
    ("GET", f"/v1/webhooks/deliveries?limit={10**30}", None),
    ("POST", "/v1/sessions/s-1/extend", {"seconds": 10**40}),
    ("POST", "/v1/sessions/s-1/budget-requests", {"usd": 10**400, "reason": "all of it"}),
    ("POST", "/v1/tokens", {"name": "big", "role": "exam", "ttl_s": 10**20}),
])
def test_huge_integers_in_paths_queries_and_bodies_are_422_problems(server: Server, method: str, path: str,
                                                                     body: dict[str, object] | None) -> None:
    with httpx.Client(base_url=server.url, headers=AS_ADMIN, timeout=30) as http:
        r = http.request(method, path, content=None if body is None else json.dumps(body),
                         headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_signed_hostile_json_to_the_exam_hook_is_a_400_not_a_500(server: Server) -> None:
    cases = {
        "nul": json.dumps({"type": "grade.requested", "data": {"learner_id": "a\u0000", "lab_id": "x"}}),
        "deep": '{"type": "grade.requested", "data": {"x": ' + nested(50_000) + "}}",
        "nan": '{"type": "grade.requested", "data": {"learner_id": NaN}}',
    }
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for name, body in cases.items():
            headers = sign_request(secret=EXAM_SECRET, msg_id=f"msg_{name}", body=body, timestamp=datetime.now(UTC))
            r = http.post("/v1/hooks/exam", content=body, headers=headers)
            assert r.status_code == 400, (name, r.text)
            assert r.headers["content-type"] == "application/problem+json"
