"""A hostile grader that leaves a double-forked grandchild behind, in a session of its own, to outlive its limits.

The grandchild (a Python process whose command line carries ``params["token"]``, so the test can find it on the
host) sleeps ``params["sleep_s"]`` and then writes ``params["marker"]``. The grader itself then either exits at once
(``mode: exit``: the grade looks fine while the grandchild lives on) or hangs past its time limit (``mode: hang``).
"""

from __future__ import annotations

import json
import os
import sys
import time

LATE = "import sys, time\ntime.sleep(float(sys.argv[1]))\nopen(sys.argv[2], 'w').write('outlived the grader\\n')\n"


def main() -> None:
    params = json.load(sys.stdin)["params"]
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:  # the grandchild: a process of its own, in a session of its own
            argv = [sys.executable, "-c", LATE, str(params["sleep_s"]), params["marker"], params["token"]]
            os.execv(sys.executable, argv)  # noqa: S606
        os._exit(0)
    os.waitpid(child, 0)
    if params["mode"] == "hang":
        time.sleep(3600)
    json.dump({"checks": [{"id": "linger", "title": "Left a grandchild behind", "passed": True, "score": 1,
                           "max_score": 1, "feedback": f"uid {os.getuid()}", "evidence": []}]}, sys.stdout)


if __name__ == "__main__":
    main()
