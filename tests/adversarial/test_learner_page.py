"""The learner page's link and cookie, played by the learner as an adversary over plain HTTP against a real
`labctl serve` and the local control plane (the browser's own view is in ``tests/browser``).

Who gets a ``learner_url``; bearer tokens open no page; a link is no cookie and a cookie no link; an expired cookie,
one for another learner, another session's anti-forgery token are refused; the page's actions are the use cases'
(an instructor's suspension is not lifted from the page, actions are recorded as the learner's); reading the page is
not activity for the idle timer; the edge's JSON rules hold on page routes; no input yields a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from labctl.localcluster.cluster import LocalCluster
from labctl.service import links
from labctl.store.db import open_store
from labctl.store.models import SandboxSession
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.tokens import bearer, mint

pytestmark = pytest.mark.cluster

KEY = links.derive_key(ADMIN_TOKEN.encode())  # the server derives its link key from its admin token
LAB = "tag-for-showback"


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("learner-page"), kubeconfig=local_cluster.kubeconfig).start()
    yield srv
    srv.stop_all_sessions()
    srv.stop()


@pytest.fixture(scope="module")
def site(server: Server) -> str:
    token: str = mint(server, "platform", name="course-site")["token"]
    return token


@pytest.fixture(scope="module")
def sessions(server: Server, site: str) -> dict[str, dict[str, Any]]:
    """Ada's and Bob's sessions of the same lab, started by the course site."""
    made = {}
    with server.client(site) as c:
        for learner in ("ada", "bob"):
            r = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner})
            assert r.status_code == 201, r.text
            made[learner] = r.json()
    return made


class Page:
    """A learner's page opened from its link: the cookie jar and the page's anti-forgery token."""

    def __init__(self, server: Server, url: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=120)
        opened = self.http.get(urlsplit(url).path + "?" + urlsplit(url).query)
        assert opened.status_code == 303, opened.text
        self.session = opened.headers["location"].rsplit("/", 1)[1]
        page = self.http.get(opened.headers["location"])
        assert page.status_code == 200, page.text
        found = re.search(r'<meta name="labctl-csrf" content="([^"]+)">', page.text)
        assert found
        self.csrf = found.group(1)
        self.cookie = self.http.cookies["labctl_page"]

    def act(self, action: str, body: dict[str, Any] | None = None, *, csrf: str | None = None,
            session: str | None = None) -> httpx.Response:
        return self.http.post(f"/learn/{session or self.session}/{action}", json=body or {},
                              headers={"x-labctl-csrf": self.csrf if csrf is None else csrf})


def link_of(server: Server, token: str, session_id: str) -> str:
    with server.client(token) as c:
        url: str = c.get(f"/v1/sessions/{session_id}").json()["learner_url"]
    return url


def test_learner_urls_go_only_to_those_who_may_open_the_page(server: Server, site: str,
                                                             sessions: dict[str, dict[str, Any]]) -> None:
    ada = sessions["ada"]["id"]
    learner = mint(server, "learner", name="ada", learner_id="ada")["token"]
    other_site = mint(server, "platform", name="other-site")["token"]
    exam = mint(server, "exam", name="exam")["token"]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        def url(token: str) -> Any:
            return http.get(f"/v1/sessions/{ada}", headers=bearer(token)).json().get("learner_url", "absent")

        for token in (learner, site, ADMIN_TOKEN):
            assert str(url(token)).startswith(f"{server.url}/learn/open?link="), token
        assert url(other_site) is None
        assert url(exam) == "absent"  # the exam platform's brief view has no such field
        listed = http.get("/v1/sessions", headers=bearer(other_site)).json()
        assert {s["learner_url"] for s in listed} == {None}
        assert sessions["ada"]["learner_url"].startswith(f"{server.url}/learn/open?link=")  # the start's answer


def test_bearer_tokens_open_no_page(server: Server, site: str, sessions: dict[str, dict[str, Any]]) -> None:
    ada = sessions["ada"]["id"]
    learner = mint(server, "learner", name="ada-2", learner_id="ada")["token"]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for token in (learner, site, ADMIN_TOKEN):
            page = http.get(f"/learn/{ada}", headers=bearer(token))
            assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
            assert http.get(f"/learn/{ada}/state", headers=bearer(token)).status_code == 401
            assert http.post(f"/learn/{ada}/suspend", headers=bearer(token), json={}).status_code == 401
    with server.client() as admin:
        assert admin.get(f"/v1/sessions/{ada}").json()["state"] == "ready"


def test_a_link_is_no_cookie_and_a_cookie_no_link_and_old_or_foreign_ones_are_refused(
        server: Server, site: str, sessions: dict[str, dict[str, Any]]) -> None:
    ada = sessions["ada"]["id"]
    link = urlsplit(link_of(server, site, ada)).query.removeprefix("link=")
    soon, past = datetime.now(UTC) + timedelta(minutes=5), datetime.now(UTC) - timedelta(seconds=1)
    cases = {
        "the link as a cookie": (link, 403),
        "an expired cookie": (links.sign(links.Grant(ada, "ada", past), key=KEY, purpose=links.Purpose.PAGE), 410),
        "a cookie for bob over ada's session": (
            links.sign(links.Grant(ada, "bob", soon), key=KEY, purpose=links.Purpose.PAGE), 404),
        "a cookie signed with another key": (
            links.sign(links.Grant(ada, "ada", soon), key=links.derive_key(b"guess"), purpose=links.Purpose.PAGE), 403),
        "garbage": ("x" * 5000, 403),
    }
    for name, (cookie, status) in cases.items():
        with httpx.Client(base_url=server.url, timeout=60, cookies={"labctl_page": cookie}) as http:
            page = http.get(f"/learn/{ada}")
            assert page.status_code == status, (name, page.text)
            assert page.headers["content-type"].startswith("text/html") and ada not in page.text, name
            state = http.get(f"/learn/{ada}/state")
            assert state.status_code == status, (name, state.text)
            assert state.headers["content-type"] == "application/problem+json", name
    page = Page(server, link_of(server, site, ada))
    with httpx.Client(base_url=server.url, timeout=60) as http:  # the cookie offered as a link
        refused = http.get("/learn/open", params={"link": page.cookie})
        assert refused.status_code == 403 and "labctl_page" not in refused.headers.get("set-cookie", "")
        too_long = http.get("/learn/open", params={"link": "a" * 60_000})
        assert too_long.status_code in (403, 414), too_long.status_code


def test_another_sessions_anti_forgery_token_or_cookie_acts_on_nothing(
        server: Server, site: str, sessions: dict[str, dict[str, Any]]) -> None:
    ada, bob = Page(server, link_of(server, site, sessions["ada"]["id"])), \
        Page(server, link_of(server, site, sessions["bob"]["id"]))
    refused = ada.act("suspend", csrf=bob.csrf)
    assert refused.status_code == 403 and "another page" in refused.json()["detail"]
    assert ada.act("suspend", csrf="").status_code == 403
    assert ada.act("suspend", csrf=ada.cookie).status_code == 403  # the cookie is no anti-forgery token
    # Ada's page on Bob's session: her cookie is not even sent there (its path is her page's), and sent by hand it is
    # refused without a word about Bob's session.
    assert ada.act("suspend", session=bob.session).status_code == 401
    with httpx.Client(base_url=server.url, timeout=60) as http:
        forced = http.post(f"/learn/{bob.session}/suspend", json={},
                           headers={"cookie": f"labctl_page={ada.cookie}", "x-labctl-csrf": ada.csrf})
        assert forced.status_code == 404 and "bob" not in forced.json()["detail"]
    with server.client() as admin:
        for s in sessions.values():
            assert admin.get(f"/v1/sessions/{s['id']}").json()["state"] == "ready"


def test_the_pages_actions_are_the_learners_and_keep_the_use_cases_rules(
        server: Server, site: str, sessions: dict[str, dict[str, Any]]) -> None:
    bob = Page(server, link_of(server, site, sessions["bob"]["id"]))
    extended = bob.act("extend", {"seconds": 600})
    assert extended.status_code == 200, extended.text
    assert bob.act("extend", {"seconds": -5}).status_code == 422
    assert bob.act("extend", {"seconds": 10**30}).status_code == 422
    assert bob.act("budget-requests", {"usd": 1, "reason": "x\u0000"}).status_code == 400  # the edge's JSON rules
    deep: Any = {}
    for _ in range(40):
        deep = {"d": deep}
    assert bob.act("budget-requests", deep).status_code == 400
    asked = bob.act("budget-requests", {"usd": 1.5, "reason": "one more try"})
    assert asked.status_code == 200, asked.text
    with server.client() as admin:
        sid = bob.session
        suspended = admin.post(f"/v1/sessions/{sid}/suspend")
        assert suspended.status_code == 200, suspended.text
        refused = bob.act("resume")
        assert refused.status_code == 409 and "only an instructor" in refused.json()["detail"]
        assert admin.get(f"/v1/sessions/{sid}").json()["state"] == "suspended"
        events = admin.get(f"/v1/sessions/{sid}/events").json()
        actors = {e["kind"]: e["actor"] for e in events}
        assert actors["extended"] == "learner page (bob)" and actors["budget_requested"] == "learner page (bob)"
        assert admin.post(f"/v1/sessions/{sid}/resume").status_code == 200


def test_reading_the_page_is_not_learner_activity(server: Server, site: str,
                                                  sessions: dict[str, dict[str, Any]]) -> None:
    ada = Page(server, link_of(server, site, sessions["ada"]["id"]))
    store = open_store(f"sqlite:///{server.data_dir / 'labctl.db'}")
    try:
        def last_activity() -> datetime | None:
            with store.session() as db:
                row = db.get(SandboxSession, ada.session)
                assert row is not None
                return row.last_activity_at

        with store.session() as db:  # the learner's last activity an hour ago (activity is recorded at most every 30 s)
            row = db.get(SandboxSession, ada.session)
            assert row is not None
            row.last_activity_at = datetime.now(UTC) - timedelta(hours=1)
        before = last_activity()
        for _ in range(3):
            assert ada.http.get(f"/learn/{ada.session}/state").status_code == 200
        assert ada.http.get(f"/learn/{ada.session}").status_code == 200
        assert last_activity() == before  # the page's polling keeps no idle sandbox awake
        assert ada.act("extend", {"seconds": 60}).status_code == 200
        after = last_activity()
        # an action is activity
        assert after is not None and before is not None and after > before + timedelta(minutes=59)
    finally:
        store.engine.dispose()
