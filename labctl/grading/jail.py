"""The grader jail: every grader runs inside bubblewrap, as another uid, seeing only what a grader needs.

A grader is a lab author's script; labctl treats it as hostile. :func:`prepare` checks once, at start, that the jail
works on this machine and returns a :class:`Jail`; :func:`argv` (pure) turns a grader's command into the bubblewrap
command line that runs it:

- **its own namespaces**: pid (a fresh ``/proc`` shows only the grader's processes; bubblewrap's reaper is pid 1),
  mount, network (no interface but its own loopback: nothing on the host is reachable), IPC, UTS, cgroup;
  ``--die-with-parent``. The session is new already: the runner starts bubblewrap with ``setsid`` and files as its
  standard streams, so there is no terminal to inject into. bubblewrap's ``--new-session`` is NOT used: it would
  call ``setsid`` before forking the jail's pid 1 and so take pid 1 out of the runner's process group, which is how
  the runner kills the jail and waits until its namespace is empty. Nor ``--as-pid-1``: bubblewrap's reaper stays
  pid 1, so the grader keeps ordinary signal semantics (a pid 1 ignores signals it has no handler for, SIGXFSZ at
  the output limit among them) and its orphans are reaped; when the grader exits, bubblewrap exits, and the runner
  kills that pid 1, which ends every process left in the namespace;
- **read-only** ``/usr`` (and the ``/bin``, ``/lib*``, ``/sbin`` links or directories of the host), the dynamic
  loader's cache and ``/etc/alternatives``, the Python interpreter's prefix, and the grader's own directory. Nothing
  else of the host: not the data directory (store, local cluster, admin kubeconfig), not ``$HOME``, not the repository,
  not the virtualenv (graders need only the standard library), not the host's ``/proc``;
- a private ``/tmp`` (tmpfs, at most :data:`TMPFS_BYTES`) that is the grader's working and home directory;
- an environment made from nothing (``--clearenv``) but the minimal variables the runner passes.

**Which uid.** When labctl runs as root, bubblewrap runs without a user namespace (root may mount) with every
capability dropped but ``CAP_SETUID``, ``CAP_SETGID`` and ``CAP_SETPCAP``, and its command is ``setpriv`` that drops to
the configured uid/gid (default 65534, ``nobody``), clears supplementary groups, empties the bounding and
inheritable capability sets and then runs the grader: the grader is that uid on the host too, with no capabilities
and ``no_new_privs`` (bubblewrap sets it). ``bwrap --unshare-user --uid 65534`` alone would NOT do: it only renames
root inside a user namespace, and the grader stays uid 0 on the host. Running ``setpriv`` before bubblewrap would
need unprivileged user namespaces and a host path every grader uid can traverse; this order needs neither.

When labctl is not root it cannot change uid: bubblewrap makes a user namespace (``--unshare-user``, nested ones
refused with ``--disable-userns``) and the grader keeps labctl's uid on the host. The namespaces and mounts above
still keep it away from labctl's files and processes.

**Without unprivileged user namespaces** (``kernel.unprivileged_userns_clone=0``, ``user.max_user_namespaces=0`` or
an AppArmor restriction): as root nothing changes (no user namespace is used); as another user the start-up probe
fails and labctl refuses to start, saying so, unless the development-only fallback is set.

**Fallback.** When bubblewrap is missing or cannot run, :func:`prepare` raises :class:`JailUnavailable` with what to
do, unless the policy allows the development fallback (``LABCTL_GRADER_UNJAILED_FALLBACK``, refused in production):
then graders run as plain limited subprocesses of labctl's uid, and a warning says so at start.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from labctl.errors import Unavailable
from labctl.settings import Settings

log = logging.getLogger("labctl.grading.jail")

NOBODY = 65534
TMPFS_BYTES = 64 * 2**20
#: Mounted read-only (or re-created as the same symlinks) when they exist on the host.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
#: Kept only for ``setpriv`` (as root): change uid and gid, drop the bounding set. ``setuid`` clears them all after.
SETPRIV_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
SCRATCH = "/tmp"  # noqa: S108 - a private tmpfs inside the jail, not the host's /tmp
_PROBE_TIMEOUT_S = 20.0
_FALLBACK_SETTING = "LABCTL_GRADER_UNJAILED_FALLBACK=true"


class JailUnavailable(Unavailable):
    """Graders cannot be jailed on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Policy:
    """What the operator asked for (from :class:`~labctl.settings.Settings`)."""

    bwrap: Path = Path("/usr/bin/bwrap")
    uid: int = NOBODY
    gid: int = NOBODY
    unjailed_fallback: bool = False
    tmpfs_bytes: int = TMPFS_BYTES


