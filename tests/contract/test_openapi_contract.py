"""The OpenAPI document is the contract: schemathesis generates requests for every operation it lists, valid ones and
invalid ones, and sends each with every role's token (instructor, platform, exam, learner) and with none, to the app
over the real store (SQLite) and the real local control plane.

Every answer must hold: no 5xx; every 4xx a problem document (``application/problem+json`` with type, title, status
and detail; the LTI routes answer a browser with HTML pages instead, as their document says); and the status, the
content type and the body are the ones the document declares for that operation (schemathesis'
``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``). Examples per operation
are bounded and derandomized, so a run is the same run every time. A method a path does not answer is a 405 problem
that names the methods it does (``Allow``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.service import roles
from labctl.settings import Settings
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.cluster

ADMIN = "contract-admin-token-0123456789abcdef0123456789"
EXAM_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
EXAMPLES = 15  # per operation and generation mode; each example is sent five times (four roles and anonymous)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
HTML_REFUSALS = ("/lti/login", "/lti/launch")  # a browser's routes: their refusals are pages, as documented
PROBLEM_FIELDS = {"type": str, "title": str, "status": int, "detail": str}
LEARNER = "contract-learner"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, local_cluster: LocalCluster,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app over a fresh store of each kind (no background loops: nothing but the requests changes it)."""
    data: Path = tmp_path_factory.mktemp("contract")
    url = f"sqlite:///{data / 'labctl.db'}"
    if request.param == "postgresql":
        url = fresh_database(request.getfixturevalue("postgres_url"), prefix="contract")
    config = Settings(data_dir=data, kubeconfig=local_cluster.kubeconfig, admin_token=ADMIN,  # type: ignore[arg-type]
                      exam_webhook_secret=EXAM_SECRET, database_url=url)  # type: ignore[arg-type]
    application = create_app(config, background=False)
    with TestClient(application):  # the lifespan migrates the store
        yield application


def mint(app: FastAPI) -> dict[str, dict[str, str]]:
    """A token per role (and no token at all); minted again when the run revokes one of them."""
    callers = {"instructor": {"Authorization": f"Bearer {ADMIN}"}, "anonymous": {}}
    with TestClient(app) as c:
        for role in ("platform", "exam", "learner"):
            body: dict[str, Any] = {"name": f"contract-{role}", "role": role,
                                    **({"learner_id": LEARNER} if role == "learner" else {})}
            r = c.post("/v1/tokens", json=body, headers=callers["instructor"])
            assert r.status_code == 201, r.text
            callers[role] = {"Authorization": f"Bearer {r.json()['token']}"}
    return callers


def problem_document(label: str, response: Any) -> str | None:
    """Why a 4xx answer is not a problem document, or None when it is one (or an LTI route's documented page)."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if content_type.startswith("text/html") and label.split(" ", 1)[1] in HTML_REFUSALS:
        return None
    if content_type != "application/problem+json":
        return f"content type {content_type!r}, not application/problem+json"
    body = json.loads(response.content)
    wrong = [f for f, kind in PROBLEM_FIELDS.items() if not isinstance(body.get(f), kind) or body.get(f) == ""]
    if wrong or body["status"] != response.status_code:
        return f"fields {wrong} missing or empty, or status {body.get('status')} != {response.status_code}: {body}"
    return None


def _summary(exc: BaseException) -> str:
    """The names of the checks that failed (schemathesis lists them as ``- ST103 Undocumented status code``), or the
    first line of our own assertion: what makes two failures the same one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    checks = [line[2:] for line in lines if line.startswith("- ")]
    return " | ".join(checks) if checks else (lines[0][:200] if lines else type(exc).__name__)


def explore(app: FastAPI, operation: Any, mode: GenerationMode, callers: dict[str, dict[str, str]],
            remint: Callable[[], None], failures: dict[str, str]) -> int:
    """Send ``EXAMPLES`` generated cases of one operation as every caller; record each distinct failure once."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: Any) -> None:
        nonlocal sent
        for who, headers in list(callers.items()):
            response = case.call(headers=headers)
            sent += 1
            if operation.label == "DELETE /v1/tokens/{token_id}" and response.status_code == 200:
                remint()  # the run revoked one of its own tokens
            try:
                case.validate_response(response, checks=CHECKS)
                why = problem_document(operation.label, response)
                assert why is None, why
            except (AssertionError, FailureGroup) as exc:  # a check of ours, or schemathesis' checks
                key = f"{operation.label} -> {response.status_code}: {_summary(exc)}"
                failures.setdefault(key, f"{who}, {mode.value}: {case.as_curl_command()[:300]}")

    try:
        run()
    except Unsatisfiable:
        if mode == GenerationMode.POSITIVE:
            raise  # an operation with nothing to negate has no invalid cases; every one has valid ones
    return sent


def test_every_operation_answers_as_its_document_says_for_every_role(app: FastAPI) -> None:
    callers = mint(app)

    def remint() -> None:
        callers.update(mint(app))

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, str] = {}
    operations, sent = 0, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += explore(app, operation, mode, callers, remint, failures)
    print(f"{operations} operations, {sent} requests")
    assert operations >= 35 and sent > operations * EXAMPLES
    assert not failures, f"{len(failures)} distinct failures:\n" + "\n".join(
        f"{what}\n    as {example}" for what, example in sorted(failures.items()))


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def test_a_method_a_path_does_not_answer_is_a_405_problem_naming_the_methods_it_does(app: FastAPI) -> None:
    paths = {path: {m.upper() for m in ops} for path, ops in app.openapi()["paths"].items()}
    every_route: dict[str, set[str]] = {}  # the documented ones and those kept out of the document (the matrix)
    for key in roles.MATRIX:
        method, path = key.split(" ", 1)
        every_route.setdefault(path, set()).add(method)
    wrong: list[str] = []
    checked = 0
    with TestClient(app) as c:
        for path in paths:
            concrete = path.replace("{", "").replace("}", "")  # a parameter stands for any one segment
            # Methods of every documented path this concrete path also falls under (/v1/sessions/grants is a
            # /v1/sessions/{session_id} too).
            answered = set().union(*(m for p, m in every_route.items() if _template(p).match(concrete)))
            for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - answered):
                checked += 1
                r = c.request(method, concrete, headers={"Authorization": f"Bearer {ADMIN}"})
                allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
                if (r.status_code != 405 or r.headers.get("content-type") != "application/problem+json"
                        or allow - {"HEAD"} != answered or "is not allowed" not in r.json().get("detail", "")):
                    wrong.append(f"{method} {concrete}: {r.status_code} Allow: {sorted(allow)}, answered: "
                                 f"{sorted(answered)}; {r.text[:150]}")
    assert checked > len(paths)
    assert not wrong, "\n".join(wrong)
