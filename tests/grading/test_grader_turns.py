"""Grader turns: however many gradings call :func:`labctl.grading.runner.grade` at once, at most
``GRADES_AT_ONCE`` (one per core) run graders at the same moment, each lab's graders one after another, and every
grade is still produced in full.

The graders are real subprocesses (unjailed here, so they can leave a mark in a directory the test reads): each
writes a file while it runs and records how many such files it saw.
"""

from __future__ import annotations

import threading
from pathlib import Path

from labctl.catalog.models import Lab
from labctl.grading import jail, runner
from tests.grading import live

COUNTER = """import json, os, sys, time
request = json.load(sys.stdin)
marks = request["params"]["marks"]
me = os.path.join(marks, f"{os.getpid()}.running")
open(me, "w").close()
running = sum(name.endswith(".running") for name in os.listdir(marks))
time.sleep(0.3)
os.remove(me)
with open(os.path.join(marks, f"{os.getpid()}.seen"), "w") as seen:
    seen.write(str(running))
json.dump({"checks": [{"id": "ran", "title": "Ran", "passed": True, "score": 1, "max_score": 1, "feedback": "",
                       "evidence": []}]}, sys.stdout)
"""


def test_graders_of_concurrent_gradings_take_turns_one_per_core(tmp_path: Path) -> None:
    graders = tmp_path / "graders"
    graders.mkdir()
    (graders / "counter.py").write_text(COUNTER, encoding="utf-8")
    marks = tmp_path / "marks"
    marks.mkdir()
    lab = Lab.model_validate({
        "id": "turns", "title": "Turns", "summary": "Graders that count each other.", "provider": "kubernetes",
        "budget": {"usd": 1}, "time": {"limit": "1h", "max_extension": "0"},
        "quota": {"cpu": "1", "memory": "1Gi", "pods": "5"},
        "graders": [{"id": f"count-{i}", "script": "graders/counter.py", "weight": 1,
                     "params": {"marks": str(marks)}} for i in range(2)],
    })
    snapshot = live.load_fixture("tag-for-showback")
    unjailed = jail.unjailed("the test reads what the graders wrote")
    gradings = 3 * runner.GRADES_AT_ONCE
    scores: list[float] = []

    def one() -> None:
        result = runner.grade(lab, snapshot, graders, tmp_path, timeout_s=30, jail=unjailed)
        scores.append(result.score)

    threads = [threading.Thread(target=one) for _ in range(gradings)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert scores == [2.0] * gradings
    seen = [int(path.read_text()) for path in marks.glob("*.seen")]
    assert len(seen) == 2 * gradings                      # every grader of every grading ran once
    assert 1 <= max(seen) <= runner.GRADES_AT_ONCE, seen  # never more side by side than the turns allow
    assert not list(marks.glob("*.running"))
