"""The role matrix, played by every wrong caller against a real `labctl serve`.

The walk takes every route of the app (``app.routes``, through the routers FastAPI includes), calls it with no token
and with a token of each role, and compares each answer with :data:`labctl.service.roles.MATRIX`: a role the matrix
names is never refused (401/403), any other role gets a 403 problem, anonymous callers a 401. A route without a matrix
entry fails the walk before any request. Then the rules the matrix cannot express, with real sessions: a platform
token reads the kubeconfig only of a session it started, an exam token sees a session's grade fields only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.routing import iter_route_contexts

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.outbox.signing import new_secret
from labctl.service import roles
from labctl.settings import Settings
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.tokens import bearer, mint
from tests.support.wait import dead_kubeconfig

CALLERS = ("anonymous", "instructor", "platform", "exam", "learner")


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("roles"), kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_EXAM_WEBHOOK_SECRET": new_secret()}).start()
    yield srv
    srv.stop_all_sessions()
    srv.stop()


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str | None]:
    return {"anonymous": None, "instructor": ADMIN_TOKEN,
            "platform": mint(server, "platform", name="course-site")["token"],
            "exam": mint(server, "exam", name="exam-platform")["token"],
            "learner": mint(server, "learner", name="walker", learner_id="walker")["token"]}


def app_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, HEAD aside (it answers as GET)."""
    app = create_app(Settings(data_dir=tmp_path, kubeconfig=dead_kubeconfig(tmp_path)), background=False)
    found = {(method, context.path) for context in iter_route_contexts(app.routes)
             for method in (context.methods or ()) if method != "HEAD"}
    return sorted(found, key=lambda mp: (mp[1], mp[0]))


def concrete(path: str) -> str:
    """A path with every parameter filled by an id that exists nowhere (numbers fit the integer ids too)."""
    return re.sub(r"\{[a-z_]+\}", "999999", path)


def test_every_route_has_a_matrix_entry_and_every_entry_a_route(tmp_path: Path) -> None:
    served = {roles.route_key(m, p) for m, p in app_routes(tmp_path)}
    assert sorted(served - set(roles.MATRIX)) == [], "routes without a decision in labctl/service/roles.py"
    assert sorted(set(roles.MATRIX) - served) == [], "matrix entries for routes that do not exist"


def test_every_route_answers_every_caller_as_the_matrix_says(server: Server, tokens: dict[str, str | None],
                                                             tmp_path: Path) -> None:
    wrong: list[str] = []
    calls = 0
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for method, path in app_routes(tmp_path):
            rule = roles.MATRIX[roles.route_key(method, path)]
            for caller in CALLERS:
                body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
                r = http.request(method, concrete(path), headers=bearer(tokens[caller]), json=body)
                calls += 1
                if rule == roles.PUBLIC:  # a filled-in parameter names nothing: 404 is its honest answer
                    ok = r.status_code < 400 or ("{" in path and r.status_code == 404)
                elif rule == roles.PAGE:  # no bearer token opens the learner page: its link and cookie do
                    ok = r.status_code in (400, 401)
                elif rule == roles.DASHBOARD:  # no bearer token opens the dashboard: the login page, or back to it
                    ok = r.status_code == 401 or (r.status_code == 303 and r.headers["location"].startswith(
                        "/dashboard/login")) or (path == "/dashboard/login" and r.status_code == (
                            200 if method == "GET" else 422))
                elif rule == roles.SIGNED:
                    ok = r.status_code == 401 and "webhook-signature" in r.json()["detail"]
                elif rule == roles.LTI:  # an empty login or launch: a page saying what is missing, whoever asks
                    ok = r.status_code == 400 and r.headers["content-type"].startswith("text/html")
                elif caller == "anonymous":
                    ok = r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
                elif caller in rule:
                    ok = r.status_code not in (401, 403) and r.status_code < 500
                else:
                    ok = (r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
                          and f"needs the role {' or '.join(rule)}" in r.json()["detail"])
                if not ok:
                    wrong.append(f"{caller:10} {method} {path} -> {r.status_code} {r.text[:120]}")
    assert wrong == []
    assert calls >= 5 * 38


@pytest.fixture(scope="module")
def sessions(server: Server, tokens: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    """Ann's session started by the course site, Bob's by an instructor."""
    with server.client(str(tokens["platform"])) as site, server.client() as admin:
        ann = site.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "ann"})
        bob = admin.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "bob"})
    assert ann.status_code == 201, ann.text
    assert bob.status_code == 201, bob.text
    return {"ann": ann.json(), "bob": bob.json()}


