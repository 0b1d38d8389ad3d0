"""LTI 1.3: a platform's launch starts or resumes the learner's session, and its grade goes back to the line item.

:class:`Launches` carries out the login and the launch of :mod:`labctl.outbox.launch`: the login flow's ``state`` and
``nonce`` are kept in the store (``lti_flows``) and used once (a compare-and-set), the ``id_token`` is checked with
the platform's keys (fetched from its JWKS by the ``keys`` callable the composition root gives, which caches them),
and the verified launch starts the learner's session for the lab (or finds its live one) as the platform, records the
launch with its AGS line item; the browser then lands on the session's learner page.

:class:`ScorePassback` owes every graded submission of a launched session to its line item: each pass first turns
``submission.graded`` events of the outbox into ``lti_scores`` rows (the event is committed with the grade, so no
grade is missed whatever crashes between), then sends the due ones (AGS, :func:`labctl.outbox.lti.publish_score`)
and records the outcome with the webhooks' retry schedule, so a platform that is down gets the score later, once.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update

from labctl.outbox import UpstreamError, schedule
from labctl.outbox import launch as protocol
from labctl.outbox.lti import publish_score
from labctl.outbox.toolkey import ToolKey
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.store.db import Store
from labctl.store.lti_models import LtiFlow, LtiLaunch, LtiScore
from labctl.store.models import SandboxSession
from labctl.store.webhook_models import OutboxEvent

log = logging.getLogger("labctl.lti")

KeyResolver = Callable[[protocol.Platform, str], Any]
"""(platform, id_token) -> the platform's public key that signed the token (by its ``kid``)."""

SEND_LEASE = timedelta(minutes=2)
MAX_SCORES_PER_PASS = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


