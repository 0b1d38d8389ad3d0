"""A budget approval approves what the instructor saw: it names the request (id or amount), a request the learner
changed since is refused (409), and no approval adds more than the lab's maximum. Through a real `labctl serve`, with
the learner's own token."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from labctl.localcluster.cluster import LocalCluster
from tests.adversarial.budget_world import labs_with
from tests.support.server import Server

LAB = "tag-for-showback"  # $2 budget


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("approvals")
    labs = labs_with(tmp, LAB, {"budget": {"max_approval_usd": 1.5}})
    srv = Server(data_dir=tmp / "data", kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_LABS_DIR": str(labs)})
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    srv.stop_all_sessions()
    srv.stop()


def _learner(server: Server, learner: str) -> tuple[dict[str, object], str]:
    with server.client() as c:
        session = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner}).json()
        token = c.post("/v1/tokens", json={"name": learner, "role": "learner", "learner_id": learner}).json()["token"]
    return session, token


def test_an_approval_of_a_request_that_changed_since_is_refused(server: Server) -> None:
    session, token = _learner(server, "haggler")
    sid = session["id"]
    with server.client(token) as learner, server.client() as instructor:
        first = learner.post(f"/v1/sessions/{sid}/budget-requests", json={"usd": 0.5, "reason": "one more run"})
        assert first.status_code == 200, first.text
        seen = instructor.get(f"/v1/sessions/{sid}").json()
        assert (seen["budget_request_id"], seen["budget_request_usd"]) == (first.json()["budget_request_id"], 0.5)
        # The learner swaps the request for a bigger one before the instructor clicks.
        swapped = learner.post(f"/v1/sessions/{sid}/budget-requests", json={"usd": 1.4, "reason": "one more run"})
        new_id = swapped.json()["budget_request_id"]
        assert new_id != seen["budget_request_id"]

        by_id = instructor.post(f"/v1/sessions/{sid}/budget-requests/approve",
                                json={"request_id": seen["budget_request_id"]})
        assert by_id.status_code == 409
        assert new_id in by_id.json()["detail"] and "changed since" in by_id.json()["detail"]
        by_amount = instructor.post(f"/v1/sessions/{sid}/budget-requests/approve", json={"usd": 0.5})
        assert by_amount.status_code == 409
        unnamed = instructor.post(f"/v1/sessions/{sid}/budget-requests/approve")
        assert unnamed.status_code == 400
        assert "name the request" in unnamed.json()["detail"]
        assert learner.post(f"/v1/sessions/{sid}/budget-requests/approve",
                            json={"request_id": new_id}).status_code == 403
        assert instructor.get(f"/v1/sessions/{sid}").json()["budget_usd"] == 2

        approved = instructor.post(f"/v1/sessions/{sid}/budget-requests/approve", json={"request_id": new_id})
        assert approved.status_code == 200, approved.text
        assert approved.json()["budget_usd"] == pytest.approx(3.4)
        assert approved.json()["budget_request_id"] is None
        again = instructor.post(f"/v1/sessions/{sid}/budget-requests/approve", json={"request_id": new_id})
        assert again.status_code == 409


def test_no_request_asks_for_more_than_the_lab_allows(server: Server) -> None:
    session, token = _learner(server, "greedy")
    with server.client(token) as learner:
        r = learner.post(f"/v1/sessions/{session['id']}/budget-requests", json={"usd": 5, "reason": "everything"})
        assert r.status_code == 422
        assert "at most $1.50" in r.json()["detail"]
        assert learner.get(f"/v1/sessions/{session['id']}").json()["budget_request_usd"] is None


def test_instructors_approving_at_once_add_the_money_once(server: Server) -> None:
    session, token = _learner(server, "lucky-twice")
    sid = session["id"]
    with server.client(token) as learner:
        request_id = learner.post(f"/v1/sessions/{sid}/budget-requests",
                                  json={"usd": 1, "reason": "more"}).json()["budget_request_id"]

    def approve(_: int) -> httpx.Response:
        with server.client() as c:
            return c.post(f"/v1/sessions/{sid}/budget-requests/approve", json={"request_id": request_id})

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(approve, range(6)))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 5, [r.text for r in answers]
    with server.client() as c:
        assert c.get(f"/v1/sessions/{sid}").json()["budget_usd"] == 3
        kinds = [e["kind"] for e in c.get(f"/v1/sessions/{sid}/events").json()]
    assert kinds.count("budget_approved") == 1
