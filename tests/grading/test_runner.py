"""The grader runner with real misbehaving scripts: each fault becomes one `error` check with its reason, never an
exception, and the rest of the grade is still produced. Also: the POSIX sh example grader passes through the same
runner, graders see no secrets of the controller, and nothing a grader started outlives its time limit.

Graders run in the default jail (bubblewrap; as root, uid 65534), so the scripts written here must be readable by
others, as a checkout's are: ``tmp_path`` is opened up to 0755. ``tests/adversarial/test_grader_isolation.py`` plays
the hostile grader against the jail itself."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from labctl.catalog.models import Lab
from labctl.grading import jail
from labctl.grading.runner import grade, run_grader
from tests.grading import live

Json = dict[str, Any]
GOOD = """#!/usr/bin/env python3
import json, sys
request = json.load(sys.stdin)
kinds = [r["kind"] for r in request["snapshot"].get("resources", [])]
json.dump({"checks": [{"id": "pods", "title": "Pods exist", "passed": "Pod" in kinds, "score": 2.0,
                       "max_score": 2.0, "feedback": "ok", "evidence": []}]}, sys.stdout)
"""
FAULTS = {
    "sleeper.py": "import time\ntime.sleep(30)\n",
    "crasher.py": "import sys\nsys.stderr.write('Traceback: KeyError: snapshot\\n')\nsys.exit(3)\n",
    "garbage.py": "print('all good, 10/10')\n",
    "hog.py": "data = bytearray(2 * 1024 ** 3)\nprint(len(data))\n",
    "off_contract.py": "import json\nprint(json.dumps({'checks': [{'id': 'x', 'title': 'X', 'passed': True, "
                       "'score': 5, 'max_score': 1, 'feedback': '', 'evidence': []}]}))\n",
    "silent.py": "",
    "printer.py": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
}


def write(directory: Path, name: str, text: str, *, executable: bool = False) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """pytest's own, readable by the graders' uid (the directories above it need not be: the jail binds it)."""
    tmp_path.chmod(0o755)
    return tmp_path


@pytest.fixture(scope="module")
def snapshot() -> Json:
    return live.load_fixture("tag-for-showback")


@pytest.mark.parametrize(("script", "reason"), [
    ("sleeper.py", "grader tmp/sleeper.py exceeded its 1s time limit and was stopped"),
    ("crasher.py", "grader tmp/crasher.py exited with status 3: Traceback: KeyError: snapshot"),
    ("garbage.py", "grader tmp/garbage.py printed invalid JSON (Expecting value at line 1 column 1); output began "
                   "'all good, 10/10'"),
    ("hog.py", "grader tmp/hog.py ran out of memory (limit 256 MB) and exited with status 1"),
    ("off_contract.py", "grader tmp/off_contract.py printed output that does not follow the contract: "
                        "checks.0: Value error, check 'x': score 5.0 is above max_score 1.0"),
    ("silent.py", "grader tmp/silent.py printed nothing on stdout"),
])
def test_a_faulty_grader_becomes_one_error_check(tmp_path: Path, snapshot: Json, script: str, reason: str) -> None:
    directory = tmp_path / "tmp"
    directory.mkdir()
    path = write(directory, script, FAULTS[script])
    started = time.monotonic()
    checks = run_grader(path, snapshot, {}, timeout_s=1, memory_mb=256, grader_id="faulty")
    assert time.monotonic() - started < 5
    assert len(checks) == 1
    check = checks[0]
    assert (check.grader, check.id, check.status, check.passed, check.score) == ("faulty", "faulty", "error", False, 0)
    assert check.evidence[0]["problem"].startswith(reason)
    assert reason in check.feedback


@pytest.mark.parametrize(("name", "text", "executable"), [
    ("printer.py", FAULTS["printer.py"], False),  # Python ignores SIGXFSZ: its write fails with EFBIG
    ("printer.sh", "#!/bin/sh\nexec yes\n", True),  # killed by SIGXFSZ
])
def test_endless_output_is_stopped_at_the_output_limit(tmp_path: Path, snapshot: Json, name: str, text: str,
                                                       executable: bool) -> None:
    path = write(tmp_path, name, text, executable=executable)
    [check] = run_grader(path, snapshot, {}, timeout_s=5, max_output_bytes=2**20)
    assert check.status == "error"
    assert "wrote more than its 1048576 bytes of output and was stopped" in check.feedback


@pytest.mark.parametrize(("name", "text", "executable", "reason"), [
    ("missing.py", None, False, "does not exist"),
    ("plain.sh", "#!/bin/sh\necho '{}'\n", False, "is neither a Python script (.py) nor executable"),
    ("bad_interpreter", "#!/nonexistent/interpreter\n", True, "could not be started: "),
])
def test_a_grader_that_cannot_start_is_an_error_check(tmp_path: Path, snapshot: Json, name: str, text: str | None,
                                                      executable: bool, reason: str) -> None:
    path = tmp_path / name if text is None else write(tmp_path, name, text, executable=executable)
    [check] = run_grader(path, snapshot, {})
    assert check.status == "error"
    assert reason in check.feedback


def test_grade_still_scores_the_working_graders(tmp_path: Path, snapshot: Json) -> None:
    graders = tmp_path / "graders"
    graders.mkdir()
    write(graders, "good.py", GOOD)
    for name in ("sleeper.py", "crasher.py", "garbage.py", "hog.py"):
        write(graders, name, FAULTS[name])
    lab = Lab.model_validate({
        "id": "faults", "title": "Faults", "summary": "Graders that fail.", "provider": "kubernetes",
        "budget": {"usd": 1}, "time": {"limit": "1h", "max_extension": "0"},
        "quota": {"cpu": "1", "memory": "1Gi", "pods": "5"},
        "graders": [{"id": "good", "script": "graders/good.py", "weight": 40},
                    *({"id": n.removesuffix(".py"), "script": f"graders/{n}", "weight": 15}
                      for n in ("sleeper.py", "crasher.py", "garbage.py", "hog.py")),
                    {"id": "escape", "script": "graders/escape.py", "weight": 10}],
    })
    (graders / "escape.py").symlink_to(write(tmp_path, "outside.py", GOOD))
    result = grade(lab, snapshot, graders, tmp_path, timeout_s=1, memory_mb=256)
    assert [g.status for g in result.graders] == ["ok", "error", "error", "error", "error", "error"]
    assert (result.score, result.max_score, result.passed) == (40.0, 110.0, False)
    good = result.graders[0]
    assert (good.points, good.checks[0].points, good.checks[0].max_points) == (40.0, 40.0, 40.0)
    reasons = {c.grader: c.feedback for c in result.checks if c.status == "error"}
    assert "exceeded its 1s time limit" in reasons["sleeper"]
    assert "exited with status 3" in reasons["crasher"]
    assert "printed invalid JSON" in reasons["garbage"]
    assert "ran out of memory (limit 256 MB)" in reasons["hog"]
    assert "is not inside" in reasons["escape"]
    assert all(g.duration_s is not None for g in result.graders)


def test_the_posix_sh_example_follows_the_contract(snapshot: Json) -> None:
    example = live.GRADERS_DIR / "examples" / "has_deployment.sh"
    assert os.access(example, os.X_OK)
    [check] = run_grader(example, snapshot, {})
    assert (check.id, check.status, check.score, check.max_score) == ("has-deployment", "passed", 1, 1)
    assert "Deployment/web-frontend" in check.feedback
    bare = {**snapshot, "resources": [r for r in snapshot["resources"] if r["kind"] != "Deployment"]}
    [check] = run_grader(example, bare, {})
    assert (check.status, check.score) == ("failed", 0)
    assert check.evidence == [{"resource": "Deployment/*", "problem": "no Deployment in the snapshot"}]


def test_graders_see_no_secrets_and_run_in_a_scratch_directory(tmp_path: Path, snapshot: Json,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_ADMIN_TOKEN", "secret-admin-token")
    monkeypatch.setenv("LABCTL_DATABASE_URL", "postgresql://user:pw@db/labctl")
    spy = write(tmp_path, "spy.py", "import json, os\nprint(json.dumps({'checks': [{'id': 'env', 'title': 'Env', "
                "'passed': True, 'score': 1, 'max_score': 1, 'feedback': json.dumps({'env': sorted(os.environ), "
                "'cwd': os.getcwd()}), 'evidence': []}]}))\n")
    [check] = run_grader(spy, snapshot, {})
    seen = json.loads(check.feedback)
    assert not [name for name in seen["env"] if name.startswith("LABCTL")]
    assert seen["env"] == ["HOME", "LANG", "LC_ALL", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING",
                          "TMPDIR"]
    assert seen["cwd"] == "/tmp"  # the jail's private tmpfs


def test_python_graders_get_the_standard_library_only(tmp_path: Path, snapshot: Json) -> None:
    """No ``site``: neither labctl's packages nor the base interpreter's site-packages are on a grader's path."""
    probe = write(tmp_path, "probe.py", "import importlib.util, json, sys\nprint(json.dumps({'checks': [{'id': 'p', "
                  "'title': 'P', 'passed': True, 'score': 1, 'max_score': 1, 'evidence': [], 'feedback': json.dumps("
                  "{'no_site': sys.flags.no_site, 'site': 'site' in sys.modules, "
                  "'yaml': importlib.util.find_spec('yaml') is not None, "
                  "'json': importlib.util.find_spec('json') is not None})}]}))\n")
    [check] = run_grader(probe, snapshot, {})
    assert check.status != "error", check.feedback
    assert json.loads(check.feedback) == {"no_site": 1, "site": False, "yaml": False, "json": True}