def test_a_platform_token_reads_only_the_kubeconfigs_of_sessions_it_started(
        server: Server, tokens: dict[str, str | None], sessions: dict[str, dict[str, Any]]) -> None:
    ann, bob = sessions["ann"]["id"], sessions["bob"]["id"]
    other_site = mint(server, "platform", name="other-course-site")["token"]
    ann_token = mint(server, "learner", name="ann", learner_id="ann")["token"]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        def kubeconfig(session_id: str, token: str | None) -> httpx.Response:
            return http.get(f"/v1/sessions/{session_id}/kubeconfig", headers=bearer(token))

        mine = kubeconfig(ann, tokens["platform"])
        assert mine.status_code == 200, mine.text
        assert yaml.safe_load(mine.text)["contexts"][0]["context"]["namespace"] == sessions["ann"]["namespace"]
        for session_id, token in ((ann, other_site), (bob, tokens["platform"])):
            refused = kubeconfig(session_id, token)
            assert refused.status_code == 403, refused.text
            assert "only of sessions it started" in refused.json()["detail"]
            assert refused.headers["content-type"] == "application/problem+json"  # no kubeconfig in it
        assert kubeconfig(ann, ann_token).status_code == 200  # the learner's own, whoever started it
        assert kubeconfig(bob, ann_token).status_code == 404  # someone else's does not exist for a learner
        assert kubeconfig(bob, ADMIN_TOKEN).status_code == 200
        assert kubeconfig(ann, tokens["exam"]).status_code == 403
        # The platform may still act for the learners it names, e.g. read the timeline of Bob's session.
        assert http.get(f"/v1/sessions/{bob}/events", headers=bearer(tokens["platform"])).status_code == 200


def test_an_exam_token_sees_grade_fields_only_and_changes_nothing(
        server: Server, tokens: dict[str, str | None], sessions: dict[str, dict[str, Any]]) -> None:
    ann = sessions["ann"]["id"]
    exam = bearer(tokens["exam"])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        seen = http.get(f"/v1/sessions/{ann}", headers=exam)
        assert seen.status_code == 200, seen.text
        assert set(seen.json()) == {"id", "lab_id", "learner_id", "provider", "state", "created_at", "expires_at",
                                    "deadline_at"}
        listed = http.get("/v1/sessions", headers=exam, params={"learner_id": "ann"}).json()
        assert [s["id"] for s in listed] == [ann] and "namespace" not in listed[0] and "cost" not in listed[0]
        assert http.get(f"/v1/sessions/{ann}/submissions", headers=exam).json() == []
        for method, path, body in (("GET", f"/v1/sessions/{ann}/events", None),
                                   ("POST", f"/v1/sessions/{ann}/budget-requests", {"usd": 500, "reason": "x"}),
                                   ("POST", f"/v1/sessions/{ann}/extend", {"seconds": 600}),
                                   ("DELETE", f"/v1/sessions/{ann}", None),
                                   ("GET", "/v1/labs", None)):
            r = http.request(method, path, headers=exam, json=body)
            assert r.status_code == 403, (method, path, r.text)
        full = http.get(f"/v1/sessions/{ann}", headers=bearer(ADMIN_TOKEN)).json()
    assert full["budget_request_usd"] is None and full["expires_at"] == sessions["ann"]["expires_at"]
    assert full["state"] == "ready"


def test_a_platform_token_cannot_approve_budgets_or_reach_the_instructors_tools(
        server: Server, tokens: dict[str, str | None], sessions: dict[str, dict[str, Any]]) -> None:
    ann = sessions["ann"]["id"]
    site = bearer(tokens["platform"])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        asked = http.post(f"/v1/sessions/{ann}/budget-requests", headers=site, json={"usd": 2, "reason": "GPU run"})
        assert asked.status_code == 200, asked.text  # on the learner's behalf: allowed
        for method, path, body in (("POST", f"/v1/sessions/{ann}/budget-requests/approve", None),
                                   ("GET", "/v1/costs", None),
                                   ("POST", "/v1/tokens", {"name": "me-too", "role": "instructor"}),
                                   ("GET", "/v1/tokens", None),
                                   ("POST", "/v1/webhooks/endpoints", {"url": "https://example.com/h"})):
            r = http.request(method, path, headers=site, json=body)
            assert r.status_code == 403, (method, path, r.text)
        budget = http.get(f"/v1/sessions/{ann}", headers=bearer(ADMIN_TOKEN)).json()["budget_usd"]
    assert budget == sessions["ann"]["budget_usd"]
