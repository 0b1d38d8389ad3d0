"""A local LMS stand-in for LTI 1.3 (a real HTTP server on 127.0.0.1): it launches labctl and takes its scores.

As a platform it has its own RSA key, published at ``/jwks``; ``/auth`` is its OIDC authorisation endpoint: it checks
the tool's authentication request (client id, registered redirect URI, ``response_type=id_token``, ``form_post``,
``scope=openid``, ``prompt=none``, a state and a nonce) and answers what a browser would post back to the tool: the
signed ``id_token`` (with the request's nonce and the claims of :attr:`Lms.next_launch`) and the state. As a grade
book it does what an LMS does with AGS: verifies the tool's RFC 7523 client assertion with the tool's public key
(issuer, subject, audience, expiry, key id, a jti never seen before), issues a bearer token for the score scope, and
accepts a score only with that token, the AGS content type and a complete score document. ``down`` makes it answer
503 to token requests (an outage).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from labctl.outbox.lti import SCORE_MEDIA_TYPE, SCORE_SCOPE
from tests.support.postgres import free_port

CLIENT_ID = "labctl-tool"
DEPLOYMENT = "deploy-1"
PLATFORM_KID = "lms-key-1"
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"


@dataclass
class Lms:
    tool_public_key: Any = None  # the tool's key that signs its client assertions
    tool_kid: str | None = None
    port: int = field(default_factory=free_port)
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                    key_size=2048))
    redirect_uris: set[str] = field(default_factory=set)
    next_launch: dict[str, Any] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    jtis: set[str] = field(default_factory=set)
    scores: list[dict[str, Any]] = field(default_factory=list)
    score_paths: list[str] = field(default_factory=list)
    down: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/"

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth2/token"

    @property
    def lineitem(self) -> str:
        return f"{self.base}/courses/finops/lineitems/7?type_id=lab"

    def platform_entry(self, name: str = "moodle") -> dict[str, Any]:
        """This LMS as labctl's platforms file registers it."""
        return {"name": name, "issuer": self.issuer, "client_id": CLIENT_ID, "deployment_ids": [DEPLOYMENT],
                "auth_login_url": f"{self.base}/auth", "jwks_url": f"{self.base}/jwks", "token_url": self.token_url}

    def claims(self, *, nonce: str, sub: str = "ada-42", lab_id: str = "tag-for-showback",
               now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
        """The claims of a resource-link launch for ``sub`` into ``lab_id`` (``overrides`` replace or add)."""
        issued = int((now or datetime.now(UTC)).timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": CLIENT_ID, "sub": sub, "iat": issued, "exp": issued + 300, "nonce": nonce,
            "name": "Ada Lovelace",
            CLAIM + "message_type": "LtiResourceLinkRequest", CLAIM + "version": "1.3.0",
            CLAIM + "deployment_id": DEPLOYMENT, CLAIM + "target_link_uri": "http://tool/lti/launch",
            CLAIM + "resource_link": {"id": "link-finops-1", "title": "Tag for showback"},
            CLAIM + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            CLAIM + "custom": {"lab_id": lab_id},
            AGS: {"scope": [SCORE_SCOPE], "lineitem": self.lineitem},
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def id_token(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None,
                 kid: str = PLATFORM_KID) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": PLATFORM_KID, "alg": "RS256", "use": "sig"}]}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/jwks")
        async def keys() -> Response:
            return JSONResponse(self.jwks())

        @app.get("/auth")
        async def auth(request: Request) -> Response:
            q = request.query_params
            expected = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post",
                        "prompt": "none", "client_id": CLIENT_ID}
            wrong = {k: q.get(k) for k, v in expected.items() if q.get(k) != v}
            if wrong or not q.get("state") or not q.get("nonce") or not q.get("login_hint"):
                return JSONResponse({"error": "invalid_request", "wrong": wrong}, status_code=400)
            if self.redirect_uris and q["redirect_uri"] not in self.redirect_uris:
                return JSONResponse({"error": "invalid_request", "redirect_uri": q["redirect_uri"]}, status_code=400)
            token = self.id_token(self.claims(nonce=q["nonce"], sub=q["login_hint"], **self.next_launch))
            return JSONResponse({"redirect_uri": q["redirect_uri"], "id_token": token, "state": q["state"]})

        @app.post("/oauth2/token")
        async def token(request: Request) -> Response:
            if self.down:
                return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != (
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            assertion = form.get("client_assertion", "")
            try:
                header = jwt.get_unverified_header(assertion)
                claims = jwt.decode(assertion, self.tool_public_key, algorithms=["RS256"], audience=self.token_url,
                                    issuer=CLIENT_ID, options={"require": ["iss", "sub", "aud", "jti", "iat", "exp"]})
            except jwt.PyJWTError as exc:
                return JSONResponse({"error": "invalid_client", "error_description": str(exc)}, status_code=401)
            if header.get("kid") != self.tool_kid or claims["sub"] != CLIENT_ID or claims["jti"] in self.jtis:
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


@contextmanager
def running(lms: Lms) -> Iterator[Lms]:
    """Serve ``lms`` on its port for the ``with`` block."""
    server = uvicorn.Server(uvicorn.Config(lms.app(), host="127.0.0.1", port=lms.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the LMS stand-in did not start"
    try:
        yield lms
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def expired(now: datetime) -> dict[str, int]:
    """``iat``/``exp`` claims of a token that expired ten minutes before ``now``."""
    then = int((now - timedelta(minutes=20)).timestamp())
    return {"iat": then, "exp": then + 600}
