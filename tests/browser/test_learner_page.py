"""The learner page in a real browser against a real `labctl serve` and the local control plane.

The course site (a platform token) starts a session; the learner opens the ``learner_url`` of the answer in
Chromium, sees the countdown tick and the budget gauge move when the meter runs (a sweep, `labctl sweep --once`,
beside the server), submits through the confirmation dialog and sees the grade with its checks and the receipt.
axe-core finds no serious or critical violation, at desktop and phone width, and screenshots of both are saved.
Then the learner as an adversary: a tampered, an expired and another learner's link show the error page and
nothing of any session; the page cookie opens neither another session's page nor any instructor route.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from labctl.service import links
from tests.browser.conftest import screenshot_path
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.tokens import mint

pytestmark = pytest.mark.cluster

LAB = "gpu-rightsizing"  # a whole A100 burns dollars per hour: the gauge moves visibly within seconds
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
KEY = links.derive_key(ADMIN_TOKEN.encode())  # the server derives its link key from its admin token


@pytest.fixture(scope="module")
def site(server: Server) -> str:
    token: str = mint(server, "platform", name="course-site")["token"]
    return token


@pytest.fixture(scope="module")
def ada(server: Server, site: str) -> dict[str, Any]:
    """Ada's session, started by the course site; its answer carries her learner link."""
    with server.client(site) as c:
        r = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": "ada"})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["state"] == "ready", made
    return made


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=DESKTOP)
    yield ctx
    ctx.close()


def fresh_link(server: Server, site: str, session_id: str) -> str:
    with server.client(site) as c:
        url: str = c.get(f"/v1/sessions/{session_id}").json()["learner_url"]
    return url