@dataclass(frozen=True)
class Mount:
    """One bubblewrap mount: a read-only bind of ``source`` at ``dest``, or a symlink ``dest`` -> ``source``."""

    kind: Literal["ro-bind", "symlink"]
    source: str
    dest: str


@dataclass(frozen=True)
class Jail:
    """A prepared way to run graders: bubblewrap (``bwrap`` set) or, as the named fallback, no jail at all."""

    bwrap: Path | None
    setpriv: Path | None = None  # labctl runs as root: drop to uid/gid with setpriv inside the sandbox
    uid: int = NOBODY
    gid: int = NOBODY
    system: tuple[Mount, ...] = ()
    tmpfs_bytes: int = TMPFS_BYTES
    unjailed_reason: str = ""

    @property
    def jailed(self) -> bool:
        return self.bwrap is not None

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.bwrap is None:
            return f"graders run UNJAILED as labctl's own uid (development fallback): {self.unjailed_reason}"
        who = (f"as uid {self.uid}/gid {self.gid} (setpriv)" if self.setpriv is not None
               else f"as labctl's uid {os.geteuid()} in a user namespace")
        return f"graders run in bubblewrap ({self.bwrap}) {who}: own pid/mount/net namespaces, read-only system"


def launcher_env() -> dict[str, str]:
    """The environment bubblewrap itself starts with. Never the controller's: without a uid change (labctl not
    root) the grader may read its pid 1's ``/proc/1/environ``, and that is bubblewrap's environment."""
    return {"PATH": os.defpath}


def policy(settings: Settings) -> Policy:
    return Policy(bwrap=settings.grader_bwrap, uid=settings.grader_uid, gid=settings.grader_gid,
                  unjailed_fallback=settings.grader_unjailed_fallback)


def unjailed(reason: str) -> Jail:
    """The fallback, by name: graders run as plain limited subprocesses (benchmarks and the fallback's own tests)."""
    return Jail(bwrap=None, unjailed_reason=reason)


