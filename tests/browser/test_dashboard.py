"""The instructor dashboard in a real browser against a real `labctl serve`, the local control plane and a real
webhook receiver.

An instructor signs in with a token pasted into the login page (a learner's or the course site's token is refused
with a message that says an instructor token is needed), filters the sessions by lab, extends a session and sees its
new expiry, sees a learner's budget request arrive without reloading and approves it (the request leaves the list,
the session's budget grows), and redelivers a webhook delivery that failed. axe-core finds no serious or critical
violation at desktop and phone width; screenshots of both are saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import screenshot_path
from tests.browser.test_learner_page import DESKTOP, PHONE, axe_violations, sweep
from tests.support.server import Server
from tests.support.tokens import mint
from tests.support.wait import eventually
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.cluster

SHOWBACK, IDLE = "tag-for-showback", "idle-hunter"


class Flaky:
    """The receiver's answer: 500 while ``failing``, then 200 (a receiver that was down and came back)."""

    def __init__(self) -> None:
        self.failing = True

    def __call__(self, _: Any) -> int:
        return 500 if self.failing else 200


@pytest.fixture(scope="module")
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture(scope="module")
def receiver(flaky: Flaky) -> Iterator[Receiver]:
    r = Receiver(status=flaky).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(local_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("dashboard-browser"), kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_WEBHOOK_ALLOW": "127.0.0.1"}).start()  # the receiver is on loopback
    yield srv
    srv.stop_all_sessions()
    srv.stop()


@pytest.fixture(scope="module")
def world(server: Server, receiver: Receiver) -> dict[str, Any]:
    """Ada's and Bob's sessions in two labs; then a receiver that fails, and Grace's session whose ready event it
    refuses."""
    made: dict[str, Any] = {}
    with server.client() as admin:
        for learner, lab in (("ada", SHOWBACK), ("bob", IDLE)):
            r = admin.post("/v1/sessions", json={"lab_id": lab, "learner_id": learner})
            assert r.status_code == 201, r.text
            made[learner] = r.json()
        endpoint = admin.post("/v1/webhooks/endpoints", json={"url": receiver.url, "events": ["session.ready"]})
        assert endpoint.status_code == 201, endpoint.text
        receiver.secrets.append(endpoint.json()["secret"])
        r = admin.post("/v1/sessions", json={"lab_id": SHOWBACK, "learner_id": "grace"})
        assert r.status_code == 201, r.text
        made["grace"] = r.json()

        def failed_twice() -> dict[str, Any] | None:  # after two refusals the next try is minutes away
            rows = admin.get("/v1/webhooks/deliveries", params={"state": "failed"}).json()
            mine = [d for d in rows if d["session_id"] == made["grace"]["id"] and d["attempts"] >= 2]
            return mine[0] if mine else None

        made["delivery"] = eventually(failed_twice, timeout=60)
    return made


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=DESKTOP)
    yield ctx
    ctx.close()


