"""Playing a hostile grader against the jail: every way out it tries fails, and what it left behind is gone.

The graders in ``hostile_graders/`` run through the real runner and the real bubblewrap. The controller is a real
Python process started with secrets in its environment (as ``labctl serve`` is), so reading ``/proc/<ppid>/environ``
is a real attack; its data directory holds a world-readable admin kubeconfig and store, so only the jail (not file
modes) stands between them and the grader. Each attack is also run UNJAILED (the development fallback, i.e. the old
runner): there it succeeds, which proves the test can see the attack work.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labctl.grading import jail
from labctl.grading.runner import run_grader
from labctl.settings import REPO_ROOT, Settings

Json = dict[str, Any]
HOSTILE = Path(__file__).resolve().parent / "hostile_graders"
PROBER, LINGERER = HOSTILE / "prober.py", HOSTILE / "lingerer.py"
GRADER_UID = jail.NOBODY
CONTROLLER = """
import json, os, sys
from pathlib import Path
from labctl.grading import jail, runner
args = json.loads(sys.argv[1])
where = jail.unjailed("the test's control run") if args["unjailed"] else None
params = {**args["params"], "controller_pid": os.getpid()}
checks = runner.run_grader(Path(args["script"]), {}, params, timeout_s=10, memory_mb=256, jail=where)
print(json.dumps([c.model_dump(mode="json") for c in checks]))
"""


@dataclass
class Listener:
    """A TCP server on the controller's loopback that records every connection it accepts."""

    sock: socket.socket
    accepted: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.accepted.append(conn.recv(200))
                except OSError:
                    self.accepted.append(b"")