def python() -> tuple[Path, tuple[Path, ...]]:
    """The interpreter Python graders run with (labctl's base interpreter, not the virtualenv) and what it reads.

    The virtualenv's ``python`` is a link to (or a copy of) the base interpreter; graders use only the standard
    library, so they run the base interpreter and the jail mounts its prefix, never the virtualenv.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    candidates = [base / "bin" / version, Path(sys.executable).resolve()]
    interpreter = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), Path(sys.executable))
    return interpreter, (base.resolve(), interpreter.parent.resolve())


def argv(jail: Jail, command: Sequence[str], *, readable: Sequence[Path], env: Mapping[str, str]) -> list[str]:
    """The bubblewrap command line that runs ``command`` in ``jail``, with ``readable`` mounted read-only."""
    if jail.bwrap is None:
        return list(command)
    line = [str(jail.bwrap), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent"]
    if jail.setpriv is None:
        line += ["--unshare-user", "--disable-userns"]
    line += ["--clearenv"]
    for name, value in env.items():
        line += ["--setenv", name, value]
    line += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(jail.tmpfs_bytes), "--tmpfs", SCRATCH]
    made: set[str] = {"/", "/proc", "/dev", SCRATCH}
    mounted: list[str] = []
    for mount in jail.system:
        line += _mount(mount, made)
        mounted.append(mount.dest)
    for path in _outermost(readable):
        if any(_inside(str(path), m) for m in mounted):
            continue
        line += _mount(Mount("ro-bind", str(path), str(path)), made)
        mounted.append(str(path))
    line += ["--chdir", SCRATCH]
    if jail.setpriv is not None:
        line += ["--cap-drop", "ALL"]
        for cap in SETPRIV_CAPS:
            line += ["--cap-add", cap]
        line += ["--", str(jail.setpriv), "--reuid", str(jail.uid), "--regid", str(jail.gid), "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all"]
    return [*line, "--", *command]


def exit_status(jail: Jail, code: int) -> int:
    """The grader's status as :class:`subprocess.Popen` reports it: negative for a signal.

    bubblewrap exits with 128 + N when its command died of signal N, as a shell does; read it back as ``-N``.
    """
    if jail.bwrap is not None and code > 128 and _is_signal(code - 128):
        return -(code - 128)
    return code


def start_failure(jail: Jail, stderr: str) -> str | None:
    """bubblewrap's or setpriv's own complaint (it could not set up or exec the grader), else None."""
    if jail.bwrap is None:
        return None
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    return first[:300] if first.startswith(("bwrap: ", "setpriv: ")) else None


def unreadable(jail: Jail, script: Path, root: Path) -> str | None:
    """Why the grader's uid could not read ``script`` (under ``root``, mounted at the same path), or None.

    Only when labctl is root and graders run as another uid: the file and its directories up to ``root`` must be
    readable (and searchable) by others, as a checkout's files are.
    """
    if jail.setpriv is None:
        return None
    mode = script.stat().st_mode
    wanted = stat.S_IROTH | (0 if script.suffix == ".py" else stat.S_IXOTH)
    if mode & wanted != wanted:
        return f"is not readable by the graders' uid {jail.uid} (chmod o+r{'' if script.suffix == '.py' else 'x'})"
    for directory in [script.parent, *script.parent.parents]:
        if not directory.is_relative_to(root):
            break
        if directory.stat().st_mode & stat.S_IXOTH == 0:
            return f"is in {directory}, which the graders' uid {jail.uid} cannot enter (chmod o+rx)"
    return None


def prepare(wanted: Policy, *, euid: int | None = None) -> Jail:
    """Check that graders can be jailed here (one probe run); the jail, the named fallback, or JailUnavailable."""
    euid = os.geteuid() if euid is None else euid
    jail, problem = _probe(wanted, euid=euid)
    if problem is None:
        log.info("%s", jail.describe())
        return jail
    if wanted.unjailed_fallback:
        fallback = unjailed(problem)
        log.warning("%s", fallback.describe())
        return fallback
    raise JailUnavailable(f"graders cannot be jailed: {problem}; or, in development only, set {_FALLBACK_SETTING} "
                          "to run them unjailed")


def _probe(wanted: Policy, *, euid: int) -> tuple[Jail, str | None]:
    jail = Jail(bwrap=wanted.bwrap, uid=wanted.uid, gid=wanted.gid, system=system_mounts(),
                tmpfs_bytes=wanted.tmpfs_bytes)
    if not (wanted.bwrap.is_file() and os.access(wanted.bwrap, os.X_OK)):
        return jail, (f"bubblewrap is not installed ({wanted.bwrap} is missing): install the Debian package "
                      "'bubblewrap' (make system-packages does, as root)")
    if euid == 0:
        found = shutil.which("setpriv")
        if found is None:
            return jail, "setpriv is missing (Debian package 'util-linux'): root needs it to drop graders' uid"
        jail = replace(jail, setpriv=Path(found).resolve())
    interpreter, libraries = python()
    expected = wanted.uid if euid == 0 else euid
    command = argv(jail, [str(interpreter), "-c", "import os; print(os.getuid(), os.getgid())"],
                   readable=libraries, env={"PATH": "/usr/bin:/bin"})
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False,
                              env=launcher_env())
    except (OSError, subprocess.SubprocessError) as exc:
        return jail, f"{wanted.bwrap} could not be run: {exc}"
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        hint = ("" if euid == 0 else "; labctl runs as uid "
                f"{euid}, so bubblewrap needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0), or run labctl as root (graders then drop to "
                f"uid {wanted.uid} without user namespaces)")
        return jail, f"bubblewrap cannot start a sandbox here ({detail}){hint}"
    seen = done.stdout.split()
    if seen[:1] != [str(expected)]:
        return jail, f"the probe grader ran as uid {' '.join(seen) or '?'}, expected {expected}"
    return jail, None


def system_mounts() -> tuple[Mount, ...]:
    """The host's system directories as they are here: merged-/usr links become links, real directories binds."""
    mounts: list[Mount] = []
    for name in (*SYSTEM_DIRS, *SYSTEM_FILES):
        path = Path(name)
        if path.is_symlink():
            mounts.append(Mount("symlink", str(path.readlink()), name))
        elif path.exists():
            mounts.append(Mount("ro-bind", name, name))
    return tuple(mounts)


def _mount(mount: Mount, made: set[str]) -> list[str]:
    """The options for ``mount``, preceded by world-searchable parent directories (bubblewrap would make 0700 ones
    under a restrictive umask, which the grader's uid could not traverse)."""
    line: list[str] = []
    parents = list(reversed(Path(mount.dest).parents))
    for parent in parents:
        text = str(parent)
        if text not in made:
            line += ["--perms", "0755", "--dir", text]
            made.add(text)
    made.add(mount.dest)
    return [*line, f"--{mount.kind}", mount.source, mount.dest]


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """``paths`` without those inside another one, sorted (so a parent's bind never hides a child's)."""
    unique = sorted({str(p) for p in paths})
    kept: list[str] = []
    for path in unique:
        if not any(_inside(path, k) for k in kept):
            kept.append(path)
    return [Path(p) for p in kept]


def _inside(path: str, outer: str) -> bool:
    return path == outer or path.startswith(outer.rstrip("/") + "/")


def _is_signal(number: int) -> bool:
    try:
        signal.Signals(number)
    except ValueError:
        return False
    return True
