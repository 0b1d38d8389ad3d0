"""LTI 1.3 resource-link launches: the platforms labctl trusts, the OIDC login redirect, the ``id_token`` checks.

A launch is three requests (IMS LTI 1.3 core and the IMS Security Framework, OpenID Connect's implicit flow with
``form_post``):

1. The LMS sends the browser to the tool's login initiation (``/lti/login``) with ``iss``, ``login_hint``,
   ``target_link_uri`` and optionally ``lti_message_hint``, ``client_id``, ``lti_deployment_id``.
2. The tool answers with a redirect to the platform's authorisation endpoint (:func:`authorization_url`) carrying a
   fresh ``state`` (also set in a cookie, binding the flow to this browser) and a fresh ``nonce``, both remembered by
   the tool for a few minutes and usable once.
3. The platform posts a signed ``id_token`` and the ``state`` back to the tool's launch URL. :func:`verify` checks the
   token as the framework says: RS256 signature by a key of the platform's JWKS (the caller resolves the key by the
   token's ``kid``), ``iss`` the platform, ``aud`` the client id (with ``azp`` when there are several audiences),
   ``exp`` / ``iat`` within a minute's leeway, the ``nonce`` the one this flow's ``state`` was given, a registered
   ``deployment_id``, message type ``LtiResourceLinkRequest`` and version ``1.3.0``; the lab to start is the custom
   parameter ``lab_id`` of the resource link.

Pure: the JWKS fetch, the store and the session start are the caller's (:mod:`labctl.service.launches`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
LEEWAY = timedelta(minutes=1)
FLOW_LIFETIME = timedelta(minutes=10)
_LEARNER_ID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class LaunchRefused(ValueError):
    """A login or launch that must not go on; the message says what was wrong, for the error page."""


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


class Platform(BaseModel):
    """One LMS registered with labctl (what its administrator set up for the tool)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$",
                      description="short name; learner ids of its users are '<name>-<sub>'")
    issuer: str = Field(min_length=1, description="the platform's `iss`")
    client_id: str = Field(min_length=1, description="the tool's client id at this platform (the token's `aud`)")
    deployment_ids: list[str] = Field(min_length=1, description="the deployments of the tool at this platform")
    auth_login_url: str = Field(description="the platform's OIDC authorisation endpoint")
    jwks_url: str = Field(description="the platform's public keys (JWKS)")
    token_url: str | None = Field(default=None, description="the platform's OAuth 2 token endpoint (AGS scores)")

    @field_validator("auth_login_url", "jwks_url", "token_url")
    @classmethod
    def _is_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value)


class Registry(BaseModel):
    """The platforms file (``LABCTL_LTI_PLATFORMS_FILE``): ``platforms: [...]``, issuers and names unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platforms: list[Platform] = Field(default_factory=list)

    @field_validator("platforms")
    @classmethod
    def _unique(cls, value: list[Platform]) -> list[Platform]:
        for attr in ("name", "issuer"):
            seen = [getattr(p, attr) for p in value]
            twice = sorted({v for v in seen if seen.count(v) > 1})
            if twice:
                raise ValueError(f"platform {attr}s must be unique: {', '.join(twice)}")
        return value

    def by_issuer(self, issuer: str, client_id: str | None = None) -> Platform:
        for platform in self.platforms:
            if platform.issuer == issuer and (client_id is None or platform.client_id == client_id):
                return platform
        raise LaunchRefused(f"the platform {issuer!r} (client {client_id or 'any'}) is not registered with labctl; "
                            "its administrator must add it to the LTI platforms file")

    def by_name(self, name: str) -> Platform:
        for platform in self.platforms:
            if platform.name == name:
                return platform
        raise LaunchRefused(f"no LTI platform is named {name!r}")


def load_registry(path: Path | None) -> Registry:
    """The registered platforms (none when ``path`` is None); a bad file raises ``ValueError`` naming it."""
    if path is None:
        return Registry()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Registry.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"the LTI platforms file {path} is not valid: {exc}") from exc


class Login(BaseModel):
    """The login initiation parameters labctl uses (others are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    iss: str = Field(min_length=1, max_length=2048)
    login_hint: str = Field(min_length=1, max_length=2048)
    target_link_uri: str = Field(min_length=1, max_length=2048)
    lti_message_hint: str | None = Field(default=None, max_length=4096)
    client_id: str | None = Field(default=None, max_length=2048)
    lti_deployment_id: str | None = Field(default=None, max_length=2048)


def authorization_url(platform: Platform, login: Login, *, redirect_uri: str, state: str, nonce: str) -> str:
    """Where the browser goes next: the platform's authorisation endpoint with the OIDC request for an id_token."""
    params = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
              "client_id": platform.client_id, "redirect_uri": redirect_uri, "login_hint": login.login_hint,
              "state": state, "nonce": nonce}
    if login.lti_message_hint is not None:
        params["lti_message_hint"] = login.lti_message_hint
    separator = "&" if urlsplit(platform.auth_login_url).query else "?"
    return f"{platform.auth_login_url}{separator}{urlencode(params)}"


