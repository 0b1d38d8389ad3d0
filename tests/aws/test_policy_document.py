"""The policy documents as data: the fence's own checks and IAM's size limit for inline policies."""

from __future__ import annotations

import pytest

from labctl.providers.aws import policy


def test_a_fence_needs_a_session_a_region_and_a_type() -> None:
    with pytest.raises(ValueError, match="needs the session id"):
        policy.Fence("", ("us-east-1",), ("m5.large",))
    with pytest.raises(ValueError, match="at least one region and one instance type"):
        policy.Fence("s", (), ("m5.large",))


def test_a_large_lab_fits_and_a_too_large_document_is_refused_by_name() -> None:
    fence = policy.Fence("lab-" + "x" * 40, ("us-east-1", "us-west-2", "eu-west-1"),
                         tuple(f"m5.{n}xlarge" for n in range(30)))
    assert len(policy.text(policy.session_policy(fence))) < 10240
    huge = policy.Fence("s", ("us-east-1",), tuple(f"type{n}.xlarge" for n in range(700)))
    with pytest.raises(ValueError, match=r"IAM's limit for a role's inline policies is 10240"):
        policy.text(policy.session_policy(huge))


def test_the_frozen_policy_allows_only_reads() -> None:
    doc = policy.frozen_policy(policy.Fence("s", ("us-east-1",), ("m5.large",)))
    allowed = [a for st in doc["Statement"] if st["Effect"] == "Allow" for a in st["Action"]]
    assert allowed == list(policy.READ_ACTIONS)
