"""A hostile grader: it tries every way out of the jail it knows and reports, as evidence, what it could do.

It follows the grader contract (request on stdin, one check on stdout) so the runner hands its report back. Each
evidence item is ``{"attempt": name, "done": bool, "detail": text}``; ``done`` means the attempt SUCCEEDED (the
jail failed). The targets come in ``params`` from the test, which knows the controller's real paths and ports.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def attempt(report: list[Json], name: str, action: Callable[[], str]) -> None:
    try:
        report.append({"attempt": name, "done": True, "detail": action()[:500]})
    except BaseException as exc:  # every failure is the expected outcome here, whatever its kind
        report.append({"attempt": name, "done": False, "detail": f"{type(exc).__name__}: {exc}"[:500]})


def read(path: str) -> Callable[[], str]:
    return lambda: Path(path).read_bytes().decode("utf-8", errors="replace")


def environ_of(path: str, secret: str) -> Callable[[], str]:
    def action() -> str:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
        return ("SECRET FOUND " if secret in text else "readable, no secret ") + str(len(text))
    return action


def write_into(directory: str, name: str) -> Callable[[], str]:
    def action() -> str:
        target = Path(directory) / name
        target.write_text("written by a hostile grader\n", encoding="utf-8")
        return str(target)
    return action


def connect(port: int) -> Callable[[], str]:
    def action() -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"hostile grader was here\n")
        return f"connected to 127.0.0.1:{port}"
    return action


def allocate(megabytes: int) -> Callable[[], str]:
    def action() -> str:
        block = bytearray(megabytes * 2**20)
        return f"allocated {len(block)} bytes"
    return action


def signal_controller(pid: int) -> Callable[[], str]:
    def action() -> str:
        os.kill(pid, 0)
        return f"pid {pid} answers signal 0"
    return action


def status_field(name: str) -> str:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(name + ":"))
    return line.split(":", 1)[1].strip()


def main() -> None:
    params: Json = json.load(sys.stdin)["params"]
    secret, marker = params["secret"], params["marker"]
    report: list[Json] = []
    attempt(report, "parent environ", environ_of(f"/proc/{os.getppid()}/environ", secret))
    attempt(report, "pid 1 environ", environ_of("/proc/1/environ", secret))
    attempt(report, "controller environ", environ_of(f"/proc/{params['controller_pid']}/environ", secret))
    for name, path in params["secret_files"].items():
        attempt(report, f"read {name}", read(path))
    for name, directory in params["write_targets"].items():
        attempt(report, f"write {name}", write_into(directory, marker))
    attempt(report, "tcp to the controller's loopback", connect(params["port"]))
    attempt(report, "signal the controller", signal_controller(params["controller_pid"]))
    attempt(report, "allocate beyond the memory limit", allocate(params["allocate_mb"]))
    home = Path(params["controller_home"])
    listing = sorted(p.name for p in home.iterdir()) if home.is_dir() else []
    facts = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
             "pid": os.getpid(), "ppid": os.getppid(), "cap_eff": status_field("CapEff"),
             "no_new_privs": status_field("NoNewPrivs"),
             "pids_seen": sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()),
             "home_listing": listing, "cwd": str(Path.cwd())}
    done = [item["attempt"] for item in report if item["done"]]
    check = {"id": "escape", "title": "The grader could not leave its jail", "passed": not done,
             "score": 0.0 if done else 1.0, "max_score": 1.0, "feedback": json.dumps(facts),
             "evidence": report}
    json.dump({"checks": [check]}, sys.stdout)


if __name__ == "__main__":
    main()