class Launches:
    def __init__(self, *, store: Store, sessions: Sessions, registry: protocol.Registry, keys: KeyResolver,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.sessions = sessions
        self.registry = registry
        self.keys = keys
        self.clock = clock

    def login(self, login: protocol.Login, *, redirect_uri: str) -> tuple[str, str]:
        """(the platform's authorisation URL to redirect to, the ``state`` to set in the browser's cookie)."""
        platform = self.registry.by_issuer(login.iss, login.client_id)
        if login.lti_deployment_id is not None and login.lti_deployment_id not in platform.deployment_ids:
            raise protocol.LaunchRefused(f"the deployment {login.lti_deployment_id!r} is not registered for "
                                         f"platform {platform.name}")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.session() as db:
            db.execute(delete(LtiFlow).where(LtiFlow.expires_at < now - protocol.FLOW_LIFETIME))
            db.add(LtiFlow(state=state, nonce=nonce, platform=platform.name, created_at=now,
                           expires_at=now + protocol.FLOW_LIFETIME))
        return protocol.authorization_url(platform, login, redirect_uri=redirect_uri, state=state,
                                          nonce=nonce), state

    def launch(self, *, id_token: str, state: str, browser_state: str | None) -> SandboxSession:
        """Verify the launch, then start the learner's session for the lab or find its live one."""
        if not browser_state or not secrets.compare_digest(browser_state, state):
            raise protocol.LaunchRefused("this launch did not start in this browser (its state cookie is missing or "
                                         "different): open the link from the course again")
        issuer, audience = protocol.unverified_issuer(id_token)
        platform = self.registry.by_issuer(issuer, audience)
        now = self.clock()
        with self.store.session() as db:
            flow = db.get(LtiFlow, state)
            taken = db.execute(update(LtiFlow).where(LtiFlow.state == state, LtiFlow.used_at.is_(None),
                                                     LtiFlow.expires_at > now, LtiFlow.platform == platform.name)
                               .values(used_at=now)).rowcount  # type: ignore[attr-defined]
            nonce = flow.nonce if flow is not None else None
        if not taken or nonce is None:
            raise protocol.LaunchRefused("this launch's login is unknown, used already or expired: open the link "
                                         "from the course again")
        try:
            key = self.keys(platform, id_token)
        except Exception as exc:  # the JWKS client raises its own family; any failure means: cannot verify
            raise protocol.LaunchRefused(f"the keys of platform {platform.name} could not be read to check the "
                                         f"launch: {exc}") from None
        claims = protocol.verify(id_token, platform=platform, key=key, nonce=nonce, now=now)
        principal = Principal(name=f"lti:{platform.name}", role="platform")
        row, created = self.sessions.start(lab_id=claims.lab_id, learner_id=claims.learner_id, principal=principal)
        with self.store.session() as db:
            db.add(LtiLaunch(session_id=row.id, platform=platform.name, sub=claims.sub, learner_id=claims.learner_id,
                             lab_id=claims.lab_id, deployment_id=claims.deployment_id,
                             resource_link_id=claims.resource_link_id, name=claims.name,
                             lineitem=claims.lineitem if claims.score_scope else None, created_at=now))
        log.info("lti launch from %s: session %s %s for learner %s", platform.name, row.id,
                 "started" if created else "resumed", claims.learner_id)
        return row


class ScorePassback:
    def __init__(self, *, store: Store, registry: protocol.Registry, key: ToolKey,
                 http: Callable[[], httpx.Client], clock: Callable[[], datetime] = utcnow,
                 wall_clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None) -> None:
        """``clock`` decides what is due (a test may move it); ``wall_clock`` stamps what the LMS checks against its
        own clock (the client assertion's ``iat``/``exp``, the score's timestamp)."""
        self.store = store
        self.registry = registry
        self.key = key
        self.http = http
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def run_once(self) -> int:
        """Owe new grades, send the due scores; returns how many were delivered."""
        self.owe()
        delivered = 0
        for score, launch, attempts in self._claim():
            delivered += self._send(score, launch, attempts)
        return delivered

    def owe(self) -> int:
        """A ``lti_scores`` row for every graded submission of a launched session not owed yet."""
        with self.store.session() as db:
            owed = select(LtiScore.event_id)
            launched = select(LtiLaunch.session_id).where(LtiLaunch.lineitem.is_not(None))
            events = db.scalars(select(OutboxEvent).where(OutboxEvent.type == "submission.graded",
                                                          OutboxEvent.session_id.in_(launched),
                                                          OutboxEvent.id.not_in(owed))
                                .order_by(OutboxEvent.id).limit(MAX_SCORES_PER_PASS)).all()
            for event in events:
                launch = db.scalars(select(LtiLaunch).where(LtiLaunch.session_id == event.session_id,
                                                            LtiLaunch.lineitem.is_not(None))
                                    .order_by(LtiLaunch.id.desc()).limit(1)).one()
                data: dict[str, Any] = event.payload.get("data") or {}  # type: ignore[assignment]
                checks = data.get("checks")
                db.add(LtiScore(event_id=event.id, launch_id=launch.id, session_id=str(event.session_id),
                                score=float(data["score"]), max_score=float(data["max_score"]),
                                comment=_comment(checks), state="pending", attempts=0,
                                next_attempt_at=event.created_at, created_at=self.clock()))
            return len(events)

    def _claim(self) -> list[tuple[LtiScore, LtiLaunch, int]]:
        """The due scores this pass won (compare-and-set on the attempt count), each with its attempt number."""
        now = self.clock()
        claimed: list[tuple[LtiScore, LtiLaunch, int]] = []
        with self.store.session() as db:
            due = db.scalars(select(LtiScore).where(LtiScore.state.in_(("pending", "failed")),
                                                    LtiScore.next_attempt_at <= now)
                             .order_by(LtiScore.next_attempt_at).limit(MAX_SCORES_PER_PASS)).all()
            for score in due:
                attempts = score.attempts + 1
                won = db.execute(update(LtiScore).where(LtiScore.event_id == score.event_id,
                                                        LtiScore.attempts == attempts - 1,
                                                        LtiScore.state.in_(("pending", "failed")))
                                 .values(attempts=attempts, next_attempt_at=now + SEND_LEASE)
                                 ).rowcount  # type: ignore[attr-defined]
                if won:
                    launch = db.get(LtiLaunch, score.launch_id)
                    if launch is not None:
                        claimed.append((score, launch, attempts))
        return claimed

    def _send(self, score: LtiScore, launch: LtiLaunch, attempts: int) -> int:
        error: str | None = None
        try:
            platform = self.registry.by_name(launch.platform)
            if platform.token_url is None or launch.lineitem is None:
                raise UpstreamError(f"platform {platform.name} has no token_url: its scores cannot be sent")
            with self.http() as client:
                publish_score(lineitem_url=launch.lineitem, token_url=platform.token_url,
                              client_id=platform.client_id, private_key_pem=self.key.private_pem, kid=self.key.kid,
                              user_id=launch.sub, score=score.score, max_score=score.max_score,
                              comment=score.comment, now=self.wall_clock(), http=client)
        except (UpstreamError, protocol.LaunchRefused, ValueError) as exc:
            error = str(exc)[:2000]
        now = self.clock()
        values: dict[str, Any]
        if error is None:
            values = {"state": "delivered", "delivered_at": now, "last_error": None, "next_attempt_at": None}
            log.info("lti score %.2f/%.2f of session %s delivered to %s", score.score, score.max_score,
                     score.session_id, launch.platform)
        else:
            following = schedule.next_attempt(attempts, now, self.rng)
            values = {"state": "failed" if following else "dead", "next_attempt_at": following, "last_error": error}
            log.warning("lti score of session %s not delivered (attempt %d): %s", score.session_id, attempts, error)
        with self.store.session() as db:
            db.execute(update(LtiScore).where(LtiScore.event_id == score.event_id,
                                              LtiScore.attempts == attempts).values(**values))
        return 1 if error is None else 0


def _comment(checks: object) -> str | None:
    """One line per check for the LMS gradebook: ``title: score/max``."""
    if not isinstance(checks, list):
        return None
    lines = [f"{c.get('title', c.get('id', 'check'))}: {c.get('score', 0):g}/{c.get('max_score', 0):g}"
             for c in checks if isinstance(c, dict)]
    return "\n".join(lines)[:4000] or None
