"""Tokens end: a leaked token stops working at its expiry or when an instructor revokes it, against a real server.

An expired token is made the way time would make it: a token created (in the service's own store) long enough ago,
rather than by waiting. Last use is recorded at most once a minute, so a busy token costs no write per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from labctl.localcluster.cluster import LocalCluster
from labctl.service import auth
from labctl.store.db import Store, open_store
from labctl.store.models import ApiToken
from tests.support.server import Server
from tests.support.tokens import bearer, mint


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("tokens"), kubeconfig=local_cluster.kubeconfig).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def store(server: Server) -> Iterator[Store]:
    """The running service's own store (the SQLite file in its data directory)."""
    s = open_store(f"sqlite:///{server.data_dir / 'labctl.db'}")
    yield s
    s.engine.dispose()


def test_learner_tokens_are_short_lived_and_nobody_gets_more_than_the_setting(server: Server) -> None:
    learner = mint(server, "learner", learner_id="kim")
    lifetime = datetime.fromisoformat(learner["expires_at"]) - datetime.fromisoformat(learner["created_at"])
    assert lifetime == timedelta(hours=12)
    site = mint(server, "platform")
    assert datetime.fromisoformat(site["expires_at"]) - datetime.fromisoformat(site["created_at"]) == \
        timedelta(days=90)
    short = mint(server, "learner", learner_id="kim", ttl_s=600)
    assert datetime.fromisoformat(short["expires_at"]) - datetime.fromisoformat(short["created_at"]) == \
        timedelta(minutes=10)
    with server.client() as admin:
        longer = admin.post("/v1/tokens", json={"name": "forever", "role": "learner", "learner_id": "kim",
                                                "ttl_s": 13 * 3600})
    assert longer.status_code == 422
    assert "longer than learner tokens may live (43200 s" in longer.json()["detail"]


def test_an_expired_token_is_refused_with_a_401_that_says_so(server: Server, store: Store) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=13)
    _, token = auth.create_token(store, name="old-laptop", role="learner", learner_id="kim", now=long_ago,
                                 ttl=timedelta(hours=12))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.get("/v1/sessions", headers=bearer(token))
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
        assert "this token (old-laptop) expired at" in r.json()["detail"]
        # Its body is never looked at: a start with it is the same 401, not a 422 or a session.
        started = http.post("/v1/sessions", headers=bearer(token), json={"lab_id": "idle-hunter", "learner_id": "kim"})
        assert started.status_code == 401


def test_a_revoked_token_stops_at_once_and_only_instructors_revoke(server: Server) -> None:
    victim = mint(server, "platform", name="leaked-site")
    learner = mint(server, "learner", learner_id="kim")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v1/sessions", headers=bearer(victim["token"])).status_code == 200
        for token in (learner["token"], victim["token"]):  # nobody but an instructor lists or revokes tokens
            assert http.get("/v1/tokens", headers=bearer(token)).status_code == 403
            assert http.delete(f"/v1/tokens/{victim['id']}", headers=bearer(token)).status_code == 403
        with server.client() as admin:
            revoked = admin.delete(f"/v1/tokens/{victim['id']}")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"]
            again = admin.delete(f"/v1/tokens/{victim['id']}")  # idempotent: the first time stays
            assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
            listed = {t["id"]: t for t in admin.get("/v1/tokens").json()}
        r = http.get("/v1/sessions", headers=bearer(victim["token"]))
    assert r.status_code == 401 and "this token (leaked-site) was revoked at" in r.json()["detail"]
    assert listed[victim["id"]]["revoked_at"] == revoked.json()["revoked_at"]
    assert all("token" not in t and "sha256" not in t for t in listed.values())


def test_last_use_is_recorded_at_most_once_a_minute(server: Server, store: Store) -> None:
    made = mint(server, "exam", name="busy-exam")
    with httpx.Client(base_url=server.url, headers=bearer(made["token"]), timeout=30) as http, \
            server.client() as admin:
        def last_used() -> str | None:
            row = next(t for t in admin.get("/v1/tokens").json() if t["id"] == made["id"])
            value: str | None = row["last_used_at"]
            return value

        assert last_used() is None
        http.get("/v1/sessions")
        first = last_used()
        assert first is not None
        for _ in range(5):
            http.get("/v1/sessions")
        assert last_used() == first  # within the minute: no new write
        two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
        with store.session() as db:
            db.execute(update(ApiToken).where(ApiToken.id == made["id"]).values(last_used_at=two_minutes_ago))
        http.get("/v1/sessions")
        assert datetime.fromisoformat(str(last_used())) > two_minutes_ago + timedelta(seconds=60)


def test_an_unknown_token_and_a_malformed_header_are_401s_that_say_what_to_do(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        unknown = http.get("/v1/labs", headers=bearer("lct_made-up"))
        basic = http.get("/v1/labs", headers={"Authorization": "Basic dXNlcjpwdw=="})
        missing = http.get("/v1/labs")
    assert "unknown token" in unknown.json()["detail"]
    assert "must be 'Bearer <token>'" in basic.json()["detail"]
    assert "missing Authorization header" in missing.json()["detail"]
    assert {unknown.status_code, basic.status_code, missing.status_code} == {401}
