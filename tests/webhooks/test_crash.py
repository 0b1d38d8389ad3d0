"""Killing the dispatcher in the middle loses nothing: SIGKILL a dispatcher process mid-run, start another one.

Messages the killed process had claimed but not recorded become due again when its lease ends, so the receiver may
see some twice (same ``webhook-id``: it de-duplicates), but every event arrives, and in order per session.

Each dispatcher's log goes to a file (an unread pipe would stop a chatty child once it fills); when delivery does not
finish, the failure shows the rows still open and the tail of both logs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from labctl.outbox.endpoints import Webhooks
from labctl.outbox.events import emit
from labctl.store.db import Store
from tests.webhooks.conftest import LOOPBACK, Clock
from tests.webhooks.helpers import deliveries
from tests.webhooks.receiver import Arrival, Receiver

REPO = Path(__file__).resolve().parents[2]
TYPES = ("session.ready", "budget.threshold_crossed", "session.suspended", "session.terminated")


def _child(store_url: str, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tests.webhooks.dispatcher_child", store_url], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "dispatching", f"the dispatcher process did not start: {_tail(log)}"
    return proc


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text() if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"


def _open_rows(store: Store) -> str:
    rows = [d for d in deliveries(store) if d.state != "delivered"]
    shown = "\n".join(f"  #{d.id} {d.session_id} {d.state} attempts={d.attempts} next={d.next_attempt_at} "
                      f"last={d.last_status} {d.last_error or ''}" for d in rows[:20])
    return f"{len(rows)} deliveries open:\n{shown}"


def _wait(condition, timeout: float, what: str, describe=lambda: "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s\n{describe()}")


def test_sigkill_mid_run_loses_no_event(store: Store, store_url: str, clock: Clock, tmp_path: Path) -> None:
    first: subprocess.Popen[str] | None = None
    second: subprocess.Popen[str] | None = None
    killed = threading.Event()

    def kill_while_a_request_is_open(arrival: Arrival) -> int:
        # The receiver pulls the plug while it holds one of the dispatcher's requests: a crash mid-delivery.
        if not killed.is_set() and first is not None and len(receiver.accepted) >= kill_after:
            first.send_signal(signal.SIGKILL)
            killed.set()
        return 200

    receiver = Receiver(delay_s=0.005, status=kill_while_a_request_is_open).start()
    try:
        endpoint = Webhooks(store, targets=LOOPBACK, clock=clock).create(url=receiver.url, events="*")
        receiver.secrets.append(endpoint.secret)
        emitted: dict[str, list[str]] = {}
        with store.session() as db:
            for step in range(len(TYPES) * 10):
                for s in range(12):
                    session = f"s-{s}"
                    event = emit(db, type=TYPES[step % len(TYPES)], data={"session_id": session, "step": step},
                                 session_id=session, now=clock())
                    emitted.setdefault(session, []).append(event.id)
        total = sum(len(v) for v in emitted.values())
        kill_after = total // 4

        logs = (tmp_path / "first.log", tmp_path / "second.log")
        first = _child(store_url, logs[0])
        _wait(killed.is_set, 60, "the kill a quarter of the way through", lambda: _tail(logs[0]))
        assert first.wait(timeout=30) == -signal.SIGKILL
        undelivered = [d for d in deliveries(store) if d.state != "delivered"]
        assert len(undelivered) >= total - kill_after - 16, "the dispatcher was not killed mid-run"
        assert any(d.attempts > 0 for d in undelivered), "no delivery was in flight when the process died"

        second = _child(store_url, logs[1])
        _wait(lambda: all(d.state == "delivered" for d in deliveries(store)), 120, "delivery of every event",
              lambda: f"{_open_rows(store)}\nfirst dispatcher:\n{_tail(logs[0])}\nsecond:\n{_tail(logs[1])}")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        receiver.stop()

    assert all(a.verified for a in receiver.arrivals)
    unique = receiver.unique()
    assert sorted(a.msg_id for a in unique) == sorted(m for ids in emitted.values() for m in ids)
    for session, ids in emitted.items():
        arrived = [a.msg_id for a in unique if a.event["data"]["session_id"] == session]
        assert arrived == ids, f"{session} arrived out of order"
    duplicates = len(receiver.accepted) - len(unique)
    assert duplicates <= 16, f"{duplicates} duplicates: more than one claim's worth was resent"
