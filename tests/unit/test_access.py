"""Pure parts of access control: the matrix and its documentation, request-path rules, edge JSON rules, webhook
target decisions, the exam secret's shape."""

from __future__ import annotations

import base64
import re

import pytest

from labctl import inputs
from labctl.outbox.targets import TargetPolicy
from labctl.service import roles
from labctl.settings import REPO_ROOT, exam_secret_problem


def test_the_security_document_shows_the_matrix() -> None:
    text = (REPO_ROOT / "docs" / "SECURITY.md").read_text()
    documented = dict(re.findall(r"^\| `([A-Z]+ /[^`]*)` \| (.+) \|$", text, flags=re.MULTILINE))
    token_routes = {k: r for k, r in roles.MATRIX.items() if isinstance(r, tuple)}
    page_routes = {k for k, r in roles.MATRIX.items() if r == roles.PAGE}
    dashboard_routes = {k for k, r in roles.MATRIX.items() if r == roles.DASHBOARD}
    assert set(documented) == set(token_routes) | page_routes | dashboard_routes
    for key, rule in token_routes.items():
        assert documented[key] == " | ".join("yes" if role in rule else "-" for role in roles.ROLES), key
    for key in page_routes:  # no bearer token of any role: the learner, through the page's cookie
        assert documented[key] == "- | - | - | page cookie", key
    for key in dashboard_routes:  # no bearer token of any role: an instructor, through the dashboard's cookie
        assert documented[key] == "dashboard cookie | - | - | -", key
    for key, rule in roles.MATRIX.items():
        if not isinstance(rule, tuple):
            assert f"`{key.split(' ', 1)[1]}`" in text or key.split(" ", 1)[1] in text, key


@pytest.mark.parametrize(("method", "path", "rule"), [
    ("GET", "/v1/sessions/lab-1a2b", roles.GRADE_READERS),
    ("GET", "/v1/sessions/lab-1a2b/kubeconfig", roles.SESSION_ACTORS),
    ("HEAD", "/docs", roles.PUBLIC),
    ("POST", "/v1/hooks/exam", roles.SIGNED),
    ("POST", "/lti/launch", roles.LTI),
    ("GET", "/lti/login", roles.LTI),
    ("GET", "/dashboard", roles.DASHBOARD),
    ("POST", "/dashboard/sessions/lab-1a2b/extend", roles.DASHBOARD),
    ("POST", "/dashboard/deliveries/7/redeliver", roles.DASHBOARD),
    ("GET", "/dashboard/sessions", None),
    ("GET", "/v1/sessions/a/b", None),
    ("PUT", "/v1/sessions", None),
    ("GET", "/", None),
])
def test_a_request_path_falls_under_its_template(method: str, path: str, rule: roles.Rule | None) -> None:
    assert roles.rule_for_request(method, path) == rule
    assert roles.needs_token(rule) is (rule not in (roles.PUBLIC, roles.SIGNED, roles.LTI, roles.DASHBOARD))


def test_platform_tokens_read_credentials_only_of_sessions_they_started() -> None:
    assert roles.may_read_credentials(role="platform", caller="token:3", started_by="token:3")
    assert not roles.may_read_credentials(role="platform", caller="token:3", started_by="token:4")
    assert not roles.may_read_credentials(role="platform", caller="token:3", started_by=None)
    assert roles.may_read_credentials(role="instructor", caller="admin", started_by="token:4")
    assert roles.may_read_credentials(role="learner", caller="token:9", started_by="token:4")


@pytest.mark.parametrize(("body", "needle"), [
    ('{"a": "x\\u0000"}', "NUL character"),
    ('{"x\\u0000": 1}', "a JSON key contains a NUL"),
    ("[" * 33 + "]" * 33, "nested deeper than 32"),
    ("[" * 200_000 + "]" * 200_000, "nested deeper than 32"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ("{", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_unsafe_json_is_refused_with_the_reason(body: str | bytes, needle: str) -> None:
    with pytest.raises(inputs.UnsafeInput, match=re.escape(needle)):
        inputs.loads(body)


def test_safe_json_comes_back_as_parsed() -> None:
    assert inputs.loads("[" * 32 + "]" * 32) is not None
    assert inputs.loads('{"n": 12345678901234567890, "s": "\\u00e9", "f": 1e308}') == {
        "n": 12345678901234567890, "s": "\u00e9", "f": 1e308}


def test_target_decisions() -> None:
    strict = TargetPolicy()
    assert strict.refusal("exam.example.com", ["93.184.216.34", "2606:2800:220:1::1"]) is None
    assert "10.1.1.1, which is private" in str(strict.refusal("exam.example.com", ["93.184.216.34", "10.1.1.1"]))
    assert "no address" in str(strict.refusal("exam.example.com", []))
    allowed = TargetPolicy.from_entries(["10.0.0.0/8", "Exam.Internal."])
    assert allowed.refusal("x.corp", ["10.1.1.1"]) is None
    assert allowed.refusal("exam.internal", ["192.168.0.1", "127.0.0.1"]) is None  # the host is named
    assert "loopback" in str(allowed.refusal("x.corp", ["10.1.1.1", "127.0.0.1"]))
    assert "metadata" in str(allowed.refusal("x", ["169.254.169.254"]))


def test_the_exam_secret_must_be_real_outside_development() -> None:
    strong = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    weak = "whsec_" + base64.b64encode(b"short").decode()
    assert exam_secret_problem(strong, strict=True) is None
    assert "too short: 5 random bytes" in str(exam_secret_problem(weak, strict=True))
    assert exam_secret_problem(weak, strict=False) is None  # development: any working secret
    assert "must start with 'whsec_'" in str(exam_secret_problem(strong.removeprefix("whsec_"), strict=True))
    assert "not a Standard Webhooks secret" in str(exam_secret_problem("whsec_not base64!", strict=False))
