"""Tokens of every role for tests against a running `labctl serve`, minted through its API by the admin token."""

from __future__ import annotations

from typing import Any

from tests.support.server import ADMIN_TOKEN, Server


def mint(server: Server, role: str, *, name: str | None = None, learner_id: str | None = None,
         **extra: Any) -> dict[str, Any]:
    """A new token (the API's answer: id, expiry and the token itself)."""
    with server.client() as admin:
        r = admin.post("/v1/tokens", json={"name": name or f"{role}-test", "role": role, "learner_id": learner_id,
                                           **extra})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


__all__ = ["ADMIN_TOKEN", "bearer", "mint"]