class Launch(BaseModel):
    """What a verified launch says: who, from where, which lab, and where its grade goes."""

    model_config = ConfigDict(frozen=True)

    platform: str
    sub: str
    learner_id: str
    lab_id: str
    deployment_id: str
    resource_link_id: str
    name: str | None = None
    roles: list[str] = Field(default_factory=list)
    lineitem: str | None = Field(default=None, description="the AGS line item the score goes to")
    score_scope: bool = Field(default=False, description="whether the platform granted the AGS score scope")


def unverified_issuer(id_token: str) -> tuple[str, str | None]:
    """(``iss``, first ``aud``) of a token before its signature is checked: only to find whose keys check it."""
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise LaunchRefused(f"the launch's id_token is not a JWT: {exc}") from None
    issuer, audience = claims.get("iss"), claims.get("aud")
    if not isinstance(issuer, str):
        raise LaunchRefused("the launch's id_token names no issuer")
    first = audience[0] if isinstance(audience, list) and audience else audience
    return issuer, first if isinstance(first, str) else None


def verify(id_token: str, *, platform: Platform, key: Any, nonce: str, now: datetime) -> Launch:
    """The launch ``id_token`` says, checked as the Security Framework says (see the module docstring)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token, key, algorithms=["RS256"], audience=platform.client_id, issuer=platform.issuer,
            options={"require": ["iss", "aud", "exp", "iat", "nonce", "sub"],
                     "verify_exp": False, "verify_iat": False, "verify_nbf": False},  # checked below against `now`
        )
    except jwt.PyJWTError as exc:
        raise LaunchRefused(f"the launch's id_token does not verify: {exc}") from None
    if not all(isinstance(claims[k], int | float) for k in ("iat", "exp")):
        raise LaunchRefused("the launch's id_token has non-numeric iat or exp")
    if claims["iat"] > now.timestamp() + LEEWAY.total_seconds():
        raise LaunchRefused("the launch's id_token was issued in the future")
    if claims["exp"] < now.timestamp() - LEEWAY.total_seconds():
        raise LaunchRefused("the launch's id_token has expired")
    if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now.timestamp() + LEEWAY.total_seconds():
        raise LaunchRefused("the launch's id_token is not valid yet")
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != platform.client_id:
        raise LaunchRefused("the launch's id_token has several audiences and its azp is not labctl's client id")
    if claims["nonce"] != nonce:
        raise LaunchRefused("the launch's nonce is not the one this login was given")
    if claims.get(CLAIM + "message_type") != RESOURCE_LINK_REQUEST:
        raise LaunchRefused(f"labctl accepts only {RESOURCE_LINK_REQUEST} launches, not "
                            f"{claims.get(CLAIM + 'message_type')!r}")
    if claims.get(CLAIM + "version") != "1.3.0":
        raise LaunchRefused(f"labctl speaks LTI 1.3.0, not {claims.get(CLAIM + 'version')!r}")
    deployment = claims.get(CLAIM + "deployment_id")
    if deployment not in platform.deployment_ids:
        raise LaunchRefused(f"the deployment {deployment!r} is not registered for platform {platform.name}")
    link = claims.get(CLAIM + "resource_link")
    if not isinstance(link, dict) or not isinstance(link.get("id"), str) or not link["id"]:
        raise LaunchRefused("the launch names no resource link")
    custom = claims.get(CLAIM + "custom")
    lab_id = custom.get("lab_id") if isinstance(custom, dict) else None
    if not isinstance(lab_id, str) or not lab_id:
        raise LaunchRefused("the resource link has no custom parameter lab_id naming the lab to start; the "
                            "course's author must add lab_id=<lab> to the link")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise LaunchRefused("the launch names no user (an anonymous launch cannot start a sandbox)")
    ags = claims.get(AGS_CLAIM)
    ags = ags if isinstance(ags, dict) else {}
    lineitem = ags.get("lineitem")
    scopes = ags.get("scope")
    scopes = scopes if isinstance(scopes, list) else []
    roles = claims.get(CLAIM + "roles")
    return Launch(platform=platform.name, sub=sub, learner_id=learner_id_of(platform.name, sub), lab_id=lab_id,
                  deployment_id=deployment, resource_link_id=link["id"],
                  name=claims.get("name") if isinstance(claims.get("name"), str) else None,
                  roles=[r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [],
                  lineitem=_url(lineitem) if isinstance(lineitem, str) else None,
                  score_scope="https://purl.imsglobal.org/spec/lti-ags/scope/score" in scopes)


def learner_id_of(platform: str, sub: str) -> str:
    """The learner id of a platform's user: ``<platform>-<sub>`` when that is a valid learner id, else
    ``<platform>-`` and 20 hex digits of the sub's SHA-256 (stable, and distinct per platform either way)."""
    plain = f"{platform}-{sub}"
    if _LEARNER_ID.match(plain):
        return plain
    return f"{platform}-{hashlib.sha256(sub.encode()).hexdigest()[:20]}"
