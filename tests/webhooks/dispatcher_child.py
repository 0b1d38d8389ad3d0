"""A dispatcher process for the crash test: ``python -m tests.webhooks.dispatcher_child STORE_URL``.

It sweeps the outbox with :meth:`Dispatcher.run_forever` until SIGTERM (a clean stop) or SIGKILL (a crash, which is
the point of the test). Short leases keep the test fast; an attempt is still allowed 3 s per phase, so a busy machine
does not fail one (a re-claimed delivery that fails waits up to 10 minutes for its next attempt, past the test's wait).
"""

from __future__ import annotations

import signal
import sys
import threading

from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.targets import TargetPolicy
from labctl.store.db import open_store


def main() -> None:
    store = open_store(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    loopback = TargetPolicy.from_entries(["127.0.0.1/32"])  # the test's receiver
    with Dispatcher(store, targets=loopback, attempt_timeout_s=3.0, lease_margin_s=1.0, claim_rounds=1,
                    per_endpoint_concurrency=4, batch_size=16) as dispatcher:
        print("dispatching", flush=True)
        dispatcher.run_forever(stop, interval_s=0.05)
    store.engine.dispose()


if __name__ == "__main__":
    main()
