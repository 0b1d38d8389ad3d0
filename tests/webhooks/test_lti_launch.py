"""LTI 1.3 launches from the local LMS stand-in (``tests/support/lms.py``) and grades passed back to its line item.

The test is the browser: it follows labctl's login redirect to the stand-in's authorisation endpoint, takes the
``id_token`` the stand-in signs for the request's nonce, and posts it to labctl's launch URL with the state cookie
labctl set. Refusals (a forged, expired or replayed launch, a strange audience, deployment or message) are tried
without a cluster: they must end before a session is started, on a readable page. One launch starts a real sandbox
on the local control plane, a second resumes it, and its graded submission reaches the stand-in's grade book.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.outbox import events as outbox
from labctl.service.launches import ScorePassback
from labctl.settings import Settings
from labctl.store.lti_models import LtiLaunch, LtiScore
from labctl.store.models import SandboxSession
from tests.support.clock import FakeClock
from tests.support.lms import CLIENT_ID, Lms, expired, running
from tests.support.wait import dead_kubeconfig

TOKEN = "lti-admin-token-0123456789abcdef0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LAUNCH_URL = "http://testserver/lti/launch"


@pytest.fixture
def lms() -> Iterator[Lms]:
    with running(Lms()) as stand_in:
        stand_in.redirect_uris.add(LAUNCH_URL)
        yield stand_in


def tool(tmp_path: Path, lms: Lms, kubeconfig: Path) -> TestClient:
    platforms = tmp_path / "lti-platforms.yaml"
    platforms.write_text(yaml.safe_dump({"platforms": [lms.platform_entry()]}))
    app = create_app(Settings(data_dir=tmp_path, kubeconfig=kubeconfig, lti_platforms_file=platforms,
                              admin_token=TOKEN), background=False)
    client = TestClient(app)
    keys = client.get("/lti/jwks.json").json()["keys"]
    lms.tool_public_key = rsa_public(keys[0])
    lms.tool_kid = keys[0]["kid"]
    return client


def rsa_public(jwk: dict[str, Any]) -> Any:
    import jwt
    return jwt.algorithms.RSAAlgorithm.from_jwk(jwk)


@pytest.fixture
def refusing(tmp_path: Path, lms: Lms) -> Iterator[TestClient]:
    """labctl with the stand-in registered and a cluster that is down: no launch may get as far as a start."""
    with tool(tmp_path, lms, dead_kubeconfig(tmp_path)) as client:
        yield client


def login(c: TestClient, lms: Lms, *, sub: str = "ada-42", **extra: str) -> dict[str, str]:
    """labctl's login redirect, followed to the stand-in: its query (state, nonce, ...) and the stand-in's answer."""
    r = c.get("/lti/login", params={"iss": lms.issuer, "login_hint": sub, "target_link_uri": LAUNCH_URL,
                                    "client_id": CLIENT_ID, **extra}, follow_redirects=False)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(f"{lms.base}/auth?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    answer = httpx.get(location, timeout=10)
    assert answer.status_code == 200, answer.text
    return query | {"id_token": answer.json()["id_token"]}


def launch(c: TestClient, id_token: str, state: str) -> httpx.Response:
    return c.post("/lti/launch", data={"id_token": id_token, "state": state}, follow_redirects=False)


def test_login_redirects_to_the_platform_with_a_fresh_state_and_nonce(refusing: TestClient, lms: Lms) -> None:
    first, second = login(refusing, lms), login(refusing, lms)
    assert first["redirect_uri"] == LAUNCH_URL and first["client_id"] == CLIENT_ID
    assert first["response_mode"] == "form_post" and first["scope"] == "openid" and first["prompt"] == "none"
    assert first["state"] != second["state"] and first["nonce"] != second["nonce"]
    assert refusing.cookies.get("labctl_lti_state") == second["state"]  # the browser holds its latest flow
    posted = refusing.post("/lti/login", data={"iss": lms.issuer, "login_hint": "x", "target_link_uri": LAUNCH_URL},
                           follow_redirects=False)
    assert posted.status_code == 302 and posted.headers["location"].startswith(f"{lms.base}/auth?")


@pytest.mark.parametrize(("params", "words"), [
    ({"iss": "https://stranger.example/", "login_hint": "x", "target_link_uri": LAUNCH_URL}, "not registered"),
    ({"login_hint": "x", "target_link_uri": LAUNCH_URL}, "did not send iss"),
    ({"iss": "{issuer}", "login_hint": "x", "target_link_uri": "https://evil.example/steal"}, "does not lead"),
    ({"iss": "{issuer}", "login_hint": "x", "target_link_uri": LAUNCH_URL, "lti_deployment_id": "other"},
     "not registered for platform"),
])
def test_a_bad_login_is_a_readable_page(refusing: TestClient, lms: Lms, params: dict[str, str], words: str) -> None:
    params = {k: v.replace("{issuer}", lms.issuer) for k, v in params.items()}
    r = refusing.get("/lti/login", params=params, follow_redirects=False)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert words in r.text and "Traceback" not in r.text


def forged(lms: Lms, flow: dict[str, str], **claims: Any) -> str:
    return lms.id_token(lms.claims(nonce=flow["nonce"], **claims))


@pytest.mark.parametrize(("make", "words"), [
    (lambda lms, flow: flow["id_token"][:-6] + "AAAAAA", "does not verify"),
    (lambda lms, flow: lms.id_token(lms.claims(nonce=flow["nonce"]),
                                    key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
     "does not verify"),
    (lambda lms, flow: forged(lms, flow, aud="someone-else"), "not registered"),
    (lambda lms, flow: forged(lms, flow, aud=[CLIENT_ID, "someone-else"]), "azp"),
    (lambda lms, flow: forged(lms, flow, **expired(datetime.now(UTC))), "expired"),
    (lambda lms, flow: lms.id_token(lms.claims(nonce="not-this-flows")), "nonce"),
    (lambda lms, flow: forged(lms, flow, **{"https://purl.imsglobal.org/spec/lti/claim/deployment_id": "other"}),
     "deployment"),
    (lambda lms, flow: forged(lms, flow, **{"https://purl.imsglobal.org/spec/lti/claim/message_type":
                                            "LtiDeepLinkingRequest"}), "only LtiResourceLinkRequest"),
    (lambda lms, flow: forged(lms, flow, **{"https://purl.imsglobal.org/spec/lti/claim/custom": {}}), "lab_id"),
    (lambda lms, flow: forged(lms, flow, **{"https://purl.imsglobal.org/spec/lti/claim/version": "1.1"}), "1.3.0"),
    (lambda lms, flow: "not-a-jwt", "not a JWT"),
])
def test_a_launch_that_does_not_verify_starts_nothing(refusing: TestClient, lms: Lms, make: Any, words: str) -> None:
    flow = login(refusing, lms)
    r = launch(refusing, make(lms, flow), flow["state"])
    assert r.status_code in (400, 403), r.text
    assert r.headers["content-type"].startswith("text/html")
    assert words in r.text and "Traceback" not in r.text
    assert refusing.get("/v1/sessions", headers=ADMIN).json() == []


def test_a_launch_is_used_once_and_only_in_its_browser(refusing: TestClient, lms: Lms) -> None:
    flow = login(refusing, lms)
    stranger = TestClient(refusing.app)  # another browser: no state cookie
    r = stranger.post("/lti/launch", data={"id_token": flow["id_token"], "state": flow["state"]},
                      follow_redirects=False)
    assert r.status_code == 403 and "did not start in this browser" in r.text
    first = launch(refusing, flow["id_token"], flow["state"])
    assert first.status_code == 503 and "could not be started" in first.text  # verified; the cluster is down
    refusing.cookies.set("labctl_lti_state", flow["state"], path="/lti")  # the replay brings its cookie back
    again = launch(refusing, flow["id_token"], flow["state"])
    assert again.status_code == 403 and "used already" in again.text


def test_jwks_publishes_the_tool_key(refusing: TestClient) -> None:
    (key,) = refusing.get("/lti/jwks.json").json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and len(key["kid"]) == 43
    assert "d" not in key and "p" not in key  # the public half only


def test_scores_owed_are_sent_once_and_survive_an_outage(refusing: TestClient, lms: Lms) -> None:
    app = refusing.app
    rt = app.state.parts.runtime  # type: ignore[attr-defined]
    clock = FakeClock(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    with rt.store.session() as db:
        for sid in ("s-launched", "s-other"):
            db.add(SandboxSession(id=sid, lab_id="tag-for-showback", learner_id=f"moodle-{sid}",
                                  provider="kubernetes", state="graded", budget_usd=5, created_at=clock()))
        db.flush()
        db.add(LtiLaunch(session_id="s-launched", platform="moodle", sub="ada-42", learner_id="moodle-ada-42",
                         lab_id="tag-for-showback", deployment_id="deploy-1", resource_link_id="link-1",
                         lineitem=lms.lineitem, created_at=clock()))
        checks = [{"id": "tags", "title": "Workloads carry cost tags", "score": 1, "max_score": 1}]
        for sid in ("s-launched", "s-other"):
            outbox.emit(db, type="submission.graded", session_id=sid, now=clock(),
                        data={"session_id": sid, "score": 7.5, "max_score": 10, "checks": checks})
    passback = ScorePassback(store=rt.store, registry=rt.lti_registry, key=rt.lti_key,
                             http=lambda: httpx.Client(timeout=10), clock=clock)
    lms.down = True
    assert passback.run_once() == 0
    with rt.store.session() as db:
        (owed,) = db.scalars(select(LtiScore)).all()  # the session without a launch owes nothing
        assert owed.session_id == "s-launched" and owed.state == "failed" and owed.attempts == 1
        assert "503" in (owed.last_error or "") and owed.next_attempt_at is not None
        retry_at = owed.next_attempt_at
    lms.down = False
    assert passback.run_once() == 0  # not due yet
    clock.now = retry_at + timedelta(seconds=1)
    assert passback.run_once() == 1
    assert passback.run_once() == 0
    (score,) = lms.scores
    assert score["userId"] == "ada-42" and score["scoreGiven"] == 7.5 and score["scoreMaximum"] == 10.0
    assert score["comment"] == "Workloads carry cost tags: 1/1"
    assert lms.score_paths == ["/courses/finops/lineitems/7/scores?type_id=lab"]
    with rt.store.session() as db:
        assert db.scalars(select(LtiScore.state)).all() == ["delivered"]


@pytest.mark.cluster
def test_a_launch_starts_the_session_a_second_resumes_it_and_its_grade_goes_back(
        tmp_path: Path, lms: Lms, local_cluster: LocalCluster) -> None:
    with tool(tmp_path, lms, local_cluster.kubeconfig) as c:
        flow = login(c, lms, sub="ada-42")
        r = launch(c, flow["id_token"], flow["state"])
        assert r.status_code == 303, r.text
        (session,) = c.get("/v1/sessions", headers=ADMIN).json()
        assert session["learner_id"] == "moodle-ada-42" and session["lab_id"] == "tag-for-showback"
        assert session["state"] == "ready"
        page = c.get(r.headers["location"], follow_redirects=True)  # the signed link lands on the learner page
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert str(page.url).endswith(f"/learn/{session['id']}")
        try:
            again = login(c, lms, sub="ada-42")
            assert launch(c, again["id_token"], again["state"]).status_code == 303
            assert [s["id"] for s in c.get("/v1/sessions", headers=ADMIN).json()] == [session["id"]]
            submitted = c.post(f"/v1/sessions/{session['id']}/submissions", headers=ADMIN)
            assert submitted.status_code == 202, submitted.text
            grade = c.get(f"/v1/submissions/{submitted.json()['id']}", headers=ADMIN).json()
            assert grade["state"] == "graded", grade
            rt = c.app.state.parts.runtime  # type: ignore[attr-defined]
            assert rt.score_passback().run_once() == 1
            (score,) = lms.scores
            assert score["userId"] == "ada-42"
            assert score["scoreGiven"] == pytest.approx(grade["score"])
            assert score["scoreMaximum"] == pytest.approx(grade["max_score"])
        finally:
            c.delete(f"/v1/sessions/{session['id']}", headers=ADMIN)
