"""LTI 1.3 AGS grade passback against a local LMS stand-in (a real HTTP server on 127.0.0.1).

The stand-in does what an LMS does with a tool's request: it verifies the RFC 7523 client assertion with the tool's
public key (issuer, subject, audience, expiry, key id, a jti never seen before), issues a bearer token for the score
scope, and accepts a score only with that token, the AGS content type and a complete score document.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from labctl.outbox import UpstreamError
from labctl.outbox.lti import SCORE_MEDIA_TYPE, SCORE_SCOPE, publish_score, scores_url
from tests.support.postgres import free_port

CLIENT_ID = "labctl-tool"
KID = "labctl-2026"


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass
class Lms:
    public_key: Any
    port: int = field(default_factory=free_port)
    tokens: set[str] = field(default_factory=set)
    jtis: set[str] = field(default_factory=set)
    scores: list[dict[str, Any]] = field(default_factory=list)
    score_paths: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth2/token"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/oauth2/token")
        async def token(request: Request) -> Response:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != (
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            assertion = form.get("client_assertion", "")
            try:
                header = jwt.get_unverified_header(assertion)
                claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"], audience=self.token_url,
                                    issuer=CLIENT_ID, options={"require": ["iss", "sub", "aud", "jti", "iat", "exp"]})
            except jwt.PyJWTError as exc:
                return JSONResponse({"error": "invalid_client", "error_description": str(exc)}, status_code=401)
            if header.get("kid") != KID or claims["sub"] != CLIENT_ID or claims["jti"] in self.jtis:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if not 0 < claims["exp"] - claims["iat"] <= 3600:
                return JSONResponse({"error": "invalid_client", "error_description": "lifetime"}, status_code=401)
            if SCORE_SCOPE not in form.get("scope", "").split():
                return JSONResponse({"error": "invalid_scope"}, status_code=400)
            self.jtis.add(claims["jti"])
            issued = secrets.token_urlsafe(24)
            self.tokens.add(issued)
            return JSONResponse({"access_token": issued, "token_type": "Bearer", "expires_in": 3600,
                                 "scope": SCORE_SCOPE})

        @app.post("/courses/{course}/lineitems/{item}/scores")
        async def score(course: str, item: str, request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if request.headers.get("content-type") != SCORE_MEDIA_TYPE:
                return JSONResponse({"error": "unsupported media type"}, status_code=415)
            body = json.loads(await request.body())
            required = {"userId", "scoreGiven", "scoreMaximum", "timestamp", "activityProgress", "gradingProgress"}
            if not required <= body.keys():
                return JSONResponse({"error": f"missing {sorted(required - body.keys())}"}, status_code=400)
            datetime.fromisoformat(body["timestamp"])
            self.scores.append(body)
            self.score_paths.append(f"{request.url.path}?{request.url.query}")
            return Response(status_code=204)

        return app


@pytest.fixture(scope="module")
def tool_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def lms(tool_key: rsa.RSAPrivateKey) -> Iterator[Lms]:
    stand_in = Lms(public_key=tool_key.public_key())
    server = uvicorn.Server(uvicorn.Config(stand_in.app(), host="127.0.0.1", port=stand_in.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield stand_in
    server.should_exit = True
    thread.join(timeout=20)


def _publish(lms: Lms, key: rsa.RSAPrivateKey, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "lineitem_url": f"{lms.base}/courses/finops/lineitems/7?type_id=lab", "token_url": lms.token_url,
        "client_id": CLIENT_ID, "private_key_pem": _pem(key), "kid": KID, "user_id": "ada", "score": 8.5,
        "max_score": 10, "comment": "tags 4/4, spot 3/4, idle 1.5/2", "now": datetime.now(UTC),
    }
    args.update(overrides)
    with httpx.Client(timeout=10) as http:
        return publish_score(http=http, **args)


def test_a_score_is_published_with_a_token_from_a_signed_assertion(lms: Lms, tool_key: rsa.RSAPrivateKey) -> None:
    sent = _publish(lms, tool_key)
    (received,) = lms.scores
    assert received == sent
    assert received["userId"] == "ada" and received["scoreGiven"] == 8.5 and received["scoreMaximum"] == 10.0
    assert received["activityProgress"] == "Completed" and received["gradingProgress"] == "FullyGraded"
    assert received["comment"] == "tags 4/4, spot 3/4, idle 1.5/2"
    assert datetime.fromisoformat(received["timestamp"]).tzinfo is not None
    assert lms.score_paths == ["/courses/finops/lineitems/7/scores?type_id=lab"]
    _publish(lms, tool_key, score=9)  # a second publication gets a new assertion (fresh jti)
    assert len(lms.jtis) == 2 and len(lms.scores) == 2


def test_the_lms_refuses_an_assertion_signed_with_another_key(lms: Lms) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UpstreamError, match=r"refused the token request.*HTTP 401"):
        _publish(lms, stranger)
    with pytest.raises(UpstreamError, match="HTTP 401"):
        _publish(lms, stranger, kid="other")
    assert lms.scores == []


def test_an_unreachable_lms_and_impossible_scores_are_errors(tool_key: rsa.RSAPrivateKey) -> None:
    closed = Lms(public_key=tool_key.public_key())
    with pytest.raises(UpstreamError, match="did not answer the token request"):
        _publish(closed, tool_key)
    with pytest.raises(ValueError, match="outside"):
        _publish(closed, tool_key, score=11)
    with pytest.raises(ValueError, match="positive"):
        _publish(closed, tool_key, max_score=0)


def test_scores_url_keeps_the_query() -> None:
    assert scores_url("https://lms.example/li/7") == "https://lms.example/li/7/scores"
    assert scores_url("https://lms.example/li/7/?a=1") == "https://lms.example/li/7/scores?a=1"
