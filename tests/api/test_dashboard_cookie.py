"""The dashboard cookie's attributes as the app sets them (in process, no cluster needed: signing in touches only the
store): ``Secure`` over https or behind an https ``LABCTL_PUBLIC_URL``, never over plain http; ``HttpOnly``,
``SameSite=Strict``, ``Path=/dashboard`` always; signing out clears it on the same path."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.settings import Settings
from tests.support.wait import dead_kubeconfig

ADMIN = "an-admin-token-for-the-cookie-test-0123456789"


@pytest.mark.parametrize(("base_url", "public_url", "secure"), [
    ("http://testserver", None, False),
    ("https://testserver", None, True),
    ("http://testserver", "https://labs.example.edu", True),  # TLS ends at a proxy in front of labctl
])
def test_the_cookie_is_secure_over_https_only(tmp_path: Path, base_url: str, public_url: str | None,
                                              secure: bool) -> None:
    settings = Settings(data_dir=tmp_path, kubeconfig=dead_kubeconfig(tmp_path), admin_token=ADMIN,
                        public_url=public_url)
    with TestClient(create_app(settings, background=False), base_url=base_url) as c:
        signed_in = c.post("/dashboard/login", json={"token": ADMIN})
        assert signed_in.status_code == 200, signed_in.text
        attributes = [a.strip().lower() for a in signed_in.headers["set-cookie"].split(";")]
        assert attributes[0].startswith("labctl_dashboard=")
        assert {"httponly", "path=/dashboard", "samesite=strict", "max-age=28800"} <= set(attributes)
        assert ("secure" in attributes) is secure
        page = c.get("/dashboard")
        assert page.status_code == 200
        if secure and base_url.startswith("http:"):  # a Secure cookie never goes back over plain http
            assert "Sign in to the dashboard" in page.text
            return
        csrf = page.text.split('name="labctl-csrf" content="', 1)[1].split('"', 1)[0]
        out = c.post("/dashboard/logout", json={}, headers={"x-labctl-csrf": csrf})
        assert out.status_code == 200
        assert 'labctl_dashboard=""' in out.headers["set-cookie"] and "Path=/dashboard" in out.headers["set-cookie"]
        assert c.get("/dashboard", follow_redirects=False).status_code == 303


def test_replacing_the_admin_token_ends_its_sign_ins(tmp_path: Path) -> None:
    """With a link key of its own the signing key survives the admin token's change; the fingerprint does not."""
    def app(admin: str) -> TestClient:
        settings = Settings(data_dir=tmp_path, kubeconfig=dead_kubeconfig(tmp_path), admin_token=admin,
                            link_key="a-link-key-of-its-own-0123456789abcdef")
        return TestClient(create_app(settings, background=False))

    with app(ADMIN) as before:
        assert before.post("/dashboard/login", json={"token": ADMIN}).status_code == 200
        cookie = before.cookies["labctl_dashboard"]
        assert before.get("/dashboard", follow_redirects=False).status_code == 200
    with app(ADMIN) as same:  # a restart with the same admin token: the sign-in holds
        same.cookies.set("labctl_dashboard", cookie)
        assert same.get("/dashboard", follow_redirects=False).status_code == 200
    with app(ADMIN[::-1]) as replaced:
        replaced.cookies.set("labctl_dashboard", cookie)
        gone = replaced.get("/dashboard", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/dashboard/login?why=ended"
        assert "was replaced" in replaced.get("/dashboard/state").json()["detail"]
