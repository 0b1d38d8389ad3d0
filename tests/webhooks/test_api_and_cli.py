"""``/v1/webhooks`` (instructors only) through the real router and store; ``labctl webhooks`` against it over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from labctl.cli.main import app as cli
from labctl.outbox.dispatcher import Dispatcher
from labctl.service.auth import create_token
from labctl.settings import Settings
from labctl.store.db import Store
from tests.support.postgres import free_port
from tests.support.wait import dead_kubeconfig
from tests.webhooks.apps import ADMIN_TOKEN, webhook_app
from tests.webhooks.conftest import LOOPBACK, Clock
from tests.webhooks.helpers import drain, emit_one
from tests.webhooks.receiver import Receiver

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(webhook_app(store), headers=AUTH) as c:
        yield c


def test_endpoint_lifecycle(client: TestClient, store: Store, clock: Clock, receiver: Receiver) -> None:
    r = client.post("/v1/webhooks/endpoints", json={"url": receiver.url, "events": ["session.ready"],
                                                     "description": "exam"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["events"] == ["session.ready"]
    listed = client.get("/v1/webhooks/endpoints").json()
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert client.get(f"/v1/webhooks/endpoints/{created['id']}").json()["url"] == receiver.url

    rotated = client.post(f"/v1/webhooks/endpoints/{created['id']}/rotate").json()
    assert rotated["secret"] != created["secret"]
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert 23.9 * 3600 < (expires - datetime.now(UTC)).total_seconds() <= 24 * 3600

    disabled = client.post(f"/v1/webhooks/endpoints/{created['id']}/disable").json()
    assert disabled["disabled_at"] and disabled["disabled_reason"] == "disabled by admin"
    assert client.post(f"/v1/webhooks/endpoints/{created['id']}/enable").json()["disabled_at"] is None

    receiver.secrets.append(rotated["secret"])
    msg = emit_one(store, clock, "session.ready", "s-1")
    (pending,) = client.get("/v1/webhooks/deliveries", params={"state": "pending"}).json()
    assert (pending["event_id"], pending["event_type"], pending["attempts"]) == (msg, "session.ready", 0)
    with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
        drain(dispatcher)
        (done,) = client.get("/v1/webhooks/deliveries", params={"endpoint_id": created["id"]}).json()
        assert done["state"] == "delivered" and done["last_status"] == 200
        again = client.post(f"/v1/webhooks/deliveries/{done['id']}/redeliver")
        assert again.status_code == 202 and again.json()["state"] == "pending"
        clock.advance(timedelta(seconds=5))  # the API's clock is real time; the dispatcher's started a bit earlier
        drain(dispatcher)
    assert [a.msg_id for a in receiver.arrivals] == [msg, msg]


@pytest.mark.parametrize(("body", "needle"), [
    ({"url": "ftp://exam.example.com/hook"}, "http or https"),
    ({"url": "https:///no-host"}, "no host"),
    ({"url": "exam.example.com/hook"}, "http or https"),
    ({"url": "https://exam.example.com/hook", "events": ["session.exploded"]}, "unknown event type"),
    ({"url": "https://exam.example.com/hook", "events": []}, "at least one"),
])
def test_invalid_endpoints_are_422_problems(client: TestClient, body: dict[str, object], needle: str) -> None:
    r = client.post("/v1/webhooks/endpoints", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert needle in r.json()["detail"]


def test_unknown_ids_are_404_and_other_roles_are_403(client: TestClient, store: Store) -> None:
    for method, path in [("POST", "/v1/webhooks/endpoints/ep_nope/rotate"),
                         ("POST", "/v1/webhooks/endpoints/ep_nope/disable"),
                         ("GET", "/v1/webhooks/endpoints/ep_nope"),
                         ("POST", "/v1/webhooks/deliveries/424242/redeliver")]:
        r = client.request(method, path)
        assert r.status_code == 404 and r.json()["type"].endswith("/not-found"), (path, r.text)
    assert client.get("/v1/webhooks/deliveries", params={"state": "lost"}).status_code == 422
    _, platform = create_token(store, name="course-site", role="platform", learner_id=None, now=datetime.now(UTC),
                               ttl=timedelta(hours=1))
    r = client.get("/v1/webhooks/endpoints", headers={"Authorization": f"Bearer {platform}"})
    assert r.status_code == 403 and "instructor" in r.json()["detail"]
    assert client.get("/v1/webhooks/deliveries", headers={"Authorization": ""}).status_code == 401


@pytest.fixture
def served(store: Store) -> Iterator[str]:
    """The webhook routers behind a real uvicorn on 127.0.0.1, for the CLI."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(webhook_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def test_the_cli_manages_endpoints_and_deliveries(served: str, store: Store, clock: Clock,
                                                  receiver: Receiver) -> None:
    runner = CliRunner()
    env = {"LABCTL_URL": served, "LABCTL_TOKEN": ADMIN_TOKEN, "COLUMNS": "250"}

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["webhooks", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    added = json.loads(run("endpoints", "add", receiver.url, "-e", "session.ready", "-e", "session.terminated",
                           "-d", "exam", "-o", "json"))
    assert added["secret"].startswith("whsec_") and added["events"] == ["session.ready", "session.terminated"]
    table = run("endpoints", "list")
    assert added["id"] in table and "session.ready, session.terminated" in table
    rotated = json.loads(run("endpoints", "rotate", added["id"], "-o", "json"))
    assert rotated["secret"] != added["secret"]
    assert "disabled by admin" in run("endpoints", "disable", added["id"], "-o", "yaml")
    assert "disabled_at: null" in run("endpoints", "enable", added["id"], "-o", "yaml")

    receiver.secrets.append(rotated["secret"])
    emit_one(store, clock, "session.terminated", "s-9")
    with Dispatcher(store, targets=LOOPBACK, clock=clock) as dispatcher:
        drain(dispatcher)
        (row,) = json.loads(run("deliveries", "list", "--state", "delivered", "-o", "json"))
        assert row["event_type"] == "session.terminated"
        assert "session.terminated" in run("deliveries", "list", "--endpoint", added["id"])
        assert json.loads(run("deliveries", "redeliver", str(row["id"]), "-o", "json"))["state"] == "pending"
        clock.advance(timedelta(seconds=5))
        drain(dispatcher)
    assert len(receiver.arrivals) == 2 and len(receiver.unique()) == 1

    missing = runner.invoke(cli, ["webhooks", "endpoints", "rotate", "ep_nope"], env=env)
    assert missing.exit_code == 1 and "no webhook endpoint 'ep_nope'" in missing.stderr
    bad = runner.invoke(cli, ["webhooks", "endpoints", "add", "gopher://x"], env=env)
    assert bad.exit_code == 1 and "http or https" in bad.stderr
    assert httpx.get(f"{served}/v1/webhooks/endpoints").status_code == 401


def test_the_service_delivers_in_the_background(tmp_path: Path, receiver: Receiver) -> None:
    dead = dead_kubeconfig(tmp_path)  # no cluster needed: the webhook path does not touch it
    token = "service-dispatch-admin-token-0123456789"
    app = create_app(Settings(data_dir=tmp_path, kubeconfig=dead, admin_token=token,  # type: ignore[arg-type]
                              webhook_allow=["127.0.0.1"]))  # the receiver is on loopback
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        created = c.post("/v1/webhooks/endpoints", json={"url": receiver.url, "events": "*"}).json()
        receiver.secrets.append(created["secret"])
        msg = emit_one(app.state.parts.runtime.store, Clock(), "session.ready", "s-1")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the receiver has it before the dispatcher records the answer
            (delivery,) = c.get("/v1/webhooks/deliveries").json()
            if delivery["state"] == "delivered":
                break
            time.sleep(0.05)
    assert delivery["state"] == "delivered"
    assert [a.msg_id for a in receiver.accepted] == [msg]
