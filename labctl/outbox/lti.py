"""Grade passback to an LMS with LTI 1.3 Assignment and Grade Services (AGS).

Two requests. First an OAuth 2 access token with the client-credentials grant, the client authenticating with a signed
JWT assertion (RFC 7523: ``iss`` = ``sub`` = the client id, ``aud`` = the token URL, a fresh ``jti``, ``iat``, ``exp``
five minutes later; RS256 with the tool's private key, ``kid`` in the header so the LMS finds the public key) and the
AGS score scope. Then the score, POSTed to ``{lineitem}/scores`` (the path gets ``/scores``, a query string stays) with
content type ``application/vnd.ims.lis.v1.score+json``: ``gradingProgress`` ``FullyGraded`` (the only value an LMS
records as final) and ``activityProgress`` ``Completed``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt

from labctl.outbox import UpstreamError

SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(minutes=5)


def client_assertion(*, client_id: str, token_url: str, private_key_pem: str, kid: str, now: datetime) -> str:
    """The RFC 7523 JWT that authenticates the tool at the LMS token endpoint."""
    issued = int(_utc(now).timestamp())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "jti": str(uuid.uuid4()), "iat": issued,
              "exp": issued + int(ASSERTION_LIFETIME.total_seconds())}
    return jwt.encode(claims, private_key_pem, algorithm="RS256", headers={"kid": kid})


def access_token(*, token_url: str, client_id: str, private_key_pem: str, kid: str, now: datetime,
                 http: httpx.Client, scope: str = SCORE_SCOPE) -> str:
    """An access token for ``scope`` from the LMS, by the client-credentials grant with a JWT assertion."""
    assertion = client_assertion(client_id=client_id, token_url=token_url, private_key_pem=private_key_pem, kid=kid,
                                 now=now)
    response = _send(http, "POST", token_url, "token request", data={
        "grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion, "scope": scope})
    try:
        token = response.json()["access_token"]
    except (ValueError, KeyError, TypeError):
        raise UpstreamError(f"the LMS token endpoint {token_url} answered without an access_token") from None
    if not isinstance(token, str) or not token:
        raise UpstreamError(f"the LMS token endpoint {token_url} answered with an empty access_token")
    return token


def scores_url(lineitem_url: str) -> str:
    """The AGS scores service of a line item: ``/scores`` appended to the path, the query string kept."""
    parts = urlsplit(lineitem_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


def score_body(*, user_id: str, score: float, max_score: float, comment: str | None, now: datetime) -> dict[str, Any]:
    """The ``application/vnd.ims.lis.v1.score+json`` document of a final grade."""
    if max_score <= 0:
        raise ValueError(f"max_score must be positive, not {max_score}")
    if not 0 <= score <= max_score:
        raise ValueError(f"score {score} is outside 0..{max_score}")
    body: dict[str, Any] = {
        "userId": user_id,
        "scoreGiven": float(score),
        "scoreMaximum": float(max_score),
        "timestamp": _utc(now).isoformat(timespec="milliseconds"),
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
    }
    if comment:
        body["comment"] = comment
    return body


def publish_score(*, lineitem_url: str, token_url: str, client_id: str, private_key_pem: str, kid: str, user_id: str,
                  score: float, max_score: float, comment: str | None, now: datetime,
                  http: httpx.Client) -> dict[str, Any]:
    """Publish a final score to an LMS line item; returns the score document sent. Raises :class:`UpstreamError`."""
    body = score_body(user_id=user_id, score=score, max_score=max_score, comment=comment, now=now)
    token = access_token(token_url=token_url, client_id=client_id, private_key_pem=private_key_pem, kid=kid, now=now,
                         http=http)
    _send(http, "POST", scores_url(lineitem_url), "score publication", json=body,
          headers={"authorization": f"Bearer {token}", "content-type": SCORE_MEDIA_TYPE})
    return body


def _send(http: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
    try:
        response = http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"the LMS did not answer the {what} at {url}: {exc}") from None
    if not response.is_success:
        raise UpstreamError(f"the LMS refused the {what} at {url}: HTTP {response.status_code} "
                            f"{response.text[:300]}")
    return response


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
