"""GCP sessions through the use cases, on the fake Compute server and a real store (SQLite and PostgreSQL).

A budget crossed by the starter's running GPU instance stops it within one sweep and a grant starts it again; a
destroy leaves nothing labelled; a leftover the cloud kept (a fault injected in the fake) keeps the session
``cleanup_pending`` with an event, never ``terminated``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from labctl.providers.gcp.sandbox import GcpSandboxes
from labctl.providers.router import ProviderRouter
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.store.db import Store
from labctl.store.models import SessionEvent
from tests.support import gcp
from tests.support.cloud_world import CloudWorld, cloud_world
from tests.support.gce_fake import GceFake
from tests.support.stores import clean_store

INSTRUCTOR = Principal(name="instructor", role="instructor")
ZONE = gcp.ZONES[0]


@dataclass
class World(CloudWorld):
    gce: GceFake


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db")
    yield s
    s.engine.dispose()


@pytest.fixture
def world(store: Store, provider: GcpSandboxes, gce: GceFake) -> World:
    lab = gcp.gcp_lab(budget={"usd": 1, "thresholds": [{"percent": 100, "action": "suspend"}]},
                      time={"limit": "4h", "max_extension": "1h"})
    return World(**vars(cloud_world(store, lab, provider)), gce=gce)


def _status(world: World, name: str) -> str | None:
    found = world.gce.instance(gcp.PROJECT, ZONE, name)
    return None if found is None else str(found["status"])


def _events(world: World, session_id: str) -> list[SessionEvent]:
    with world.sessions.store.session() as db:
        return list(db.scalars(select(SessionEvent).where(SessionEvent.session_id == session_id)))


def test_the_gpu_over_budget_is_stopped_in_one_sweep_and_started_by_a_grant(world: World) -> None:
    row, made = world.sessions.start(lab_id="gcp-test", learner_id="ada", principal=INSTRUCTOR)
    assert made and row.state == "ready" and row.provider == "gcp"
    gpu = gcp.starter_name("trainer-a100", row.id)
    assert _status(world, gpu) == "RUNNING"

    world.sweeper.run_once()  # first reading: the A100's $3.673/h and its disks, nothing accrued yet
    burn = world.sessions.row_of(row.id).burn_rate_usd_per_hour
    # the 10 GB boot disk (the fake's default pd-standard) and the 200 GB pd-balanced scratch disk, by type
    assert burn is not None and float(burn) == pytest.approx(3.673 + (10 * 0.04 + 200 * 0.10) / 730)
    world.clock.now += timedelta(minutes=20)  # $1.22 of a $1 budget
    report = world.sweeper.run_once()

    assert (row.id, "suspend") in [(s, kind) for s, kind, _ in report.actions]
    current = world.sessions.row_of(row.id)
    assert current.state == "suspended" and current.suspend_reason == "budget"
    assert _status(world, gpu) == "TERMINATED"
    suspended = [e for e in _events(world, row.id) if e.detail and "stopped" in e.detail]
    assert suspended and suspended[-1].detail["stopped"] == f"1 instance(s) stopped: {gpu}"  # in cloud words
    world.sessions.grant(lab_id="gcp-test", learner_id="ada", attempts=0, usd=Decimal(5), reason="more GPU time",
                         principal=INSTRUCTOR)
    assert world.sessions.row_of(row.id).state == "ready"
    assert _status(world, gpu) == "RUNNING"


def test_stop_destroys_everything_labelled(world: World) -> None:
    row, _ = world.sessions.start(lab_id="gcp-test", learner_id="cy", principal=INSTRUCTOR)
    who = gcp.learner(world.sessions.credentials(row.id, principal=INSTRUCTOR))
    who.launch(gcp.starter_name("extra", row.id), spot=True, labels=gcp.OWNER)
    world.sessions.stop(row.id, principal=INSTRUCTOR)
    assert world.sessions.finish_stop(row.id, actor="test").state == "terminated"
    suffix = gcp.starter_name("", row.id)
    assert [n for n in world.gce.all_names(gcp.PROJECT) if n.endswith(suffix)] == []


def test_a_leftover_keeps_the_session_cleanup_pending(world: World) -> None:
    row, _ = world.sessions.start(lab_id="gcp-test", learner_id="bo", principal=INSTRUCTOR)
    disk = gcp.starter_name("scratch-old", row.id)
    world.gce.keep_on_delete(disk)  # FAULT: GCE answers the delete DONE, and the disk stays

    world.sessions.stop(row.id, principal=INSTRUCTOR)
    after = world.sessions.finish_stop(row.id, actor="test")

    assert after.state == "terminating" and after.cleanup_pending
    failed = [e for e in _events(world, row.id) if e.kind == "cleanup_failed"]
    assert failed and f"Volume/{ZONE}/{disk}" in str(failed[-1].detail)
    world.gce.heal()
    assert world.sessions.finish_stop(row.id, actor="test").state == "terminated"


def test_provider_refusals_reach_the_caller_with_the_provider_s_message(world: World, store: Store) -> None:
    """A provider's refusal is a Conflict (answered as a problem document) carrying the provider's message."""
    from labctl.errors import Conflict

    row, _ = world.sessions.start(lab_id="gcp-test", learner_id="di", principal=INSTRUCTOR)
    assert row.state == "ready"
    no_endpoint = GcpSandboxes(project=gcp.PROJECT)
    bare = Sessions(store=store, provider=ProviderRouter({"gcp": lambda: no_endpoint}, in_use={"gcp"}),
                    catalog=world.sessions.catalog, clock=world.clock, holder="test")
    with pytest.raises(Conflict, match="only for a configured Compute endpoint"):
        bare.credentials(row.id, principal=INSTRUCTOR)
