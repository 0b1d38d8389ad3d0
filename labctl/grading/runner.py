"""Running graders: each script is a limited, jailed subprocess, and every way it can fail becomes one ``error`` check.

A grader is any executable under ``graders/`` (Python scripts run with labctl's base interpreter without ``site``,
anything else directly), given ``{"snapshot": ..., "params": ...}`` on stdin and expected to print
``{"checks": [...]}`` on stdout and exit 0. It runs without a shell, inside the jail of :mod:`labctl.grading.jail`
(bubblewrap: its own pid, mount and network namespaces, another uid, read-only system and grader directory, a
private ``/tmp`` as its working and home directory), with a minimal environment (no secrets of the controller leak
into it), and under limits set in the child before ``exec``:

- wall-clock time (``timeout_s``, the exit watched through a pidfd): past it the whole process group is killed, and
  with it the jail's pid 1, which takes every process of the grader's pid namespace with it (double-forked or not);
  :func:`run_grader` returns only once they are gone;
- address space (``RLIMIT_AS``, ``memory_mb``): allocations beyond it fail;
- output size (``RLIMIT_FSIZE``): stdout and stderr go to files, so an endless printer is stopped (by ``SIGXFSZ``,
  or for Python, which ignores that signal, by a failing write) instead of filling the controller's memory;
- no core dumps.

A timeout, a signal, a non-zero exit, invalid JSON or output off the contract is reported as ONE check with status
``error``, the grader's id and a reason naming what happened; :func:`run_grader` never raises for a grader's fault,
and :func:`grade` produces the lab's grade even when some graders error. Without an explicit ``jail`` the default
policy applies (bubblewrap required, no fallback), prepared once per process.

Graders need the CPU (an interpreter's start is most of a grader's time), so at most :data:`GRADES_AT_ONCE` calls of
:func:`grade` (one per core) run their graders at once in a process, each lab's graders one after another; the others
wait their turn. An exam's hundreds of submissions then come out graded one by one, at the rate the cores start
interpreters, instead of all together at the end, and the API's threads keep a share of the machine.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from labctl.catalog.models import Lab
from labctl.grading import bytecode
from labctl.grading import jail as jail_mod
from labctl.grading.checks import Check, ContractError, Grade, GraderResult, combine, error_check, parse_output, weigh
from labctl.grading.snapshot import Snapshot, snapshot_dict

log = logging.getLogger("labctl.grading.runner")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 512
DEFAULT_MAX_OUTPUT_BYTES = 16 * 2**20
_STDERR_TAIL = 2000
_MEMORY_HINTS = ("MemoryError", "out of memory", "Cannot allocate memory", "std::bad_alloc", "Fatal process OOM")
_GONE_WITHIN_S = 10.0
# Python graders use the standard library only: no ``site`` (no site-packages, no ``.pth`` files the base interpreter
# may carry), which is also most of an interpreter's start-up (10 ms instead of 50 here).
PYTHON_OPTIONS = ("-S",)
GRADES_AT_ONCE = len(os.sched_getaffinity(0))
_TURNS = threading.BoundedSemaphore(GRADES_AT_ONCE)  # a turn of grade(): its lab's graders, one after another


def run_grader(script: Path, snapshot: Mapping[str, Any], params: Mapping[str, Any], *,
               timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
               grader_id: str | None = None, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
               jail: jail_mod.Jail | None = None, root: Path | None = None) -> list[Check]:
    """Run one grader script on ``snapshot`` with ``params``; its checks, or one ``error`` check saying why not.

    ``grader_id`` names the checks' grader (the lab's ``graders[].id``; default: the script's stem). ``root`` is the
    directory the grader sees read-only (default: the script's own); ``jail`` how it runs (default: see above).
    """
    grader = grader_id or script.stem
    shown = f"{script.parent.name}/{script.name}"
    where = jail or default_jail()
    interpreter, libraries = jail_mod.python()
    command = _command(script, interpreter)
    if isinstance(command, str):
        return [error_check(grader, f"grader {shown} {command}")]
    hidden = jail_mod.unreadable(where, script, root or script.parent)
    if hidden is not None:
        return [error_check(grader, f"grader {shown} {hidden}")]
    payload = json.dumps({"snapshot": snapshot, "params": params}, separators=(",", ":"))
    readable = (root or script.parent, *libraries)
    with tempfile.TemporaryDirectory(prefix="labctl-grader-", ignore_cleanup_errors=True) as scratch:
        outcome = _execute(command, payload, Path(scratch), timeout_s=timeout_s,
                           limits=_limits(memory_mb * 2**20, max_output_bytes), jail=where, readable=readable)
    if isinstance(outcome, str):
        return [error_check(grader, f"grader {shown} could not be started: {outcome}")]
    code, timed_out, stdout, stderr = outcome
    text = stderr.decode("utf-8", errors="replace")
    started = None if timed_out or code == 0 else jail_mod.start_failure(where, text)
    if started is not None:
        return [error_check(grader, f"grader {shown} could not be started: {started}")]
    failure = _failure(jail_mod.exit_status(where, code), timed_out, stderr, timeout_s=timeout_s,
                       memory_mb=memory_mb, max_output_bytes=max_output_bytes)
    if failure is not None:
        return [error_check(grader, f"grader {shown} {failure}", evidence=_stderr_evidence(stderr))]
    try:
        return parse_output(grader, stdout.decode("utf-8"))
    except UnicodeDecodeError:
        return [error_check(grader, f"grader {shown} printed output that is not UTF-8 text")]
    except ContractError as exc:
        return [error_check(grader, f"grader {shown} {exc}", evidence=_stderr_evidence(stderr))]


@lru_cache(maxsize=1)
def default_jail() -> jail_mod.Jail:
    """The jail of the default policy (bubblewrap at /usr/bin/bwrap, uid 65534 as root, no fallback), probed once."""
    return jail_mod.prepare(jail_mod.Policy())


def grade(lab: Lab, snapshot: Snapshot | Mapping[str, Any], graders_dir: Path, repo_root: Path, *,
          timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
          jail: jail_mod.Jail | None = None) -> Grade:
    """Run every grader of ``lab`` on ``snapshot`` and weigh their checks into the lab's grade.

    The snapshot (a model, or data validated first: a :class:`pydantic.ValidationError` means the producer is wrong,
    not a grader) is handed to graders in its normalised JSON form. Scripts are resolved against ``repo_root`` and
    must lie inside ``graders_dir``, which is what each grader sees (read-only) of the repository; the modules there
    are compiled to bytecode the first time (:mod:`labctl.grading.bytecode`).
    """
    data = snapshot_dict(snapshot if isinstance(snapshot, Snapshot) else Snapshot.model_validate(snapshot))
    bytecode.compile_once(graders_dir.resolve())
    with _TURNS:
        return combine(_run_graders(lab, data, graders_dir, repo_root, timeout_s=timeout_s, memory_mb=memory_mb,
                                    jail=jail))


def _run_graders(lab: Lab, data: Mapping[str, Any], graders_dir: Path, repo_root: Path, *, timeout_s: float,
                 memory_mb: int, jail: jail_mod.Jail | None) -> list[GraderResult]:
    results: list[GraderResult] = []
    for grader in lab.graders:
        started = time.monotonic()
        script = (repo_root / grader.script).resolve()
        if not script.is_relative_to(graders_dir.resolve()):
            checks = [error_check(grader.id, f"grader script {grader.script} is not inside {graders_dir}")]
        else:
            checks = run_grader(script, data, grader.params, timeout_s=timeout_s, memory_mb=memory_mb,
                                grader_id=grader.id, jail=jail, root=graders_dir.resolve())
        results.append(weigh(grader.id, grader.script, grader.weight, checks,
                             duration_s=round(time.monotonic() - started, 3)))
    return results


def _command(script: Path, interpreter: Path) -> list[str] | str:
    """The argv that runs ``script``, or why it cannot be run."""
    if not script.is_file():
        return "does not exist"
    if script.suffix == ".py":
        return [str(interpreter), *PYTHON_OPTIONS, str(script)]
    if not os.access(script, os.X_OK):
        return "is neither a Python script (.py) nor executable (chmod +x)"
    return [str(script)]


def _limits(memory_bytes: int, output_bytes: int) -> Callable[[], None]:
    """The child's pre-exec hook: only ``setrlimit`` calls (safe after fork), capped at the current hard limits."""
    memory = _capped(resource.RLIMIT_AS, memory_bytes)
    output = _capped(resource.RLIMIT_FSIZE, output_bytes)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _capped(which: int, wanted: int) -> int:
    hard = resource.getrlimit(which)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _environment(jail: jail_mod.Jail, scratch: Path) -> dict[str, str]:
    """A minimal environment: no controller settings, tokens or database URLs reach a grader."""
    if jail.jailed:
        home, path = jail_mod.SCRATCH, "/usr/local/bin:/usr/bin:/bin"
    else:
        home, path = str(scratch), os.environ.get("PATH", os.defpath)
    return {"PATH": path, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _execute(command: list[str], payload: str, scratch: Path, *, timeout_s: float, limits: Callable[[], None],
             jail: jail_mod.Jail, readable: Sequence[Path]) -> tuple[int, bool, bytes, bytes] | str:
    """Run ``command`` with ``payload`` on stdin: (exit code, timed out, stdout, stderr), or why it did not start.

    The files stay outside the jail: the grader gets them as its standard streams only. ``scratch`` is the working
    directory only when unjailed (in the jail it is the private ``/tmp``).
    """
    stdin_path, stdout_path, stderr_path = scratch / "stdin.json", scratch / "stdout", scratch / "stderr"
    stdin_path.write_text(payload, encoding="utf-8")
    env = _environment(jail, scratch)
    line = jail_mod.argv(jail, command, readable=readable, env=env)
    with stdin_path.open("rb") as stdin, stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        try:
            process = subprocess.Popen(line, stdin=stdin, stdout=stdout, stderr=stderr, cwd=scratch,
                                       env=env if not jail.jailed else jail_mod.launcher_env(),
                                       start_new_session=True, close_fds=True,
                                       preexec_fn=limits)  # only setrlimit runs between fork and exec
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        try:
            timed_out = not _exited_within(process, timeout_s)
        finally:
            _kill_group(process.pid)
            process.wait()
            _wait_group_gone(process.pid)
    return process.returncode, timed_out, stdout_path.read_bytes(), stderr_path.read_bytes()


def _exited_within(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether ``process`` exits within ``timeout_s``, woken the moment it does: a pidfd polled for the exit
    (``Popen.wait(timeout=...)`` polls with sleeps that grow to 50 ms, which a grader of 50 ms overshoots by half its
    own time). The process is left to be reaped by the caller's ``wait()``."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # exited and reaped already cannot be (the caller reaps); a kernel without pidfds: poll
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        with select.epoll() as waiting:
            waiting.register(pidfd, select.EPOLLIN)
            return bool(waiting.poll(timeout_s))
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    """Kill whatever is left of the grader's process group (it ran in its own session, so pgid == its pid).

    In the jail the group holds bubblewrap and its pid 1; when that pid 1 dies the kernel kills every process of the
    grader's pid namespace, including those that left the group with a session of their own.
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def _wait_group_gone(pgid: int) -> None:
    """Wait (bounded) until no live process of the group is left: the jail's pid 1 dies only once its namespace is
    empty, so then nothing the grader started runs any more. Zombies count as gone (their reaper may be slow)."""
    deadline = time.monotonic() + _GONE_WITHIN_S
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            log.warning("processes of grader group %d were still exiting after %gs", pgid, _GONE_WITHIN_S)
            return
        time.sleep(0.005)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` runs (a group id is never reused while a member lives)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False  # no member at all, zombies included: no need to read every process's stat
    except PermissionError:
        pass  # a member runs as another uid (the jail's): look closer
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _failure(code: int, timed_out: bool, stderr: bytes, *, timeout_s: float, memory_mb: int,
             max_output_bytes: int) -> str | None:
    """What went wrong with a finished grader process, in words; None when it exited 0 in time."""
    if timed_out:
        return f"exceeded its {timeout_s:g}s time limit and was stopped"
    text = stderr.decode("utf-8", errors="replace")
    out_of_memory = any(hint in text for hint in _MEMORY_HINTS)
    # Python ignores SIGXFSZ, so its writes past the limit fail with EFBIG ("File too large") instead.
    if code == -signal.SIGXFSZ or (code > 0 and "File too large" in text):
        return f"wrote more than its {max_output_bytes} bytes of output and was stopped"
    if code < 0:
        number = -code
        name = _signal_name(number)
        if out_of_memory:
            return f"ran out of memory (limit {memory_mb} MB) and was killed by {name}"
        return f"was killed by signal {name}"
    if code > 0:
        if out_of_memory:
            return f"ran out of memory (limit {memory_mb} MB) and exited with status {code}"
        last = _last_line(text)
        return f"exited with status {code}" + (f": {last}" if last else "")
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _stderr_evidence(stderr: bytes) -> list[dict[str, Any]]:
    text = stderr.decode("utf-8", errors="replace").strip()
    return [{"stderr": text[-_STDERR_TAIL:]}] if text else []
