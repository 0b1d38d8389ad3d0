"""A grading process for the kill test: ``python -m tests.grading.replay_child SETTINGS_JSON SUBMISSION NOW``.

It builds labctl's runtime over the test's store and cluster, with the test's fake clock starting at ``NOW`` and
moved by the replay's sleeps (as the test's own world does), and grades the submission; the test kills it with
SIGKILL mid-replay.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from labctl import runtime
from labctl.settings import Settings
from tests.support.clock import FakeClock


def main() -> None:
    settings = Settings(**json.loads(sys.argv[1]))
    rt = runtime.build(settings)
    clock = FakeClock(datetime.fromisoformat(sys.argv[3]))
    rt.sessions.clock = clock

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        clock.advance(seconds=seconds)

    rt.submissions.replayer.sleep = sleep
    print("grading", flush=True)
    rt.submissions.grade(sys.argv[2])


if __name__ == "__main__":
    main()
