"""The readiness decision: ready only when every probe passes; every failure is named."""

from __future__ import annotations

from labctl.service import health


def _boom() -> str:
    raise RuntimeError("connection refused")


def test_all_probes_pass() -> None:
    result = health.check({"store": lambda: "sqlite", "cluster": lambda: None})
    assert result.ready
    assert result.checks["store"].detail == "sqlite"
    assert result.checks["cluster"].detail == "ok"


def test_one_failure_makes_it_not_ready_and_is_reported() -> None:
    result = health.check({"store": lambda: "ok", "cluster": _boom})
    assert not result.ready
    assert result.checks["cluster"].ok is False
    assert result.checks["cluster"].detail == "connection refused"
    assert result.checks["store"].ok is True


def test_no_probes_is_not_ready() -> None:
    assert not health.check({}).ready


def test_of_interchangeable_clusters_one_answering_is_enough_but_not_none() -> None:
    clusters = frozenset({"cluster", "cluster:gpu"})
    one_down = health.check({"store": lambda: "ok", "cluster": _boom, "cluster:gpu": lambda: "v1"}, any_of=clusters)
    assert one_down.ready and not one_down.checks["cluster"].ok
    both_down = health.check({"store": lambda: "ok", "cluster": _boom, "cluster:gpu": _boom}, any_of=clusters)
    assert not both_down.ready
    store_down = health.check({"store": _boom, "cluster": lambda: "v1"}, any_of=clusters)
    assert not store_down.ready
