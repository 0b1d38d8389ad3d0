"""The CLI's HTTP client: ``LABCTL_URL`` and ``LABCTL_TOKEN`` select the server; problem documents become errors."""

from __future__ import annotations

import os
from typing import Any

import httpx

from labctl.cli.output import fail

DEFAULT_URL = "http://127.0.0.1:8080"


def _client() -> httpx.Client:
    url = os.environ.get("LABCTL_URL", DEFAULT_URL)
    token = os.environ.get("LABCTL_TOKEN")
    if not token:
        fail("LABCTL_TOKEN is not set: export the token `labctl serve` printed (or one from `labctl tokens create`)")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300)


def call(method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
         raw: bool = False) -> Any:
    """Send one request; return the JSON body (or text when ``raw``); exit 1 with the server's message on error."""
    with _client() as c:
        try:
            response = c.request(method, path, json=json, params={k: v for k, v in (params or {}).items() if v})
        except httpx.TransportError as exc:
            fail(f"cannot reach labctl at {c.base_url}: {exc}. Is `labctl serve` running? (LABCTL_URL selects it)")
    if response.status_code >= 400:
        fail(_problem_text(response))
    return response.text if raw else response.json()


def call_pages(path: str, *, params: dict[str, Any] | None = None, limit: int | None = None) -> list[Any]:
    """Every row of a paged list (following each page's ``Link: <...>; rel="next"``), or the first ``limit``."""
    rows: list[Any] = []
    with _client() as c:
        url: str | None = path
        first = {k: v for k, v in (params or {}).items() if v} | ({"limit": min(limit, 1000)} if limit else {})
        query: dict[str, Any] | None = first
        while url is not None and (limit is None or len(rows) < limit):
            try:
                response = c.get(url, params=query)
            except httpx.TransportError as exc:
                fail(f"cannot reach labctl at {c.base_url}: {exc}. Is `labctl serve` running? (LABCTL_URL selects "
                     "it)")
            if response.status_code >= 400:
                fail(_problem_text(response))
            rows.extend(response.json())
            url, query = response.links.get("next", {}).get("url"), None  # the next URL carries every parameter
    return rows if limit is None else rows[:limit]


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}: {response.text[:500]}"
    if isinstance(body, dict) and "detail" in body:
        return f"{body.get('title', response.status_code)} ({response.status_code}): {body['detail']}"
    return f"{response.status_code}: {body}"
