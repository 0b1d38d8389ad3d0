"""Pure parts of warm pools: the ``pool`` field of a lab (warm count, schedule windows, refusals), the number a pool
keeps at fixed moments across a time zone's daylight-saving change, a pass's plan, and the lab hash."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from labctl.catalog.models import Lab, Pool
from labctl.service.pools import Member, lab_hash, plan
from labctl.settings import REPO_ROOT
from tests.support.sandbox import shipped_lab

MANIFESTS = REPO_ROOT / "manifests"
CLASS = {"warm": 2, "schedule": [{"window": "Mon-Fri 08:30-12:00 Europe/Paris", "warm": 50}]}


@pytest.mark.parametrize(("moment", "warm"), [
    (datetime(2026, 12, 1, 7, 30, tzinfo=UTC), 50),   # Tuesday 08:30 in Paris (winter, UTC+1): the class begins
    (datetime(2026, 12, 1, 7, 29, tzinfo=UTC), 2),    # a minute before
    (datetime(2026, 12, 1, 11, 0, tzinfo=UTC), 2),    # 12:00 in Paris: the end is excluded
    (datetime(2026, 6, 2, 6, 30, tzinfo=UTC), 50),    # Tuesday 08:30 in summer (UTC+2)
    (datetime(2026, 12, 5, 9, 0, tzinfo=UTC), 2),     # Saturday
])
def test_a_pool_keeps_its_windows_number_inside_and_its_warm_outside(moment: datetime, warm: int) -> None:
    assert Pool.model_validate(CLASS).warm_at(moment) == warm


def test_overlapping_windows_keep_the_larger_number() -> None:
    pool = Pool.model_validate({"schedule": [{"window": "Daily 08:00-18:00 UTC", "warm": 5},
                                             {"window": "Mon 09:00-10:00 UTC", "warm": 40}]})
    assert pool.warm_at(datetime(2026, 11, 30, 9, 15, tzinfo=UTC)) == 40
    assert pool.warm_at(datetime(2026, 11, 30, 11, 0, tzinfo=UTC)) == 5
    assert pool.warm_at(datetime(2026, 11, 30, 19, 0, tzinfo=UTC)) == 0


@pytest.mark.parametrize(("pool", "message"), [
    ({"warm": -1}, "greater than or equal to 0"),
    ({"warm": 501}, "less than or equal to 500"),
    ({"schedule": [{"window": "Mon-Fri 8:30-12:00 Europe/Paris", "warm": 5}]}, "bad time '8:30'"),
    ({"schedule": [{"window": "Mon-Fri 08:30-12:00 Mars/Olympus", "warm": 5}]}, "Mars/Olympus"),
    ({"schedule": [{"from": "08:30", "warm": 5}]}, "Extra inputs are not permitted"),
    ({"size": 3}, "Extra inputs are not permitted"),
])
def test_the_catalog_refuses_a_pool_it_cannot_keep_with_the_reason(pool: dict[str, object], message: str) -> None:
    data = shipped_lab("tag-for-showback").model_dump(mode="json") | {"pool": pool}
    data["limit_range"].pop("max", None)
    with pytest.raises(ValidationError, match=message):
        Lab.model_validate(data)


def test_a_cloud_lab_cannot_keep_a_pool() -> None:
    data = shipped_lab("aws-spot-and-tags").model_dump(mode="json") | {"pool": {"warm": 3}}
    with pytest.raises(ValidationError, match="`pool` keeps warm Kubernetes namespaces; a aws lab"):
        Lab.model_validate(data)


def member(i: int, *, state: str = "pooled", version: str = "now", hour: int = 8) -> Member:
    return Member(id=f"s{i}", state=state, pool_hash=version, ready_at=datetime(2026, 12, 1, hour, i, tzinfo=UTC))


def test_a_pass_makes_what_is_missing_counting_sandboxes_being_made() -> None:
    assert plan(members=[member(1), member(2, state="provisioning")], wanted=5, current_hash="now").make == 3
    assert plan(members=[], wanted=0, current_hash="now") == plan(members=[], wanted=0, current_hash="now")


def test_a_pass_drains_the_stale_and_the_newest_beyond_the_number_wanted() -> None:
    members = [member(1), member(2), member(3), member(4, version="old"), member(5, state="provisioning")]
    decided = plan(members=members, wanted=2, current_hash="now")
    assert decided.make == 0
    assert set(decided.drain) == {"s4", "s3", "s2"}  # stale s4; of the fresh, the newest two beyond 2 (s5 is made)


def test_the_lab_hash_follows_the_definition_and_templates_but_not_the_pool(tmp_path: Path) -> None:
    lab = shipped_lab("tag-for-showback")
    base = lab_hash(lab, MANIFESTS)
    assert lab_hash(lab.model_copy(update={"pool": Pool(warm=9)}), MANIFESTS) == base
    assert lab_hash(lab.model_copy(update={"summary": "reworded"}), MANIFESTS) != base
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    assert lab_hash(lab, copy) == base
    quota = copy / "sandbox" / "10-quota.yaml.j2"
    quota.write_text(quota.read_text() + "\n")
    assert lab_hash(lab, copy) != base


def test_a_pooled_sandbox_whose_namespace_vanished_is_drained_and_replaced() -> None:
    lost = Member(id="s9", state="pooled", pool_hash="now", ready_at=None, present=False)
    decided = plan(members=[member(1), lost], wanted=2, current_hash="now")
    assert decided.drain == ("s9",) and decided.make == 1
