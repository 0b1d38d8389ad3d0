"""Fixtures of the GCP tests: the fake Compute server (session scoped) and labctl's GCP provider pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labctl.providers.gcp.sandbox import GcpSandboxes
from tests.support import gce_fake
from tests.support.gcp import PROJECT


@pytest.fixture(scope="session")
def gce() -> Iterator[gce_fake.GceFake]:
    with gce_fake.serve() as fake:
        yield fake


@pytest.fixture
def provider(gce: gce_fake.GceFake) -> Iterator[GcpSandboxes]:
    gce.heal()
    yield GcpSandboxes(project=PROJECT, endpoint_url=gce.url)
    gce.heal()
