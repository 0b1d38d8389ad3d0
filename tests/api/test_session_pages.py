"""``GET /v1/sessions`` a page at a time: ``limit``, the ``continue`` token of the ``Link`` header, keyset order.

An in-process app on SQLite and PostgreSQL (no cluster: listing reads only the store); sessions are rows written
straight into its store, several created in the same microsecond so the order's tie-break (the id) is exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.settings import Settings
from labctl.store.models import SandboxSession
from tests.support.stores import clean_store
from tests.support.wait import dead_kubeconfig

ADMIN = {"Authorization": "Bearer pages-admin-token-0123456789abcdef0123"}
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    store = clean_store(request, tmp_path / "labctl.db")
    url = str(store.engine.url.render_as_string(hide_password=False))
    store.engine.dispose()
    settings = Settings(data_dir=tmp_path, kubeconfig=dead_kubeconfig(tmp_path), database_url=url,
                        admin_token=ADMIN["Authorization"].removeprefix("Bearer "))
    app = create_app(settings, background=False)
    with app.state.parts.runtime.store.session() as db:
        for i in range(25):  # three rows per instant: the id breaks the tie
            db.add(SandboxSession(id=f"s-{i:03d}", lab_id="idle-hunter" if i % 2 else "tag-for-showback",
                                  learner_id="ada" if i < 10 else "bob", provider="kubernetes", state="ready",
                                  budget_usd=5, created_at=T0 + timedelta(seconds=i // 3)))
    with TestClient(app) as c:
        yield c


def pages(c: TestClient, url: str, headers: dict[str, str]) -> list[list[dict[str, Any]]]:
    out = []
    next_url: str | None = url
    while next_url is not None:
        r = c.get(next_url, headers=headers)
        assert r.status_code == 200, r.text
        out.append(r.json())
        next_url = r.links.get("next", {}).get("url")
        assert len(out) < 50, "the pages never end"
    return out


def newest_first(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda i: (int(i[2:]) // 3, i), reverse=True)


def test_pages_give_every_session_once_newest_first(client: TestClient) -> None:
    got = pages(client, "/v1/sessions?limit=4", ADMIN)
    assert [len(p) for p in got] == [4, 4, 4, 4, 4, 4, 1]
    ids = [s["id"] for p in got for s in p]
    assert ids == newest_first([f"s-{i:03d}" for i in range(25)])
    (whole,) = pages(client, "/v1/sessions?limit=25", ADMIN)
    assert [s["id"] for s in whole] == ids


def test_filters_hold_on_every_page(client: TestClient) -> None:
    got = [s for p in pages(client, "/v1/sessions?limit=2&lab_id=idle-hunter&learner_id=bob", ADMIN) for s in p]
    assert [s["id"] for s in got] == newest_first([f"s-{i:03d}" for i in range(10, 25) if i % 2])
    assert {(s["lab_id"], s["learner_id"]) for s in got} == {("idle-hunter", "bob")}


def test_rows_created_between_pages_shift_nothing(client: TestClient) -> None:
    first = client.get("/v1/sessions?limit=5", headers=ADMIN)
    with client.app.state.parts.runtime.store.session() as db:  # type: ignore[attr-defined]
        db.add(SandboxSession(id="s-new", lab_id="idle-hunter", learner_id="cy", provider="kubernetes",
                              state="ready", budget_usd=5, created_at=T0 + timedelta(hours=1)))
    second = client.get(first.links["next"]["url"], headers=ADMIN)
    ids = [s["id"] for s in first.json() + second.json()]
    assert ids == newest_first([f"s-{i:03d}" for i in range(25)])[:10]


def test_a_learner_pages_through_its_own_sessions_only(client: TestClient) -> None:
    made = client.post("/v1/tokens", headers=ADMIN, json={"name": "ada", "role": "learner", "learner_id": "ada"})
    assert made.status_code == 201, made.text
    ada = {"Authorization": f"Bearer {made.json()['token']}"}
    got = [s["id"] for p in pages(client, "/v1/sessions?limit=3&learner_id=bob", ada) for s in p]
    assert got == newest_first([f"s-{i:03d}" for i in range(10)])


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=many", "continue=not-a-token",
                                   "continue=" + "QQ" * 300, "continue=MjAyNi0xMi0wMVQwOTowMDowMA"])
def test_bad_paging_input_is_a_problem_document(client: TestClient, query: str) -> None:
    r = client.get(f"/v1/sessions?{query}", headers=ADMIN)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"]