def sweep(server: Server) -> None:
    """One pass of the meter beside the server, on its store and cluster (what the background loop does)."""
    labctl = str(Path(sys.executable).parent / "labctl")
    done = subprocess.run([labctl, "sweep", "--once"], env=server.env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def axe_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is (injected from the npm package through the
    devtools protocol, which the page's CSP does not govern: the page itself still runs no inline script)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    found: list[dict[str, Any]] = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}));
    }""")
    return found


def spent(page: Page) -> str:
    return page.locator("[data-panel=budget] [data-spent]").inner_text()


def test_the_learner_opens_the_link_watches_the_meter_submits_and_reads_the_grade(
        server: Server, site: str, ada: dict[str, Any], context: BrowserContext, axe_source: str) -> None:
    page = context.new_page()
    refused: list[str] = []  # every request the page makes (its icon too) must be answered
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    response = page.goto(ada["learner_url"])
    assert response is not None and response.status == 200
    assert urlsplit(page.url).path == f"/learn/{ada['id']}"  # the link left the address bar
    assert "link=" not in page.url
    with server.client() as admin:
        title = admin.get(f"/v1/labs/{LAB}").json()["title"]
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("[data-panel=status] .badge")).to_have_text("Ready")
    expect(page.get_by_role("heading", name="Instructions")).to_be_visible()

    countdown = page.locator("[data-countdown]")
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=5000)  # it ticks without a reload

    before = spent(page)
    meter_before = float(page.locator("meter#gauge").get_attribute("value") or "0")
    time.sleep(3)  # some time on the meter: a whole A100 burns a few dollars an hour
    sweep(server)
    expect(page.locator("[data-panel=budget] [data-spent]")).not_to_have_text(before, timeout=15000)
    meter_after = float(page.locator("meter#gauge").get_attribute("value") or "0")
    assert meter_after > meter_before
    expect(page.locator("[data-panel=budget] svg.chart")).to_be_visible(timeout=15000)
    expect(page.locator("[data-panel=workloads] table").first).to_be_visible(timeout=15000)

    violations = axe_violations(page, axe_source)
    assert violations == [], violations
    desktop = screenshot_path("learner-page-desktop")
    page.screenshot(path=str(desktop), full_page=True)
    page.screenshot(path=str(screenshot_path("learner-page-desktop-top")))
    print(f"screenshot: {desktop}")

    page.get_by_role("button", name="Submit for grading").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("uses one attempt")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#announce")).to_contain_text(re.compile("Submitted|Your grade is ready"), timeout=30000)
    expect(page.locator("[data-panel=grade] .score-num")).to_be_visible(timeout=180000)
    checks = page.locator("[data-panel=grade] .check")
    assert checks.count() >= 1
    for i in range(checks.count()):
        assert checks.nth(i).locator(".verdict").inner_text().lower() in ("passed", "failed", "not judged")
        assert checks.nth(i).locator(".feedback").inner_text().strip()
    expect(page.locator("[data-panel=grade] details.receipt")).to_be_visible()
    with server.client() as admin:
        graded = admin.get(f"/v1/sessions/{ada['id']}/submissions").json()[-1]
    assert graded["state"] == "graded"
    shown = page.locator("[data-panel=grade] .score-num").inner_text()
    assert float(shown) == pytest.approx(round(graded["score"], 1))

    violations = axe_violations(page, axe_source)
    assert violations == [], violations
    page.screenshot(path=str(screenshot_path("learner-page-graded-desktop")), full_page=True)
    page.set_viewport_size(PHONE)
    phone = screenshot_path("learner-page-phone")
    page.screenshot(path=str(phone), full_page=True)
    page.screenshot(path=str(screenshot_path("learner-page-phone-top")))
    page.locator(".area-grade").screenshot(path=str(screenshot_path("learner-page-phone-grade")))
    print(f"screenshot: {phone}")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    violations = axe_violations(page, axe_source)
    assert violations == [], violations
    assert refused == []


def forge(session_id: str, learner_id: str, *, expires: datetime) -> str:
    """A link signed with the server's own key (what labctl would make), for cases no answer gives out."""
    return links.sign(links.Grant(session_id, learner_id, expires), key=KEY, purpose=links.Purpose.LINK)


def error_page(page: Page, server: Server, link: str, status: int, title: str) -> str:
    response = page.goto(f"{server.url}/learn/open?link={link}")
    assert response is not None and response.status == status
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    text = page.content()
    assert "Traceback" not in text and "labctl_page" not in page.evaluate("document.cookie")
    return text


def test_a_tampered_expired_or_other_learners_link_shows_the_error_page(
        server: Server, site: str, ada: dict[str, Any], context: BrowserContext) -> None:
    page = context.new_page()
    token = parse_qs(urlsplit(fresh_link(server, site, ada["id"])).query)["link"][0]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    text = error_page(page, server, tampered, 403, "This link is not valid")
    expired = forge(ada["id"], "ada", expires=datetime.now(UTC) - timedelta(seconds=1))
    text += error_page(page, server, expired, 410, "This link has expired")
    bobs = forge(ada["id"], "bob", expires=datetime.now(UTC) + timedelta(minutes=5))
    text += error_page(page, server, bobs, 404, "There is no lab session for this link")
    nowhere = forge("no-such-session", "ada", expires=datetime.now(UTC) + timedelta(minutes=5))
    text += error_page(page, server, nowhere, 404, "There is no lab session for this link")
    cookie_as_link = links.sign(links.Grant(ada["id"], "ada", datetime.now(UTC) + timedelta(minutes=5)), key=KEY,
                                purpose=links.Purpose.PAGE)
    text += error_page(page, server, cookie_as_link, 403, "This link is not valid")
    assert ada["id"] not in text and LAB not in text  # nothing of the session it names
    assert context.cookies() == []  # no refused link left a page cookie


def test_the_page_cookie_opens_one_session_and_no_instructor_route(
        server: Server, site: str, ada: dict[str, Any], context: BrowserContext) -> None:
    with server.client(site) as c:
        other = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "grace"})
    assert other.status_code == 201, other.text
    grace = other.json()
    page = context.new_page()
    page.goto(fresh_link(server, site, ada["id"]))
    cookies = context.cookies()
    assert [(c["name"], c["path"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("labctl_page", f"/learn/{ada['id']}", True, "Lax")]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's own script cannot read it

    # Another session's page in the same browser: the cookie is not even sent there, and sent by hand it is refused.
    response = page.goto(f"{server.url}/learn/{grace['id']}")
    assert response is not None and response.status == 401
    expect(page.get_by_role("heading", level=1)).to_have_text("Open this page from your course")
    cookie = cookies[0]["value"]
    with httpx.Client(base_url=server.url, timeout=60, cookies={"labctl_page": cookie}) as http:
        for path in (f"/learn/{grace['id']}", f"/learn/{grace['id']}/state", f"/learn/{grace['id']}/kubeconfig"):
            refused = http.get(path)
            assert refused.status_code == 404, (path, refused.text)
            assert "grace" not in refused.text  # nothing of that session but the path that was asked for
            shown = refused.json()["detail"] if refused.headers["content-type"].endswith("json") else refused.text
            assert grace["id"] not in shown
        # Instructor routes (and every /v1 route) want a bearer token: the cookie is no credential there.
        for method, path, body in (("GET", "/v1/costs", None), ("GET", "/v1/tokens", None),
                                   ("POST", "/v1/tokens", {"name": "x", "role": "instructor"}),
                                   ("POST", f"/v1/sessions/{ada['id']}/budget-requests/approve", {"usd": 5}),
                                   ("POST", "/v1/sessions/grants", {"lab_id": LAB, "learner_id": "ada",
                                                                    "usd": 100, "reason": "x"}),
                                   ("GET", "/v1/sessions", None), ("GET", f"/v1/sessions/{ada['id']}", None),
                                   ("DELETE", f"/v1/sessions/{ada['id']}", None)):
            r = http.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.text)
        # Its own page's actions need the anti-forgery token the page carries; a forged request from elsewhere
        # (the cookie alone) is refused.
        refused = http.post(f"/learn/{ada['id']}/suspend", json={})
        assert refused.status_code == 403 and "anti-forgery" in refused.json()["detail"]
    # The browser's own request context carries the cookie, as a script on another site could make it do.
    for method, path in (("GET", "/v1/costs"), ("POST", f"/v1/sessions/{ada['id']}/budget-requests/approve")):
        r = context.request.fetch(f"{server.url}{path}", method=method, data={} if method == "POST" else None)
        assert r.status == 401, (path, r.text())
    with server.client() as admin:
        assert admin.get(f"/v1/sessions/{ada['id']}").json()["state"] != "terminating"
        assert admin.get("/v1/tokens").json()[0]["name"] != "x"