@dataclass
class World:
    """The controller's side: its secrets, files and loopback server, and the targets the grader aims at."""

    root: Path
    secret: str
    marker: str
    settings: Settings
    listener: Listener
    open_dirs: dict[str, Path]

    def params(self, *, real_targets: bool) -> Json:
        """The prober's parameters; ``real_targets`` adds the repository itself (only for jailed runs)."""
        targets = {name: str(path) for name, path in self.open_dirs.items()}
        if real_targets:
            targets |= {"graders dir": str(self.settings.graders_dir), "repository": str(REPO_ROOT),
                        "the grader's own dir": str(HOSTILE)}
        return {"secret": self.secret, "marker": self.marker, "port": self.listener.port, "allocate_mb": 1024,
                "controller_home": str(Path.home()),
                "secret_files": {"admin kubeconfig": str(self.settings.local_cluster_kubeconfig),
                                 "store": str(self.settings.data_dir / "labctl.db"),
                                 "controller's home": str(self.root / "home" / "secret.txt")},
                "write_targets": targets}

    def controller(self, *, unjailed: bool, real_targets: bool) -> Json:
        """Run the prober from a controller process whose environment holds the secrets; its one check."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.root / "home"),
               "LABCTL_ADMIN_TOKEN": self.secret, "LABCTL_DATABASE_URL": f"postgresql://labctl:{self.secret}@db/x",
               "LABCTL_DATA_DIR": str(self.settings.data_dir)}
        args = {"unjailed": unjailed, "script": str(PROBER), "params": self.params(real_targets=real_targets)}
        done = subprocess.run([sys.executable, "-c", CONTROLLER, json.dumps(args)], capture_output=True, text=True,
                              env=env, cwd=REPO_ROOT, timeout=60, check=True)
        [check] = json.loads(done.stdout)
        assert check["id"] == "escape", check
        return dict(check)


def attempts(check: Json) -> dict[str, Json]:
    return {item["attempt"]: item for item in check["evidence"]}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = tmp_path / "world"
    root.mkdir()
    tmp_path.chmod(0o755)
    root.chmod(0o755)
    secret = f"s3cret-{secrets.token_hex(8)}"
    settings = Settings(data_dir=root / "data")
    kubeconfig = settings.local_cluster_kubeconfig
    kubeconfig.parent.mkdir(parents=True)
    for directory in [settings.data_dir, *kubeconfig.parents]:
        if directory.is_relative_to(root):
            directory.chmod(0o755)
    kubeconfig.write_text(f"users: [{{name: admin, user: {{token: {secret}}}}}]\n", encoding="utf-8")
    (settings.data_dir / "labctl.db").write_text(f"SQLite format 3 ... {secret}\n", encoding="utf-8")
    (root / "home").mkdir(mode=0o755)
    (root / "home" / "secret.txt").write_text(secret, encoding="utf-8")
    for path in (kubeconfig, settings.data_dir / "labctl.db", root / "home" / "secret.txt"):
        path.chmod(0o644)
    open_dirs = {"a world-writable host dir": root / "open", "a copy of graders/": root / "graders"}
    for directory in open_dirs.values():
        directory.mkdir()
        directory.chmod(0o777)
    sock = socket.create_server(("127.0.0.1", 0))
    listener = Listener(sock)
    thread = threading.Thread(target=listener.serve, daemon=True)
    thread.start()
    yield World(root=root, secret=secret, marker=f"hostile-{secrets.token_hex(4)}", settings=settings,
                listener=listener, open_dirs=open_dirs)
    sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a plain close does not)
    sock.close()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_the_hostile_grader_escapes_nothing_from_the_jail(world: World) -> None:
    check = world.controller(unjailed=False, real_targets=True)
    report = attempts(check)
    assert len(report) == 14
    escaped = {name: item["detail"] for name, item in report.items() if item["done"]}
    assert escaped == {}
    assert (check["passed"], check["score"]) == (True, 1.0)
    # The reasons are the jail's, not chance: nothing of the host is there, what is there is read-only.
    assert "No such file" in report["controller environ"]["detail"]
    assert "Permission denied" in report["pid 1 environ"]["detail"]
    for name in ("admin kubeconfig", "store", "controller's home"):
        assert "No such file" in report[f"read {name}"]["detail"], name
    assert "Read-only file system" in report["write the grader's own dir"]["detail"]
    assert "MemoryError" in report["allocate beyond the memory limit"]["detail"]
    assert "ProcessLookupError" in report["signal the controller"]["detail"]
    assert world.listener.accepted == []
    for directory in (*world.open_dirs.values(), world.settings.graders_dir, REPO_ROOT, HOSTILE):
        assert not (directory / world.marker).exists(), directory
    facts = json.loads(check["feedback"])
    assert facts["pids_seen"] == [1, facts["pid"]]  # its own pid namespace: the reaper and itself
    assert (facts["cap_eff"], facts["no_new_privs"], facts["cwd"]) == ("0000000000000000", "1", "/tmp")
    if os.geteuid() == 0:
        assert (facts["uid"], facts["euid"], facts["gid"], facts["groups"]) == (GRADER_UID, GRADER_UID,
                                                                                GRADER_UID, [])
    assert facts["uid"] != os.getuid() or os.geteuid() != 0
    # Of the controller's $HOME the grader sees at most the directories leading to the interpreter it runs.
    shown = {part for path in jail.python()[1] if path.is_relative_to(Path.home())
             for part in path.relative_to(Path.home()).parts[:1]}
    assert set(facts["home_listing"]) <= shown


def test_unjailed_the_same_grader_gets_everything(world: World) -> None:
    """The control: the old runner (the development fallback) stops none of these attacks."""
    check = world.controller(unjailed=True, real_targets=False)
    report = attempts(check)
    done = {name for name, item in report.items() if item["done"]}
    assert {"parent environ", "read admin kubeconfig", "read store", "read controller's home",
            "write a world-writable host dir", "write a copy of graders/", "tcp to the controller's loopback",
            "signal the controller"} <= done
    assert report["parent environ"]["detail"].startswith("SECRET FOUND")
    assert world.secret in report["read admin kubeconfig"]["detail"]
    assert world.listener.accepted == [b"hostile grader was here\n"]
    assert "MemoryError" in report["allocate beyond the memory limit"]["detail"]  # RLIMIT_AS held before too
    assert json.loads(check["feedback"])["uid"] == os.getuid()


def _processes_with(token: str) -> dict[int, int]:
    """Live host processes whose command line carries ``token``: pid -> real uid."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if token.encode() not in (entry / "cmdline").read_bytes():
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields["State"].split()[0] not in ("Z", "X"):
            found[int(entry.name)] = int(fields["Uid"].split()[0])
    return found


def _lingerer_params(world: World, *, mode: str, sleep_s: float) -> tuple[Json, str, Path]:
    token = f"linger-{secrets.token_hex(6)}"
    marker = world.open_dirs["a world-writable host dir"] / token
    return {"token": token, "marker": str(marker), "sleep_s": sleep_s, "mode": mode}, token, marker


def test_a_double_forked_grandchild_dies_with_the_jail(world: World) -> None:
    params, token, marker = _lingerer_params(world, mode="exit", sleep_s=2)
    [check] = run_grader(LINGERER, {}, params, timeout_s=10)
    assert check.status == "passed"  # the grader itself exited in time: only its grandchild would linger
    assert _processes_with(token) == {}  # gone when run_grader returns, not eventually
    time.sleep(3)  # past the grandchild's sleep: had it lived on, its marker would be written by now
    assert not marker.exists()
    assert _processes_with(token) == {}


def test_unjailed_the_grandchild_outlives_the_grader(world: World) -> None:
    """The control: a grandchild in a session of its own escapes the old process-group kill."""
    params, token, marker = _lingerer_params(world, mode="exit", sleep_s=1)
    [check] = run_grader(LINGERER, {}, params, timeout_s=10, jail=jail.unjailed("the test's control run"))
    assert check.status == "passed"
    try:
        assert list(_processes_with(token).values()) == [os.getuid()]
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "outlived the grader\n"
    finally:
        for pid in _processes_with(token):
            os.kill(pid, 9)


