"""A cloud lab's sessions through the use cases, for the AWS and GCP session tests: one provider behind the router,
a real store, the sweeper with the shipped price sheet, and a fake clock (time is the one part tests must own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from labctl.catalog.models import Lab
from labctl.cost.prices import load_sheet
from labctl.ports import SandboxProvider
from labctl.providers.router import ProviderRouter
from labctl.service.sessions import Sessions
from labctl.service.sweeps import Sweeper
from labctl.settings import REPO_ROOT
from labctl.store.db import Store
from tests.support.clock import FakeClock


@dataclass
class CloudWorld:
    sessions: Sessions
    sweeper: Sweeper
    clock: FakeClock


def cloud_world(store: Store, lab: Lab, provider: SandboxProvider) -> CloudWorld:
    """``lab``'s sessions on ``provider`` (registered under the lab's provider name), starting now."""
    clock = FakeClock(datetime.now(UTC))
    router = ProviderRouter({lab.provider: lambda: provider}, in_use={lab.provider})
    sessions = Sessions(store=store, provider=router, catalog={lab.id: lab}, clock=clock, holder="test")
    sheet = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    return CloudWorld(sessions=sessions, sweeper=Sweeper(sessions=sessions, prices=lambda: sheet), clock=clock)
