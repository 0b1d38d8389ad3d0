"""What callers without a token (and learners) can learn: no learner ids from ``/metrics``, no internal addresses
from ``/readyz`` or from the errors a learner sees when the cluster is down. Against real `labctl serve` processes:
one on the live cluster, one whose cluster is down (a kubeconfig pointing at a closed port on loopback).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from labctl import redact
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import Settings
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.tokens import bearer, mint
from tests.support.wait import dead_kubeconfig

LEARNER = "exposed-learner-7"


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("exposure"), kubeconfig=local_cluster.kubeconfig).start()
    with srv.client() as admin:
        r = admin.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": LEARNER})
        assert r.status_code == 201, r.text
    yield srv
    srv.stop_all_sessions()
    srv.stop()


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("exposure-down")
    srv = Server(data_dir=data, kubeconfig=dead_kubeconfig(data)).start(wait_ready=False)
    yield srv
    srv.stop()


def test_metrics_show_no_learner_or_session_without_an_instructor_token(server: Server) -> None:
    learner = mint(server, "learner", learner_id=LEARNER)["token"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.get("/v1/sessions", headers=bearer(learner))  # a route with the learner's session behind it
        anonymous = http.get("/metrics").text
        as_learner = http.get("/metrics", headers=bearer(learner)).text
        as_instructor = http.get("/metrics", headers=bearer(ADMIN_TOKEN)).text
    for text in (anonymous, as_learner):
        assert "labctl_http_requests_total" in text and "labctl_build_info" in text
        assert "labctl_session_" not in text and LEARNER not in text and "idle-hunter-" not in text
    assert f'learner="{LEARNER}"' in as_instructor
    assert "labctl_session_accrued_usd{" in as_instructor


def test_a_setting_opens_the_session_gauges_to_a_scraper_without_a_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kubeconfig=dead_kubeconfig(tmp_path), metrics_public_sessions=True)
    with TestClient(create_app(settings, background=False)) as c:
        assert "# HELP labctl_session_accrued_usd" in c.get("/metrics").text
    closed = Settings(data_dir=tmp_path, kubeconfig=dead_kubeconfig(tmp_path))
    with TestClient(create_app(closed, background=False)) as c:
        assert "labctl_session_accrued_usd" not in c.get("/metrics").text


def test_readiness_says_not_ok_without_the_apiserver_address(down: Server) -> None:
    with httpx.Client(base_url=down.url, timeout=30) as http:
        anonymous = http.get("/readyz")
        detailed = http.get("/readyz", headers=bearer(ADMIN_TOKEN))
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"] == {"store": {"ok": True}, "cluster": {"ok": False}}
    assert "127.0.0.1" not in anonymous.text and ":1/" not in anonymous.text
    assert "127.0.0.1:1" in detailed.json()["checks"]["cluster"]["detail"]  # the instructor can still find out why
    log = (down.data_dir / "serve.log").read_text()
    assert log.count("readiness check cluster failing") == 1  # logged once, however often it is probed


def test_a_learner_sees_that_the_cluster_is_down_but_not_where_it_is(down: Server) -> None:
    learner = mint(down, "learner", learner_id="ada")["token"]
    with httpx.Client(base_url=down.url, headers=bearer(learner), timeout=60) as http:
        r = http.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "ada"})
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert "backend is unreachable, so no sandbox can be made now" in detail
    assert "127.0.0.1" not in detail and "https://" not in detail and ":1/" not in detail


@pytest.mark.parametrize("message", [
    "HTTPSConnectionPool(host='10.0.0.12', port=6443): Max retries exceeded with url: /api/v1/namespaces/x",
    "Get \"https://10.0.0.12:6443/api/v1/namespaces/x\": dial tcp 10.0.0.12:6443: connect: connection refused",
    "cannot reach https://apiserver.internal.corp:6443 (timed out)",
    "dial tcp [fd00::12]:6443: i/o timeout",
])
def test_backend_messages_lose_their_addresses(message: str) -> None:
    cleaned = redact.addresses(message)
    for secret in ("10.0.0.12", "6443", "apiserver.internal.corp", "fd00::12"):
        assert secret not in cleaned
    assert redact.HIDDEN in cleaned
