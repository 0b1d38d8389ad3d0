"""Health, readiness, metrics and problem details of the running app, against the real cluster and store.

Anonymous callers see whether each check passed; an instructor token also sees each check's detail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import Settings
from tests.support.wait import dead_kubeconfig

ADMIN = "health-tests-admin-token-0123456789abcdef"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def app_client(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig, admin_token=ADMIN)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as c:
        yield c


def test_healthz(app_client: TestClient) -> None:
    assert app_client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_with_store_and_real_cluster(app_client: TestClient) -> None:
    r = app_client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"store": {"ok": True}, "cluster": {"ok": True}}}
    body = app_client.get("/readyz", headers=AS_ADMIN).json()
    assert body["checks"]["cluster"]["detail"] == "v1.36.3"
    head = app_client.app.state.parts.runtime.store.head()  # type: ignore[attr-defined]
    assert body["checks"]["store"]["detail"] == f"sqlite at revision {head}"


def test_readyz_names_an_unreachable_cluster_without_its_address(tmp_path: Path) -> None:
    dead = dead_kubeconfig(tmp_path)
    settings = Settings(data_dir=tmp_path, kubeconfig=dead, admin_token=ADMIN)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
        detailed = c.get("/readyz", headers=AS_ADMIN).json()
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 503
    assert body["checks"] == {"store": {"ok": True}, "cluster": {"ok": False}}
    assert body["detail"] == "labctl is not ready: cluster not ok (the service log says why)"
    assert "127.0.0.1" not in r.text
    assert "127.0.0.1:1" in detailed["checks"]["cluster"]["detail"]  # an instructor sees why


def test_metrics_count_requests(app_client: TestClient) -> None:
    app_client.get("/healthz")
    text = app_client.get("/metrics").text
    assert 'labctl_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "labctl_build_info" in text


def test_unknown_route_is_a_problem_document(app_client: TestClient) -> None:
    assert app_client.get("/v1/nope").status_code == 401  # anonymous callers cannot probe for routes
    r = app_client.get("/v1/nope", headers=AS_ADMIN)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "No such resource: GET /v1/nope. See /docs for the API."


def test_openapi_docs_are_served(app_client: TestClient) -> None:
    assert app_client.get("/openapi.json").json()["info"]["title"] == "labctl"
    assert app_client.get("/docs").status_code == 200
