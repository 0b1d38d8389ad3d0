"""The instructor dashboard's sign-in and cookie, played by an adversary over plain HTTP against a real `labctl serve`
and the local control plane (the browser's own view is in ``tests/browser/test_dashboard.py``).

No cookie, a changed one, a learner page cookie, a pass signed for another purpose, an expired pass and a revoked
token's cookie get the login page (or a 401) and never a byte of session data; learner, platform and exam tokens
cannot sign in, nor can another site; an action without the dashboard's anti-forgery token is a 403; the cookie opens
no ``/v1`` route and no learner page.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from labctl.localcluster.cluster import LocalCluster
from labctl.service import auth, links
from labctl.service.auth import Principal
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.tokens import mint

pytestmark = pytest.mark.cluster

KEY = links.derive_key(ADMIN_TOKEN.encode())  # the server derives its signing key from its admin token
ADMIN_REF = auth.reference(Principal(name="admin", role="instructor"), admin_token=ADMIN_TOKEN)
LAB = "tag-for-showback"
COOKIE = "labctl_dashboard"


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("dashboard"), kubeconfig=local_cluster.kubeconfig).start()
    yield srv
    srv.stop_all_sessions()
    srv.stop()


@pytest.fixture(scope="module")
def ada(server: Server) -> dict[str, Any]:
    with server.client() as admin:
        r = admin.post("/v1/sessions", json={"lab_id": LAB, "learner_id": "ada-dash"})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


@contextmanager
def sign_in(server: Server, token: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in with ``token`` (its cookie jar holds the dashboard cookie)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/dashboard/login", json={"token": token})
        assert r.status_code == 200, r.text
        assert COOKIE in http.cookies
        yield http


def csrf_of(http: httpx.Client) -> str:
    page = http.get("/dashboard")
    assert page.status_code == 200, page.text
    marker = '<meta name="labctl-csrf" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start:page.text.index('"', start)]


def refused(server: Server, cookie: str | None, session_id: str) -> None:
    """With this cookie (or none) the dashboard is the login page and its live and action routes are 401s."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        if cookie is not None:
            http.cookies.set(COOKIE, cookie)
        page = http.get("/dashboard", follow_redirects=False)
        assert page.status_code == 303, page.text
        assert page.headers["location"].startswith("/dashboard/login")
        if cookie is not None:  # a bad cookie is cleared
            assert f'{COOKIE}=""' in page.headers["set-cookie"] and "Path=/dashboard" in page.headers["set-cookie"]
        landed = http.get("/dashboard", follow_redirects=True)
        assert landed.status_code == 200 and "Sign in to the dashboard" in landed.text
        live = http.get("/dashboard/state")
        action = http.post(f"/dashboard/sessions/{session_id}/stop", json={}, headers={"x-labctl-csrf": "x"})
        for r in (page, landed, live):
            assert session_id not in r.text and "ada-dash" not in r.text, r.text
        assert "ada-dash" not in action.text and session_id not in action.json()["detail"]  # its path is echoed
        assert live.status_code == 401 and live.headers["content-type"] == "application/problem+json"
        assert action.status_code == 401, action.text
        assert "sign in" in live.json()["detail"]
    with httpx.Client(base_url=server.url, timeout=60) as admin_view:  # the refused action changed nothing
        state = admin_view.get(f"/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert state.json()["state"] == "ready"


def test_the_dashboard_shows_the_session_to_a_signed_in_instructor(server: Server, ada: dict[str, Any]) -> None:
    with sign_in(server, ADMIN_TOKEN) as http:
        set_cookie = http.post("/dashboard/login", json={"token": ADMIN_TOKEN}).headers["set-cookie"]
        for attribute in ("HttpOnly", "Path=/dashboard", "SameSite=strict", "Max-Age=28800"):
            assert attribute.lower() in set_cookie.lower(), set_cookie
        assert ADMIN_TOKEN not in set_cookie  # a signed reference to the token, never the token
        page = http.get("/dashboard")
        assert page.status_code == 200 and ada["id"] in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        live = http.get("/dashboard/state", params={"lab_id": LAB})
        assert live.status_code == 200 and ada["id"] in live.json()["panels"]["sessions"]
        other = http.get("/dashboard/state", params={"lab_id": "gpu-rightsizing"})
        assert ada["id"] not in other.json()["panels"]["sessions"]  # the filter is the server's


def test_no_cookie_a_changed_one_or_a_foreign_one_gets_the_login_page_and_no_data(
        server: Server, ada: dict[str, Any]) -> None:
    session_id = ada["id"]
    refused(server, None, session_id)
    with sign_in(server, ADMIN_TOKEN) as http:
        good = str(http.cookies[COOKIE])
    refused(server, good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"), session_id)
    refused(server, "", session_id)
    refused(server, "x" * 5000, session_id)
    later = datetime.now(UTC) + timedelta(hours=1)
    control = links.sign_pass(links.StaffPass(ADMIN_REF, later), key=KEY, purpose=links.Purpose.DASHBOARD)
    with httpx.Client(base_url=server.url, cookies={COOKIE: control}, timeout=60) as http:
        assert session_id in http.get("/dashboard").text  # the control: each case below changes one thing of it
    for purpose in (links.Purpose.DASHBOARD_CSRF, links.Purpose.PAGE, links.Purpose.LINK):  # signed, other purpose
        refused(server, links.sign_pass(links.StaffPass(ADMIN_REF, later), key=KEY, purpose=purpose), session_id)
    expired = links.StaffPass(ADMIN_REF, datetime.now(UTC) - timedelta(seconds=1))
    refused(server, links.sign_pass(expired, key=KEY, purpose=links.Purpose.DASHBOARD), session_id)
    nobody = links.StaffPass("token:999999", later)  # a well-signed pass for a token that does not exist
    refused(server, links.sign_pass(nobody, key=KEY, purpose=links.Purpose.DASHBOARD), session_id)
    other_key = links.derive_key(b"another labctl's admin token")
    refused(server, links.sign_pass(links.StaffPass(ADMIN_REF, later), key=other_key,
                                    purpose=links.Purpose.DASHBOARD), session_id)
    for ref in ("admin", "admin:0123456789abcdef", "token:", "token:x", "learner:1"):  # no such token, or not one
        refused(server, links.sign_pass(links.StaffPass(ref, later), key=KEY, purpose=links.Purpose.DASHBOARD),
                session_id)


def test_a_learner_page_cookie_is_no_dashboard_cookie(server: Server, ada: dict[str, Any]) -> None:
    with server.client() as admin:
        link = admin.get(f"/v1/sessions/{ada['id']}").json()["learner_url"]
    with httpx.Client(timeout=60) as browser:
        opened = browser.get(link, follow_redirects=False)
        assert opened.status_code == 303
        page_cookie = str(browser.cookies["labctl_page"])
    refused(server, page_cookie, ada["id"])


def test_a_revoked_tokens_sign_in_ends_at_the_next_request(server: Server, ada: dict[str, Any]) -> None:
    made = mint(server, "instructor", name="ta-to-revoke")
    with sign_in(server, made["token"]) as http:
        assert ada["id"] in http.get("/dashboard").text
        cookie = str(http.cookies[COOKIE])
        with server.client() as admin:
            assert admin.delete(f"/v1/tokens/{made['id']}").status_code in (200, 204)
        gone = http.get("/dashboard", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/dashboard/login?why=ended"
    refused(server, cookie, ada["id"])


@pytest.mark.parametrize("role", ["learner", "platform", "exam"])
def test_only_an_instructor_token_signs_in(server: Server, role: str) -> None:
    made = mint(server, role, name=f"{role}-at-the-door", learner_id="ada-dash" if role == "learner" else None)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/dashboard/login", json={"token": made["token"]})
        assert r.status_code == 403, r.text
        assert f"this is a {role} token" in r.json()["detail"] and "needs an instructor token" in r.json()["detail"]
        assert COOKIE not in http.cookies
        for token, needle in (("lct_not-a-token", "unknown token"), ("", "Invalid request")):
            bad = http.post("/dashboard/login", json={"token": token})
            assert bad.status_code in (401, 422) and needle in bad.json()["detail"], bad.text
        assert http.post("/dashboard/login", content=b"token=" + ADMIN_TOKEN.encode(),
                         headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 422
        assert COOKIE not in http.cookies


def test_another_site_cannot_sign_a_browser_in(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/dashboard/login", json={"token": ADMIN_TOKEN}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403 and "another site" in r.json()["detail"]
        assert COOKIE not in http.cookies


def test_an_action_needs_the_dashboards_anti_forgery_token(server: Server, ada: dict[str, Any]) -> None:
    with sign_in(server, ADMIN_TOKEN) as http:
        csrf = csrf_of(http)
        url = f"/dashboard/sessions/{ada['id']}/extend"
        page_csrf = links.sign(links.Grant(ada["id"], "ada-dash", datetime.now(UTC) + timedelta(hours=1)), key=KEY,
                               purpose=links.Purpose.CSRF)
        cookie_as_csrf = str(http.cookies[COOKIE])
        for headers in ({}, {"x-labctl-csrf": "nope"}, {"x-labctl-csrf": page_csrf},
                        {"x-labctl-csrf": cookie_as_csrf}):
            r = http.post(url, json={"seconds": 900}, headers=headers)
            assert r.status_code == 403, r.text
            assert "anti-forgery token" in r.json()["detail"]
        with server.client() as admin:
            before = admin.get(f"/v1/sessions/{ada['id']}").json()["expires_at"]
        done = http.post(url, json={"seconds": 900}, headers={"x-labctl-csrf": csrf})
        assert done.status_code == 200, done.text
        with server.client() as admin:
            after = admin.get(f"/v1/sessions/{ada['id']}").json()["expires_at"]
        assert after > before
        assert http.post(url, json={"seconds": "lots"}, headers={"x-labctl-csrf": csrf}).status_code == 422
        learner = mint(server, "learner", name="ada-dash", learner_id="ada-dash")["token"]
        with server.client(learner) as ada_api:
            asked = ada_api.post(f"/v1/sessions/{ada['id']}/budget-requests", json={"usd": 1, "reason": "more"})
        assert asked.status_code == 200, asked.text
        deny = f"/dashboard/sessions/{ada['id']}/budget/deny"
        request_id = {"request_id": asked.json()["budget_request_id"]}
        assert http.post(deny, json=request_id).status_code == 403  # no anti-forgery token: nothing decided
        assert request_id["request_id"] in http.get("/dashboard/state").json()["panels"]["budget"]
        denied = http.post(deny, json=request_id, headers={"x-labctl-csrf": csrf})
        assert denied.status_code == 200 and "Denied" in denied.json()["message"], denied.text
        with server.client() as admin:
            now = admin.get(f"/v1/sessions/{ada['id']}").json()
        assert now["budget_request_id"] is None and now["budget_usd"] == asked.json()["budget_usd"]
        out = http.post("/dashboard/logout", json={}, headers={"x-labctl-csrf": csrf})
        assert out.status_code == 200 and COOKIE not in http.cookies


def test_the_dashboard_cookie_opens_no_v1_route_and_no_learner_page(server: Server, ada: dict[str, Any]) -> None:
    with sign_in(server, ADMIN_TOKEN) as http:
        cookie = str(http.cookies[COOKIE])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        headers = {"cookie": f"{COOKIE}={cookie}; labctl_page={cookie}"}
        for method, path in (("GET", "/v1/sessions"), ("GET", "/v1/costs"), ("GET", f"/v1/sessions/{ada['id']}"),
                             ("POST", f"/v1/sessions/{ada['id']}/extend"), ("GET", "/v1/tokens")):
            r = http.request(method, path, headers=headers, json={"seconds": 60} if method == "POST" else None)
            assert r.status_code == 401, (path, r.text)
            assert "ada-dash" not in r.text and "missing Authorization header" in r.json()["detail"]
        learner = http.get(f"/learn/{ada['id']}", headers=headers)
        assert learner.status_code == 403 and ada["id"] not in learner.text  # a pass is no page cookie
        state = http.get(f"/learn/{ada['id']}/state", headers=headers)
        assert state.status_code == 403 and "ada-dash" not in state.text
        assert "signature does not match" in state.json()["detail"]


def test_bad_input_gets_a_clear_answer_and_never_a_5xx(server: Server, ada: dict[str, Any]) -> None:
    with sign_in(server, ADMIN_TOKEN) as http:
        csrf = {"x-labctl-csrf": csrf_of(http)}
        page = http.get("/dashboard", params={"continue": "not-a-token"})
        assert page.status_code == 400 and "`continue` token" in page.text
        assert page.headers["content-type"].startswith("text/html")
        live = http.get("/dashboard/state", params={"continue": "not-a-token"})
        assert live.status_code == 400 and "`continue` token" in live.json()["detail"]
        nothing = http.get("/dashboard/state", params={"state": "no-such-state", "lab_id": "no-lab"})
        assert nothing.status_code == 200 and "No sessions match" in nothing.json()["panels"]["sessions"]
        answers = {
            "unknown session": http.post("/dashboard/sessions/no-such-session/suspend", json={}, headers=csrf),
            "no pending request": http.post(f"/dashboard/sessions/{ada['id']}/budget/approve",
                                            json={"request_id": "req-0"}, headers=csrf),
            "unknown delivery": http.post("/dashboard/deliveries/424242/redeliver", json={}, headers=csrf),
            "not a delivery id": http.post("/dashboard/deliveries/abc/redeliver", json={}, headers=csrf),
            "extra field": http.post(f"/dashboard/sessions/{ada['id']}/suspend", json={"now": True}, headers=csrf),
            "deep JSON": http.post(f"/dashboard/sessions/{ada['id']}/extend", content=b"[" * 64 + b"]" * 64,
                                   headers={**csrf, "content-type": "application/json"}),
            "no body": http.post(f"/dashboard/sessions/{ada['id']}/extend", headers=csrf),
        }
        expected = {"unknown session": 404, "no pending request": 409, "unknown delivery": 404,
                    "not a delivery id": 422, "extra field": 422, "deep JSON": 400, "no body": 422}
        for name, r in answers.items():
            assert r.status_code == expected[name], (name, r.text)
            assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"], name
        login = http.get("/dashboard/login", params={"why": "<script>"}).text
        assert login.count("<script") == 1 and "script&gt;" not in login  # its own script; the input is not shown
