"""Graders' modules compiled once by labctl: the jailed grader reads the bytecode, and an edit is never hidden by it.

The graders run in the default jail (bubblewrap; as root, uid 65534) with bytecode writes off, so whether a jailed
import read the ``.pyc`` is told by what it ran: a ``.pyc`` whose header matches the source but whose code is
another's runs that other code (the grader read it), and after the source is edited the grader runs the edit (the
stale ``.pyc`` was refused by its hash).
"""

from __future__ import annotations

import importlib.util
import py_compile
import subprocess
from pathlib import Path
from typing import Any

import pytest

from labctl.catalog.models import Lab
from labctl.grading import bytecode, jail
from labctl.grading.runner import PYTHON_OPTIONS, grade
from tests.grading import live
from tests.grading.test_runner import write

PROBE = """import json, helper
print(json.dumps({"checks": [{"id": "probe", "title": "Probe", "passed": True, "score": 1, "max_score": 1,
                               "feedback": helper.VALUE, "evidence": []}]}))
"""
LAB = Lab.model_validate({
    "id": "bytecode", "title": "Bytecode", "summary": "A grader importing a module.", "provider": "kubernetes",
    "budget": {"usd": 1}, "time": {"limit": "1h", "max_extension": "0"},
    "quota": {"cpu": "1", "memory": "1Gi", "pods": "5"},
    "graders": [{"id": "probe", "script": "graders/probe.py", "weight": 1}],
})


@pytest.fixture
def graders(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    directory = tmp_path / "graders"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    write(directory, "probe.py", PROBE)
    write(directory, "helper.py", 'VALUE = "source"\n')
    return directory


def _seen(graders: Path, snapshot: dict[str, Any]) -> str:
    [check] = grade(LAB, snapshot, graders, graders.parent).checks
    assert check.status == "passed", check.feedback
    return check.feedback


def _pyc(module: Path) -> Path:
    return Path(importlib.util.cache_from_source(str(module)))


def test_a_grader_reads_the_bytecode_labctl_wrote_and_never_a_stale_one(graders: Path) -> None:
    snapshot = live.load_fixture("tag-for-showback")
    assert _seen(graders, snapshot) == "source"
    helper, pyc = graders / "helper.py", _pyc(graders / "helper.py")
    assert pyc.is_file(), "grade() did not compile the graders' modules"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11, "not a checked-hash .pyc"
    assert pyc.parent.stat().st_mode & 0o005 == 0o005, "the __pycache__ is not readable by the graders' uid"

    # Code of another source behind this source's header: a grader that runs it has read the .pyc.
    other = graders.parent / "other.py"
    other.write_text('VALUE = "bytecode"\n')
    forged = graders.parent / "other.pyc"
    py_compile.compile(str(other), cfile=str(forged),
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    pyc.write_bytes(pyc.read_bytes()[:16] + forged.read_bytes()[16:])
    assert _seen(graders, snapshot) == "bytecode"

    helper.write_text('VALUE = "edited"\n')  # compile_once ran for this directory already: the .pyc is stale now
    assert _seen(graders, snapshot) == "edited"


def test_bytecode_that_cannot_be_written_leaves_graders_compiling_from_source(graders: Path) -> None:
    (graders / "__pycache__").write_text("a file where the cache directory would go\n")  # unwritable, even as root
    assert bytecode.compile_once(graders.resolve()) is False
    assert _seen(graders, live.load_fixture("tag-for-showback")) == "source"


SLOW_IMPORTS = ("typing", "dataclasses")  # each costs a grader's start milliseconds
GRADERS = sorted(p.stem for p in live.GRADERS_DIR.glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("name", GRADERS)
def test_a_built_in_grader_starts_without_the_slow_imports(name: str) -> None:
    """A built-in grader, started as the runner starts it (``python -S``, its directory on the path), imports
    neither ``typing`` nor ``dataclasses``: together they were 15 of a grader's ~50 ms of CPU."""
    probe = (f"import sys; sys.path.insert(0, {str(live.GRADERS_DIR)!r}); import {name}; "
             f"print(','.join(m for m in {SLOW_IMPORTS!r} if m in sys.modules))")
    interpreter, _ = jail.python()
    done = subprocess.run([str(interpreter), *PYTHON_OPTIONS, "-c", probe], capture_output=True, text=True, timeout=30,
                          check=True)
    assert done.stdout.strip() == "", f"graders/{name}.py imports {done.stdout.strip()} at start"