def test_past_the_time_limit_the_whole_namespace_is_killed_and_it_ran_as_another_uid(world: World) -> None:
    params, token, marker = _lingerer_params(world, mode="hang", sleep_s=30)
    seen: dict[int, int] = {}
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.extend(run_grader(LINGERER, {}, params, timeout_s=2)))
    runner.start()
    while runner.is_alive() and not seen:  # the host's view of the grandchild while the grader hangs
        seen = _processes_with(token)
        time.sleep(0.02)
    runner.join()
    [check] = result
    assert check.status == "error"
    assert "exceeded its 2s time limit and was stopped" in check.feedback
    assert len(seen) == 1
    if os.geteuid() == 0:
        assert list(seen.values()) == [GRADER_UID]  # another uid on the host, not only inside a namespace
    assert _processes_with(token) == {}
    assert not marker.exists()


def test_without_bubblewrap_the_runner_refuses_unless_the_fallback_is_set(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    missing = jail.Policy(bwrap=tmp_path / "bwrap")
    with pytest.raises(jail.JailUnavailable) as refused:
        jail.prepare(missing)
    assert f"bubblewrap is not installed ({tmp_path / 'bwrap'} is missing)" in refused.value.detail
    assert "LABCTL_GRADER_UNJAILED_FALLBACK=true" in refused.value.detail
    with caplog.at_level("WARNING", logger="labctl.grading.jail"):
        fallback = jail.prepare(jail.Policy(bwrap=tmp_path / "bwrap", unjailed_fallback=True))
    assert not fallback.jailed
    assert [r.getMessage() for r in caplog.records] == [fallback.describe()]
    assert "graders run UNJAILED" in fallback.describe()


def test_production_refuses_the_unjailed_fallback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LABCTL_GRADER_UNJAILED_FALLBACK is for development only"):
        Settings(env="production", admin_token="x" * 40, kubeconfig=tmp_path / "kubeconfig",
                 grader_unjailed_fallback=True)


def test_the_service_refuses_to_start_without_bubblewrap(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path), "LABCTL_DATA_DIR": str(tmp_path),
           "LABCTL_GRADER_BWRAP": str(tmp_path / "no-bwrap")}
    done = subprocess.run([str(Path(sys.executable).parent / "labctl"), "sweep", "--once"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1
    assert "error: graders cannot be jailed: bubblewrap is not installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_controller_that_is_not_root_jails_graders_in_a_user_namespace(world: World) -> None:
    """The other mode, played for real: a non-root process (uid 65534 here, by setpriv) runs the jail's command line.

    bubblewrap then needs an unprivileged user namespace; the grader keeps that uid on the host (documented), and the
    namespaces and mounts hold as they do for root: its own pids, only a loopback, nothing of the data directory,
    its own directory read-only, and no nested user namespace to widen its powers in.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to play a controller of another uid (as any other uid, the tests above are this mode)")
    plain = jail.Jail(bwrap=Path("/usr/bin/bwrap"), system=jail.system_mounts())
    secret = world.settings.local_cluster_kubeconfig
    line = jail.argv(plain, ["/bin/sh", str(HOSTILE / "prober.sh"), str(secret), str(HOSTILE)], readable=[HOSTILE],
                     env={"PATH": "/usr/bin:/bin", "HOME": jail.SCRATCH})
    done = subprocess.run(["setpriv", f"--reuid={GRADER_UID}", f"--regid={GRADER_UID}", "--clear-groups", "--", *line],
                          input="{}", capture_output=True, text=True, timeout=30, check=True,
                          env=jail.launcher_env())  # as the runner starts bubblewrap
    facts = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert facts["uid"] == str(GRADER_UID)
    assert [int(p) for p in facts["pids"].split()][:2] == [1, 2]
    assert (facts["read secret"], facts["write own dir"], facts["nested user namespace"]) == ("failed",) * 3
    # Same uid: the grader can read its pid 1's (bubblewrap's) environment, so bubblewrap gets PATH alone.
    assert facts["pid 1 environ"].split() == ["PATH"]
    assert facts["interfaces"].split() == ["lo"]
    assert not (HOSTILE / "hostile-sh").exists()


def test_a_bubblewrap_that_cannot_make_a_sandbox_is_refused_with_the_user_namespace_hint() -> None:
    """``/bin/false`` stands in for a bubblewrap that fails as a non-root user does without user namespaces."""
    with pytest.raises(jail.JailUnavailable) as refused:
        jail.prepare(jail.Policy(bwrap=Path("/bin/false")), euid=1000)
    detail = refused.value.detail
    assert detail.startswith("graders cannot be jailed: bubblewrap cannot start a sandbox here (exit status 1)")
    assert "labctl runs as uid 1000, so bubblewrap needs unprivileged user namespaces" in detail
    assert "or run labctl as root (graders then drop to uid 65534 without user namespaces)" in detail
