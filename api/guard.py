"""The edge: what every request passes before FastAPI reads its body or routes it to a handler.

One ASGI middleware, in this order:

1. **Paths and queries** with a NUL character are refused (400): PostgreSQL cannot store them, so they would fail
   deep inside.
2. **Size**: a ``content-length`` above ``LABCTL_MAX_BODY_BYTES`` is refused (413) before a byte of the body is
   read; a body sent without a length is counted as it streams and refused as soon as it passes the limit.
3. **Authentication first**: a path whose rule in the role matrix (:mod:`labctl.service.roles`) needs a token gets
   its bearer token checked here (401 with what is wrong: missing, unknown, expired, revoked), so an anonymous
   caller never has its body parsed or validated. A path the matrix does not know needs a token too (fail closed:
   anonymous callers cannot tell an unknown route from a forbidden one). A token sent to a public route is checked
   too (``/metrics`` and ``/readyz`` show more to an instructor). The principal is left in
   ``request.state.principal``; *authorization* (which roles may call the route) is the route's dependency,
   :data:`api.deps.Authorized`.
4. **JSON bodies** are parsed once here with :func:`labctl.inputs.loads` (depth, NUL, NaN) and refused with a 400
   that says why; routes authenticated by a signature (``/v1/hooks/exam``) are not parsed here, because their
   signature must be verified before their JSON is parsed. The learner page's routes (``/learn/...``) need no bearer
   token: their link and cookie are checked by :mod:`api.routers.pages`; nor do the instructor dashboard's
   (``/dashboard...``), whose cookie :mod:`api.routers.dashboard` checks.

Every refusal is a problem document.
"""

from __future__ import annotations

import email.message
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import parts_of
from api.problems import problem_response
from labctl import inputs
from labctl.errors import Unauthorized
from labctl.service import auth, roles


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; answered as a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes (LABCTL_MAX_BODY_BYTES), the most "
                              "labctl accepts")


class Guard:
    """The edge checks of the module docstring; reads the store, admin token and limit from the app's runtime."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rt = parts_of(scope["app"]).runtime
        limit: int = rt.settings.max_body_bytes
        path: str = scope["path"]
        if inputs.NUL in path or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            await _refuse(scope, receive, send, 400, "the path or the query contains a NUL character (%00), which "
                                                     "labctl does not accept", "bad-request")
            return
        headers = _headers(scope)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _refuse(scope, receive, send, 400, f"content-length must be a number of bytes, not {length!r}",
                              "bad-request")
                return
            if int(length) > limit:
                await _refuse(scope, receive, send, 413, BodyTooLarge(limit).detail)
                return

        rule = roles.rule_for_request(scope["method"], path)
        authorization = headers.get("authorization")
        if roles.needs_token(rule) or authorization:
            try:
                principal = await run_in_threadpool(auth.authenticate, rt.store, authorization,
                                                    admin_token=rt.admin_token, now=datetime.now(UTC))
            except Unauthorized as exc:
                await _refuse(scope, receive, send, 401, exc.detail, exc.slug, {"www-authenticate": "Bearer"})
                return
            scope.setdefault("state", {})["principal"] = principal

        receive = _counting(receive, limit)  # what the handler reads is counted too (bodies without a length)
        if roles.edge_parses_json(rule) and _is_json(headers.get("content-type")):
            try:
                body = await _read_all(receive)
                if body:
                    inputs.loads(body)
            except BodyTooLarge as exc:
                await _refuse(scope, receive, send, 413, exc.detail)
                return
            except inputs.UnsafeInput as exc:
                await _refuse(scope, receive, send, 400, str(exc), "bad-request")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str, slug: str | None = None,
                  headers: dict[str, Any] | None = None) -> None:
    response = problem_response(status, detail, slug=slug, instance=scope["path"])
    if headers:
        response.headers.update(headers)
    await response(scope, receive, send)
