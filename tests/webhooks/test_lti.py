"""LTI 1.3 AGS grade passback against the local LMS stand-in (``tests/support/lms.py``, a real HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from labctl.outbox import UpstreamError
from labctl.outbox.lti import publish_score, scores_url
from tests.support.lms import CLIENT_ID, Lms, running

KID = "labctl-2026"


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def tool_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def lms(tool_key: rsa.RSAPrivateKey) -> Iterator[Lms]:
    with running(Lms(tool_public_key=tool_key.public_key(), tool_kid=KID)) as stand_in:
        yield stand_in


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
    closed = Lms(tool_public_key=tool_key.public_key(), tool_kid=KID)
    with pytest.raises(UpstreamError, match="did not answer the token request"):
        _publish(closed, tool_key)
    with pytest.raises(ValueError, match="outside"):
        _publish(closed, tool_key, score=11)
    with pytest.raises(ValueError, match="positive"):
        _publish(closed, tool_key, max_score=0)


def test_scores_url_keeps_the_query() -> None:
    assert scores_url("https://lms.example/li/7") == "https://lms.example/li/7/scores"
    assert scores_url("https://lms.example/li/7/?a=1") == "https://lms.example/li/7/scores?a=1"