def sign_in(page: Page, server: Server, token: str) -> None:
    page.goto(f"{server.url}/dashboard/login")
    page.get_by_label("Instructor token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def confirm(page: Page, *, text: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(text)
    dialog.get_by_role("button", name="Confirm").click()


def row(page: Page, session_id: str) -> Any:
    return page.locator(f'[data-panel=sessions] tr[data-session="{session_id}"]')


def test_an_instructor_signs_in_filters_extends_approves_and_redelivers(
        server: Server, world: dict[str, Any], receiver: Receiver, flaky: Flaky, context: BrowserContext,
        axe_source: str) -> None:
    page = context.new_page()
    response = page.goto(f"{server.url}/dashboard")
    assert response is not None and response.status == 200
    assert page.url.endswith("/dashboard/login")  # no sign-in: the login page, nothing else
    violations = axe_violations(page, axe_source)
    assert violations == [], violations

    for role, extra in (("learner", {"learner_id": "ada"}), ("platform", {})):
        token = mint(server, role, name=f"{role}-at-the-dashboard", **extra)["token"]
        sign_in(page, server, token)
        expect(page.get_by_role("alert")).to_contain_text(f"this is a {role} token")
        expect(page.get_by_role("alert")).to_contain_text("needs an instructor token")
        assert page.url.endswith("/dashboard/login")
    assert context.cookies() == []

    sign_in(page, server, mint(server, "instructor", name="ta-ines")["token"])
    expect(page.get_by_role("heading", level=1)).to_have_text("Sessions and spend")
    expect(page.locator(".who")).to_contain_text("ta-ines")
    cookie = next(c for c in context.cookies() if c["name"] == "labctl_dashboard")
    assert cookie["httpOnly"] and cookie["path"] == "/dashboard" and cookie["sameSite"] == "Strict"
    ada, bob, grace = world["ada"]["id"], world["bob"]["id"], world["grace"]["id"]
    for sid in (ada, bob, grace):
        expect(row(page, sid)).to_be_visible()
    with server.client() as admin:  # Grace submits: her grade reaches the distribution while the rest goes on
        assert admin.post(f"/v1/sessions/{grace}/submissions").status_code == 202

    # Filter by lab: the server answers only that lab's sessions.
    page.get_by_label("Lab", exact=True).select_option(IDLE)
    page.get_by_role("button", name="Filter").click()
    expect(row(page, bob)).to_be_visible()
    expect(row(page, ada)).to_have_count(0)
    expect(row(page, grace)).to_have_count(0)
    assert f"lab_id={IDLE}" in page.url

    # Bob's session: a cancelled stop changes nothing; suspend and resume, each confirmed first.
    row(page, bob).get_by_role("button", name="Stop").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(row(page, bob).locator(".badge")).to_have_text("ready")
    row(page, bob).get_by_role("button", name="Suspend").click()
    confirm(page, text="Its workloads scale to zero")
    expect(page.locator("#announce")).to_contain_text(f"Suspended {bob}")
    expect(row(page, bob).locator(".badge")).to_have_text("suspended")
    expect(row(page, bob).get_by_role("button", name="Suspend")).to_have_count(0)
    row(page, bob).get_by_role("button", name="Resume").click()
    confirm(page, text="charged again")
    expect(row(page, bob).locator(".badge")).to_have_text("ready", timeout=15000)
    with server.client() as admin:
        events = [e["kind"] for e in admin.get(f"/v1/sessions/{bob}/events").json()]
    assert "suspended" in events and events[-1] != "terminating"

    page.get_by_label("Lab", exact=True).select_option(SHOWBACK)
    page.get_by_role("button", name="Filter").click()
    expect(row(page, bob)).to_have_count(0)
    expect(row(page, ada)).to_be_visible()

    # Extend Ada's session by 15 minutes: the row shows the new expiry.
    cell = row(page, ada).locator("td[data-expires]")
    before = datetime.fromisoformat(cell.get_attribute("data-expires") or "")
    row(page, ada).get_by_role("button", name="Extend").click()
    page.get_by_label("How much more time").select_option("900")
    confirm(page, text="more time")
    expect(page.locator("#announce")).to_contain_text(f"Extended {ada}")
    expect(cell).not_to_have_attribute("data-expires", before.isoformat(), timeout=15000)
    after = datetime.fromisoformat(cell.get_attribute("data-expires") or "")
    assert (after - before).total_seconds() == pytest.approx(900, abs=2)
    with server.client() as admin:
        assert datetime.fromisoformat(admin.get(f"/v1/sessions/{ada}").json()["expires_at"]) == after
    expect(cell).to_contain_text(after.strftime("%H:%M:%S"))

    # Ada asks for more money with her own token; the request appears without a reload and is approved.
    expect(page.locator("[data-panel=budget]")).to_contain_text("No budget request is waiting")
    ada_token = mint(server, "learner", name="ada", learner_id="ada")["token"]
    with server.client(ada_token) as learner:
        asked = learner.post(f"/v1/sessions/{ada}/budget-requests", json={"usd": 1.5, "reason": "one more try"})
    assert asked.status_code == 200, asked.text
    budget_before = float(asked.json()["budget_usd"])
    ask = page.locator("[data-panel=budget] li.ask")
    expect(ask).to_have_count(1, timeout=15000)  # the live refresh brought it
    expect(ask).to_contain_text("ada")
    expect(ask).to_contain_text("one more try")
    ask.get_by_role("button", name="Approve").click()
    confirm(page, text="Approve $1.5000 more")
    expect(page.locator("#announce")).to_contain_text("Approved")
    expect(ask).to_have_count(0)
    expect(page.locator("[data-panel=budget]")).to_contain_text("No budget request is waiting")
    with server.client() as admin:
        now = admin.get(f"/v1/sessions/{ada}").json()
    assert float(now["budget_usd"]) == pytest.approx(budget_before + 1.5)
    expect(row(page, ada)).to_contain_text(f"${float(now['budget_usd']):,.4f}")

    # The meter runs and Grace's grade arrives: spend per lab and learner, the grade distribution.
    sweep(server)
    expect(page.locator("[data-panel=grades] svg.chart")).to_have_count(1, timeout=120000)
    expect(page.locator("[data-panel=grades]")).to_contain_text(f"{SHOWBACK} (1 graded")
    expect(page.locator("[data-panel=costs] svg.chart")).to_have_count(2)
    with server.client() as admin:
        spend = {r["key"]: r for r in admin.get("/v1/costs", params={"group_by": "learner"}).json()}
    assert float(spend["ada"]["spend_usd"]) > 0
    expect(page.locator("[data-panel=costs] svg.chart").nth(1)).to_have_attribute(
        "aria-label", re.compile(r"^Spend per learner: .*ada \$0\.0*[1-9]"))

    # The receiver is back: redeliver the delivery it refused twice.
    delivery = page.locator(f'[data-panel=deliveries] li[data-delivery="{world["delivery"]["id"]}"]')
    expect(delivery).to_contain_text("session.ready")
    expect(delivery).to_contain_text("last answer 500")
    violations = axe_violations(page, axe_source)
    assert violations == [], violations
    desktop = screenshot_path("dashboard-desktop")
    page.screenshot(path=str(desktop), full_page=True)
    print(f"screenshot: {desktop}")

    flaky.failing = False
    delivery.get_by_role("button", name="Redeliver").click()
    confirm(page, text="again now")
    expect(page.locator("#announce")).to_contain_text(f"Delivery {world['delivery']['id']}")
    expect(delivery).to_have_count(0, timeout=20000)
    with server.client() as admin:
        delivered = eventually(lambda: [d for d in admin.get("/v1/webhooks/deliveries").json()
                                        if d["id"] == world["delivery"]["id"] and d["state"] == "delivered"],
                               timeout=20)
    assert delivered[0]["event_id"] in {a.msg_id for a in receiver.accepted}

    page.set_viewport_size(PHONE)
    page.reload()
    expect(row(page, ada)).to_be_visible()
    phone = screenshot_path("dashboard-phone")
    page.screenshot(path=str(phone), full_page=True)
    print(f"screenshot: {phone}")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # the table scrolls in its box
    violations = axe_violations(page, axe_source)
    assert violations == [], violations

    # Reset Grace's sandbox and stop Bob's, from the phone.
    row(page, grace).get_by_role("button", name="Reset").click()
    confirm(page, text="made again from scratch")
    expect(page.locator("#announce")).to_contain_text(f"Reset {grace} (grace): its sandbox was made again",
                                                      timeout=120000)
    expect(row(page, grace).locator(".badge")).to_have_text("ready")
    page.goto(f"{server.url}/dashboard?learner_id=bob")
    row(page, bob).get_by_role("button", name="Stop").click()
    confirm(page, text="removed for good")
    expect(page.locator("#announce")).to_contain_text(f"Stopping {bob}")
    expect(row(page, bob).locator(".badge")).to_have_text(re.compile("terminating|terminated"), timeout=15000)
    expect(row(page, bob).get_by_role("button")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    assert [c for c in context.cookies() if c["name"] == "labctl_dashboard"] == []