def test_a_script_the_graders_uid_cannot_read_is_an_error_check(tmp_path: Path, snapshot: Json) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root drops graders to another uid; otherwise they read what labctl reads")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    [check] = run_grader(write(closed, "good.py", GOOD), snapshot, {}, root=tmp_path)
    assert check.status == "error"
    assert f"is in {closed}, which the graders' uid 65534 cannot enter (chmod o+rx)" in check.feedback
    private = write(tmp_path, "private.py", GOOD)
    private.chmod(0o600)
    [check] = run_grader(private, snapshot, {})
    assert "is not readable by the graders' uid 65534 (chmod o+r)" in check.feedback


def test_the_unjailed_fallback_still_kills_what_a_grader_leaves_behind(tmp_path: Path, snapshot: Json) -> None:
    """The development fallback (no bubblewrap) keeps the process-group kill; in the jail the pid namespace does."""
    pid_file = tmp_path / "child.pid"
    script = write(tmp_path, "forker.py", "import json, subprocess, sys, time\n"
                   "request = json.load(sys.stdin)\n"
                   "child = subprocess.Popen(['sleep', '60'])\n"
                   "open(request['params']['pid_file'], 'w').write(str(child.pid))\n"
                   "time.sleep(60)\n")
    [check] = run_grader(script, snapshot, {"pid_file": str(pid_file)}, timeout_s=1,
                         jail=jail.unjailed("test of the fallback"))
    assert "exceeded its 1s time limit" in check.feedback
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its parent counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"
