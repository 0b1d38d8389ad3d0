"""Fixtures the adversarial tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.localcluster.cluster import LocalCluster
from tests.sweeps.test_meter_and_timers import World, _stop_all, _world


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    """The app on the live cluster with a fake clock and no background jobs (the test sweeps); every session it
    started is stopped afterwards. A module with a world of its own defines its own ``world``."""
    w = _world(tmp_path, local_cluster)
    with w.client:
        yield w
        _stop_all(w)
