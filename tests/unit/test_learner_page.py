"""Pure parts of the learner page: signed links (signature, expiry, purposes), the README's HTML, the burn-rate
chart, and which actions the page offers in each state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api import charts, learner_view
from api.markdown import readme_html
from labctl.service import links
from labctl.store.models import SandboxSession

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = links.derive_key(b"test-admin-token")
GRANT = links.Grant("tag-for-showback-0a1b2c3d4e", "ada", AT + timedelta(minutes=10))


def test_a_link_round_trips_until_it_expires() -> None:
    token = links.sign(GRANT, key=KEY, purpose=links.Purpose.LINK)
    assert links.verify(token, key=KEY, purpose=links.Purpose.LINK, now=AT) == GRANT
    assert links.verify(token, key=KEY, purpose=links.Purpose.LINK, now=AT + timedelta(minutes=9, seconds=59)) == GRANT
    with pytest.raises(links.Expired) as expired:
        links.verify(token, key=KEY, purpose=links.Purpose.LINK, now=AT + timedelta(minutes=10))
    assert expired.value.status == 410


@pytest.mark.parametrize("change", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature
    lambda t: ("e" if t[0] != "e" else "f") + t[1:],  # the payload
    lambda t: t[: len(t) // 2],  # cut short
    lambda t: "",
    lambda t: t + "x" * 2000,
])
def test_a_changed_link_is_refused_as_tampered(change) -> None:  # type: ignore[no-untyped-def]
    token = links.sign(GRANT, key=KEY, purpose=links.Purpose.LINK)
    with pytest.raises(links.Tampered) as refused:
        links.verify(change(token), key=KEY, purpose=links.Purpose.LINK, now=AT)
    assert refused.value.status == 403


def test_a_token_is_good_for_its_own_purpose_and_key_only() -> None:
    link = links.sign(GRANT, key=KEY, purpose=links.Purpose.LINK)
    for other in (links.Purpose.PAGE, links.Purpose.CSRF):
        with pytest.raises(links.Tampered):
            links.verify(link, key=KEY, purpose=other, now=AT)
    with pytest.raises(links.Tampered):
        links.verify(link, key=links.derive_key(b"another admin token"), purpose=links.Purpose.LINK, now=AT)


def test_a_signed_payload_of_another_shape_is_not_a_grant() -> None:
    import hashlib

    from itsdangerous import URLSafeSerializer

    forged = URLSafeSerializer(KEY, salt=links.Purpose.LINK.value,
                               signer_kwargs={"digest_method": hashlib.sha256}).dumps({"s": "x", "l": "y", "e": "1"})
    with pytest.raises(links.Tampered):
        links.verify(forged, key=KEY, purpose=links.Purpose.LINK, now=AT)


def test_the_key_is_derived_not_the_secret_itself() -> None:
    assert KEY != b"test-admin-token" and len(KEY) == 32
    assert links.derive_key(b"test-admin-token") == KEY


def test_the_readme_loses_raw_html_images_and_script_links_and_its_title() -> None:
    html = str(readme_html("# Lab title\n\nHi <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
                           "[bad](javascript:alert(1)) [ok](https://example.com) ![pic](https://example.com/p.png)\n\n"
                           "## Part\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"))
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html
    assert '<a href="https://example.com" target="_blank" rel="noopener noreferrer">ok</a>' in html
    assert "Lab title" not in html and "<h1" not in html and "<h3>Part</h3>" in html
    assert "<table>" in html


def test_the_chart_draws_steps_and_says_what_it_shows() -> None:
    points = [charts.Point(AT, 0.5), charts.Point(AT + timedelta(minutes=30), 1.25)]
    svg = str(charts.burn_chart(points, now=AT + timedelta(hours=1)))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "now $1.2500 per hour, peak $1.2500 per hour" in svg and "12:00 to 13:00 UTC" in svg
    assert svg.count(" L") >= 3  # a step per reading
    assert "<svg" not in str(charts.burn_chart([], now=AT))


def _row(state: str, **fields: object) -> SandboxSession:
    row = SandboxSession(id="s", lab_id="l", learner_id="ada", provider="kubernetes", state=state,
                         budget_usd=Decimal(2), expires_at=AT + timedelta(hours=1),
                         deadline_at=AT + timedelta(hours=1, minutes=40))
    for key, value in fields.items():
        setattr(row, key, value)
    return row


def test_the_page_offers_what_the_state_allows() -> None:
    ready = learner_view.actions(_row("ready"), now=AT, attempts_left=2)
    assert ready.submit and ready.suspend and not ready.resume and ready.ask_budget
    assert [s for s, _ in ready.extend] == [900, 1800]  # 40 minutes of room: 15 and 30
    assert not learner_view.actions(_row("ready"), now=AT, attempts_left=0).submit
    mine = learner_view.actions(_row("suspended", suspend_reason="learner"), now=AT, attempts_left=1)
    assert mine.resume and not mine.submit and not mine.suspend and mine.resume_note is None
    budget = learner_view.actions(_row("suspended", suspend_reason="budget"), now=AT, attempts_left=1)
    assert not budget.resume and "ask for more budget" in str(budget.resume_note)
    at_deadline = learner_view.actions(_row("ready", expires_at=AT + timedelta(hours=1, minutes=40)), now=AT,
                                       attempts_left=1)
    assert at_deadline.extend == ()
    short = learner_view.actions(_row("ready", deadline_at=AT + timedelta(hours=1, minutes=5)), now=AT,
                                 attempts_left=1)
    assert short.extend == ((300, "5 min (up to the deadline)"),)
    over = learner_view.actions(_row("terminated"), now=AT, attempts_left=1)
    assert not (over.submit or over.suspend or over.resume or over.ask_budget or over.extend)
    pending = learner_view.actions(_row("ready", budget_request_usd=Decimal(1)), now=AT, attempts_left=1)
    assert not pending.ask_budget


def test_page_settings_refuse_what_would_break_the_csp_or_the_key() -> None:
    from pydantic import ValidationError

    from labctl.settings import Settings

    ok = Settings(page_frame_ancestors="'self', https://course.example.edu, https://*.example.edu:8443")
    assert ok.page_frame_ancestors == ["'self'", "https://course.example.edu", "https://*.example.edu:8443"]
    for bad in ("https://x.example; script-src *", "javascript:alert(1)", "'none', https://a.example", "*"):
        with pytest.raises(ValidationError, match="frame-ancestors"):
            Settings(page_frame_ancestors=bad)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(link_key="short")
    with pytest.raises(ValidationError):
        Settings(public_url="ftp://labs.example.edu")
