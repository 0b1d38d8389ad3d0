"""GCP's label rules, pure (labctl's own) and as the fake enforces them through the real SDK."""

from __future__ import annotations

import pytest
from google.api_core import exceptions

from labctl.providers.gcp import labels as lbl
from labctl.providers.gcp.sandbox import GcpSandboxes
from tests.support import gcp


@pytest.mark.parametrize(("labels", "problem"), [
    ({"team": "ml"}, None),
    ({"a" * 63: "b" * 63}, None),
    ({"cost-center": "", "env_1": "dev-2"}, None),
    ({"Team": "ml"}, "key 'Team' must match"),
    ({"1team": "ml"}, "key '1team' must match"),
    ({"a" * 64: "x"}, "must match [a-z][a-z0-9_-]{0,62}"),
    ({"team": "ML"}, "value 'ML' of 'team' must match"),
    ({"team": "a.b"}, "value 'a.b' of 'team'"),
    ({"team": "x" * 64}, "must match [a-z0-9_-]{0,63}"),
    ({f"k{i}": "v" for i in range(65)}, "65 labels; GCP allows at most 64"),
])
def test_label_rules(labels: dict[str, str], problem: str | None) -> None:
    found = lbl.problems(labels)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found


def test_session_value_is_the_id_or_a_stable_hash() -> None:
    assert lbl.session_value("gcp-test-0a1b2c3d4e") == "gcp-test-0a1b2c3d4e"
    hashed = lbl.session_value("Session.With.Dots")
    assert hashed.startswith("s-") and hashed == lbl.session_value("Session.With.Dots") and not lbl.problems(
        {lbl.SESSION_LABEL: hashed})
    assert lbl.session_filter("s-1") == 'labels.labctl-session = "s-1"'


def test_merged_keeps_the_session_label_and_refuses_what_gcp_would() -> None:
    current = {"labctl-session": "s-1", "team": "a", "old": "x"}
    assert lbl.merged(current, {"team": "b", "old": None, lbl.SESSION_LABEL: None}, session_id="s-1") == {
        "labctl-session": "s-1", "team": "b"}
    with pytest.raises(ValueError, match="value 'B' of 'team'"):
        lbl.merged(current, {"team": "B"}, session_id="s-1")


def test_resource_names_are_per_session_and_valid_gce_names() -> None:
    a, b = lbl.resource_name("x" * 54, "s-1"), lbl.resource_name("x" * 54, "s-2")
    assert a != b and len(a) == 63 and a.startswith("x" * 54 + "-")


@pytest.mark.parametrize(("labels", "message"), [
    ({"Team": "ml"}, "key 'Team'"), ({"team": "ML"}, "value 'ML'"), ({f"k{i}": "v" for i in range(65)}, "at most 64")])
def test_the_fake_refuses_labels_gce_refuses(provider: GcpSandboxes, labels: dict[str, str], message: str) -> None:
    spec = gcp.spec()
    who = gcp.learner(provider.credentials(spec))
    with pytest.raises(exceptions.BadRequest, match=message):
        who.launch(f"bad-{spec.session_id[-10:]}", labels=labels, with_session_label=False)
