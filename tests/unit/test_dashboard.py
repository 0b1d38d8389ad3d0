"""Pure parts of the instructor dashboard: what needs attention, which actions a state allows, the grade bins, the
filters' query string, the bar chart's escaping, and the dashboard pass (its purposes, expiry and shape)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api import dashboard_view as dv
from api.charts import Bar, bar_chart
from api.routers.pages import TEMPLATES
from labctl.service import links
from labctl.service.overview import LatestGrade
from labctl.store.models import SandboxSession

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = links.derive_key(b"a test admin token")


def session(state: str = "ready", *, spent: str = "0", budget: str = "10", left: timedelta = timedelta(hours=1),
            deadline: timedelta = timedelta(hours=3), sid: str = "lab-1") -> SandboxSession:
    return SandboxSession(id=sid, lab_id="tag-for-showback", learner_id="ada", provider="kubernetes", state=state,
                          budget_usd=Decimal(budget), accrued_usd=Decimal(spent), created_at=NOW - timedelta(hours=1),
                          expires_at=NOW + left, deadline_at=NOW + deadline)


@pytest.mark.parametrize(("spent", "near"), [("7.99", False), ("8", True), ("12", True), ("0", False)])
def test_a_session_is_near_its_budget_from_80_percent(spent: str, near: bool) -> None:
    assert dv.near_budget(session(spent=spent)) is near
    assert dv.session_row(session(spent=spent), now=NOW).attention is near


@pytest.mark.parametrize(("state", "left", "near"), [
    ("ready", timedelta(minutes=14, seconds=59), True),
    ("ready", timedelta(minutes=15), False),
    ("suspended", timedelta(minutes=-5), True),  # overdue: the sweep has not stopped it yet
    ("terminated", timedelta(minutes=5), False),  # over: nothing left to watch
])
def test_a_live_session_is_near_expiry_under_15_minutes(state: str, left: timedelta, near: bool) -> None:
    assert dv.near_expiry(session(state, left=left), now=NOW) is near


@pytest.mark.parametrize(("state", "deadline", "expected"), [
    ("ready", timedelta(hours=3), ("extend", "suspend", "reset", "stop")),
    ("ready", timedelta(hours=1), ("suspend", "reset", "stop")),  # already runs until its deadline
    ("suspended", timedelta(hours=3), ("extend", "resume", "reset", "stop")),
    ("graded", timedelta(hours=3), ("stop",)),
    ("terminating", timedelta(hours=3), ()),
    ("failed", timedelta(hours=3), ()),
])
def test_the_actions_follow_the_state_machine(state: str, deadline: timedelta, expected: tuple[str, ...]) -> None:
    assert dv.actions(session(state, deadline=deadline)) == expected


def test_grades_fall_in_fifths_with_a_full_score_in_the_top_one() -> None:
    def grade(score: str, of: str = "10") -> LatestGrade:
        return LatestGrade("s", "lab", "ada", Decimal(score), Decimal(of))

    assert dv.grade_bins([grade(s) for s in ("0", "1.99", "2", "5", "7.9", "8", "10")]) == [2, 1, 1, 1, 2]
    assert dv.grade_bins([grade("3", of="0")]) == [1, 0, 0, 0, 0]  # graders that give no points at all
    charts = dv.grade_charts([grade("10"), LatestGrade("t", "other", "bob", Decimal(1), Decimal(4))])
    assert [(c.lab_id, c.graded) for c in charts] == [("lab", 1), ("other", 1)]
    assert "80 to 100 %" in charts[0].chart and "1 session" in charts[0].chart


def test_the_filters_keep_what_is_set_and_drop_what_is_not() -> None:
    f = dv.Filters(lab_id="tag-for-showback", learner_id="ada & bob", state="", page="abc")
    assert f.query() == "lab_id=tag-for-showback&learner_id=ada+%26+bob&continue=abc"
    assert f.query(**{"continue": "next"}).endswith("continue=next")
    assert dv.Filters().query() == ""


def test_the_bar_chart_escapes_every_text_and_says_what_it_shows() -> None:
    svg = bar_chart([Bar("<script>x</script>", 2.0, "$2.00"), Bar("bob", 0.0, "$0.00")], title="Spend per learner",
                    empty="none")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'aria-label="Spend per learner: &lt;script&gt;x&lt;/script&gt; $2.00; bob $0.00"' in svg
    assert str(bar_chart([], title="t", empty="Nothing <yet>")) == '<p class="muted">Nothing &lt;yet&gt;</p>'


def test_a_dashboard_pass_is_good_for_its_own_purpose_only() -> None:
    staff = links.StaffPass("token:7", NOW + timedelta(hours=8))
    cookie = links.sign_pass(staff, key=KEY, purpose=links.Purpose.DASHBOARD)
    assert links.verify_pass(cookie, key=KEY, purpose=links.Purpose.DASHBOARD, now=NOW) == staff
    for purpose in (links.Purpose.DASHBOARD_CSRF, links.Purpose.PAGE, links.Purpose.LINK, links.Purpose.CSRF):
        with pytest.raises(links.Tampered):
            links.verify_pass(cookie, key=KEY, purpose=purpose, now=NOW)
    with pytest.raises(links.Tampered):  # another key (another admin token or LABCTL_LINK_KEY)
        links.verify_pass(cookie, key=links.derive_key(b"another"), purpose=links.Purpose.DASHBOARD, now=NOW)
    with pytest.raises(links.Expired):
        links.verify_pass(cookie, key=KEY, purpose=links.Purpose.DASHBOARD, now=NOW + timedelta(hours=8))


def test_a_learner_grant_is_no_dashboard_pass_and_a_pass_no_grant() -> None:
    """Even signed for the dashboard's purpose, a grant's shape is refused, and the other way round."""
    grant = links.Grant("lab-1", "ada", NOW + timedelta(hours=1))
    as_pass = links.sign(grant, key=KEY, purpose=links.Purpose.DASHBOARD)
    with pytest.raises(links.Tampered, match="not a dashboard pass"):
        links.verify_pass(as_pass, key=KEY, purpose=links.Purpose.DASHBOARD, now=NOW)
    as_grant = links.sign_pass(links.StaffPass("admin", NOW + timedelta(hours=1)), key=KEY,
                               purpose=links.Purpose.PAGE)
    with pytest.raises(links.Tampered, match="not a learner link"):
        links.verify(as_grant, key=KEY, purpose=links.Purpose.PAGE, now=NOW)


def test_the_sessions_panel_flags_in_words_what_needs_attention() -> None:
    near_budget = session(spent="9")
    ending = session(sid="lab-2", left=timedelta(minutes=5))
    calm = session(sid="lab-3")
    view = dv.build(filters=dv.Filters(), labs=["tag-for-showback"], page=[near_budget, ending, calm],
                    next_token=None, cost_by_lab=[], cost_by_learner=[], grades=[], pending=[], deliveries=[],
                    now=NOW)
    html = str(TEMPLATES.get_template("dashboard_panels.html").make_module({"v": view}).sessions(view))
    rows = {sid: html[html.index(f'data-session="{sid}"'):] for sid in ("lab-1", "lab-2", "lab-3")}
    rows = {sid: text[:text.index("</tr>")] for sid, text in rows.items()}
    assert "attention" in rows["lab-1"] and "near budget" in rows["lab-1"] and "(90 %)" in rows["lab-1"]
    assert "attention" in rows["lab-2"] and "ends soon" in rows["lab-2"] and "near budget" not in rows["lab-2"]
    assert "attention" not in rows["lab-3"] and "flag" not in rows["lab-3"]
    assert "2 sessions on this page need attention" in html
    assert view.json()["attention"] == 2
