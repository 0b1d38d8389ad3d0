"""Group commit: the writes that wait at one moment go into the store in one transaction.

A burst of callers each wanting one small write transaction (a class of starts each claiming a pooled sandbox) would
take the store's write turn one after another: on SQLite one writer at a time, each holding the turn while it waits
for the CPU among all the others. A :class:`GroupCommit` lets the first caller write alone; the callers that arrive
while it writes queue, and the first of them to wake writes the whole queue in one transaction (``together``), and so
on: the number of serial transactions is the number of moments the callers waited at, not the number of callers.

A batch that fails is rolled back whole, then each of its requests is written by itself (``alone``), so one
request's error (a unique key another caller took, a row changed meanwhile) stays that request's and the others'
writes still commit. ``together`` and ``alone`` therefore only read and write the store (running a request again
after a rollback is safe), and ``together`` undoes whatever else it did when it raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")
A = TypeVar("A")


@dataclass
class _Waiting(Generic[R, A]):
    request: R
    done: bool = False
    answer: A | None = None
    error: BaseException | None = None


class GroupCommit(Generic[R, A]):
    """Writes requests of type ``R``, answering each with an ``A``: ``together(requests)`` writes a queue in one
    transaction and answers each in order; ``alone(request)`` writes one."""

    def __init__(self, *, together: Callable[[Sequence[R]], list[A]], alone: Callable[[R], A]) -> None:
        self._together = together
        self._alone = alone
        self._cond = threading.Condition()
        self._queue: list[_Waiting[R, A]] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """How many requests wait for the next batch."""
        with self._cond:
            return len(self._queue)

    def __call__(self, request: R) -> A:
        """Write ``request`` (with whatever else waits now); its answer, or its error raised here."""
        mine: _Waiting[R, A] = _Waiting(request)
        batch: list[_Waiting[R, A]] = []
        with self._cond:
            self._queue.append(mine)
            while self._writing and not mine.done:
                self._cond.wait()
            if not mine.done:  # nobody is writing and this request still waits: this caller writes the queue
                batch, self._queue, self._writing = self._queue, [], True
        if batch:
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.answer  # type: ignore[return-value]  # done without an error: an answer of type A

    def _write(self, batch: list[_Waiting[R, A]]) -> None:
        try:
            if len(batch) > 1:
                try:
                    answers = self._together([w.request for w in batch])
                except Exception:  # rolled back whole: each request is written again by itself
                    answers = None
                if answers is not None:
                    for waiting, answer in zip(batch, answers, strict=True):
                        waiting.answer, waiting.done = answer, True
                    return
            for waiting in batch:
                try:
                    waiting.answer = self._alone(waiting.request)
                except Exception as exc:  # this request's error, raised to its caller
                    waiting.error = exc
                waiting.done = True
        finally:
            for waiting in batch:  # an interpreter-level interruption: nobody waits for ever
                if not waiting.done:
                    waiting.error, waiting.done = RuntimeError("the group write was interrupted"), True
