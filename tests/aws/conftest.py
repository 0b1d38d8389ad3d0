"""Fixtures of the AWS tests: labctl's AWS provider on the session's moto server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from labctl.providers.aws.sandbox import AwsSandboxes
from tests.support import aws
from tests.support.moto import TEST_ENV


@pytest.fixture(scope="session", autouse=True)
def _test_keys() -> Iterator[None]:
    """moto's documented test keys in the environment, so no real credentials on the machine are ever used."""
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def provider(moto_url: str) -> AwsSandboxes:
    return AwsSandboxes(region=aws.REGIONS[0], endpoint_url=moto_url, session_factory=aws.admin_session)


@pytest.fixture
def admin_ec2(moto_url: str) -> Any:
    return aws.admin_session().client("ec2", endpoint_url=moto_url)
