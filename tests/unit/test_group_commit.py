"""Group commit without a store: the requests that queue while a batch is written are written together in the next
one, each answered in order; a batch that fails is written again one request at a time, so one request's error is
raised to its caller alone and the others still get their answers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from labctl.store.group_commit import GroupCommit
from tests.support.wait import eventually


class Log:
    """What the fake writer (no store: these tests are about the queue) was asked to write, batch by batch."""

    def __init__(self, *, bad: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()  # the first write waits for it, so that the others queue behind it
        self.bad = bad

    def together(self, requests: Sequence[str]) -> list[str]:
        self.batches.append(list(requests))
        if self.bad in requests:
            raise ValueError(f"{self.bad} cannot be written")
        return [r.upper() for r in requests]

    def alone(self, request: str) -> str:
        self.batches.append([request])
        self.gate.wait()
        if request == self.bad:
            raise ValueError(f"{request} cannot be written")
        return request.upper()


def queue_behind_a_write(log: Log, later: list[str]) -> list[Future[str]]:
    group = GroupCommit(together=log.together, alone=log.alone)
    pool = ThreadPoolExecutor(max_workers=len(later) + 1)
    first = pool.submit(group, "first")
    eventually(lambda: log.batches == [["first"]], timeout=30, interval=0.01)
    rest = []
    for request in later:
        rest.append(pool.submit(group, request))
        eventually(lambda n=len(rest): group.waiting == n, timeout=30, interval=0.01)
    log.gate.set()
    pool.shutdown(wait=True)
    return [first, *rest]


def test_the_requests_waiting_at_one_moment_are_one_batch_answered_in_order() -> None:
    log = Log()
    answers = queue_behind_a_write(log, ["a", "b", "c", "d"])
    assert [f.result() for f in answers] == ["FIRST", "A", "B", "C", "D"]
    assert log.batches == [["first"], ["a", "b", "c", "d"]], "one write alone, then the queue in one batch"


def test_a_failed_batch_is_written_one_request_at_a_time_and_the_error_is_its_requests_alone() -> None:
    log = Log(bad="b")
    answers = queue_behind_a_write(log, ["a", "b", "c"])
    assert log.batches == [["first"], ["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert [answers[i].result() for i in (0, 1, 3)] == ["FIRST", "A", "C"]
    with pytest.raises(ValueError, match="b cannot be written"):
        answers[2].result()


def test_a_lone_request_is_written_alone() -> None:
    log = Log()
    log.gate.set()
    group = GroupCommit(together=log.together, alone=log.alone)
    assert group("x") == "X" and group("y") == "Y"
    assert log.batches == [["x"], ["y"]] and group.waiting == 0
