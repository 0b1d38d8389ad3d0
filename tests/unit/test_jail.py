"""The grader jail's pure parts: the bubblewrap command line per mode, exit statuses, bubblewrap's own complaints."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.grading import jail

SYSTEM = (jail.Mount("ro-bind", "/usr", "/usr"), jail.Mount("symlink", "usr/bin", "/bin"),
          jail.Mount("ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"))
AS_ROOT = jail.Jail(bwrap=Path("/usr/bin/bwrap"), setpriv=Path("/usr/bin/setpriv"), uid=4242, gid=4343,
                    system=SYSTEM, tmpfs_bytes=1024)
AS_USER = jail.Jail(bwrap=Path("/usr/bin/bwrap"), system=SYSTEM, tmpfs_bytes=1024)
COMMAND = ["/opt/py/bin/python3.11", "/srv/labctl/graders/tag_coverage.py"]
READABLE = [Path("/srv/labctl/graders"), Path("/opt/py"), Path("/opt/py/bin"), Path("/usr/lib/python3")]


def options(line: list[str], name: str) -> list[list[str]]:
    """Every occurrence of a two-argument option (``--ro-bind SRC DEST``) as [SRC, DEST]."""
    return [line[i + 1:i + 3] for i, word in enumerate(line) if word == name]


def test_as_root_the_grader_drops_to_the_configured_uid_with_setpriv_and_no_user_namespace() -> None:
    line = jail.argv(AS_ROOT, COMMAND, readable=READABLE, env={"HOME": "/tmp"})
    assert line[0] == "/usr/bin/bwrap"
    assert {"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
            "--clearenv"} <= set(line)
    assert "--unshare-user" not in line  # root mounts without one; a user namespace would keep uid 0 outside
    assert "--new-session" not in line  # it would take the jail's pid 1 out of the runner's process group
    tail = line[line.index("--cap-drop"):]
    assert tail == ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add",
                    "CAP_SETPCAP", "--", "/usr/bin/setpriv", "--reuid", "4242", "--regid", "4343", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--", *COMMAND]


def test_without_root_bubblewrap_makes_a_user_namespace_and_refuses_nested_ones() -> None:
    line = jail.argv(AS_USER, COMMAND, readable=READABLE, env={})
    assert {"--unshare-user", "--disable-userns"} <= set(line)
    assert not {"--cap-drop", "--cap-add", "/usr/bin/setpriv"} & set(line)
    assert line[-3:] == ["--", *COMMAND]


def test_only_what_a_grader_needs_is_mounted_read_only_with_searchable_parents() -> None:
    line = jail.argv(AS_ROOT, COMMAND, readable=READABLE, env={"HOME": "/tmp", "LANG": "C.UTF-8"})
    # /opt/py/bin is inside /opt/py and /usr/lib/python3 inside the system's /usr: one bind each, no more.
    assert options(line, "--ro-bind") == [["/usr", "/usr"], ["/etc/ld.so.cache", "/etc/ld.so.cache"],
                                          ["/opt/py", "/opt/py"], ["/srv/labctl/graders", "/srv/labctl/graders"]]
    assert options(line, "--symlink") == [["usr/bin", "/bin"]]
    assert "--bind" not in line and "--dev-bind" not in line  # nothing of the host is writable
    made = [line[i + 3] for i, word in enumerate(line) if word == "--perms" and line[i + 2] == "--dir"]
    assert made == ["/etc", "/opt", "/srv", "/srv/labctl"]
    assert all(line[i + 1] == "0755" for i, word in enumerate(line) if word == "--perms" and line[i + 2] == "--dir")
    assert options(line, "--setenv") == [["HOME", "/tmp"], ["LANG", "C.UTF-8"]]
    assert line.index("--clearenv") < line.index("--setenv")
    assert line[line.index("--proc"):line.index("--proc") + 2] == ["--proc", "/proc"]  # a fresh one, not the host's
    tmpfs = line.index("--tmpfs")
    assert line[tmpfs - 4:tmpfs + 2] == ["--perms", "1777", "--size", "1024", "--tmpfs", "/tmp"]
    assert line[line.index("--chdir") + 1] == "/tmp"


def test_a_readable_dir_under_tmp_is_bound_after_the_private_tmp_so_it_stays_visible() -> None:
    line = jail.argv(AS_ROOT, COMMAND, readable=[Path("/tmp/pytest/graders")], env={})
    assert line.index("--tmpfs") < line.index("/tmp/pytest/graders")


def test_unjailed_the_command_runs_as_it_is() -> None:
    fallback = jail.unjailed("bubblewrap is not installed")
    assert jail.argv(fallback, COMMAND, readable=READABLE, env={"HOME": "/x"}) == COMMAND
    assert not fallback.jailed
    assert fallback.describe() == ("graders run UNJAILED as labctl's own uid (development fallback): bubblewrap is "
                                   "not installed")


@pytest.mark.parametrize(("code", "jailed", "unjailed"), [
    (0, 0, 0), (3, 3, 3), (128 + 25, -25, 153), (128 + 9, -9, 137), (-11, -11, -11), (255, 255, 255)])
def test_bubblewraps_128_plus_n_reads_as_signal_n(code: int, jailed: int, unjailed: int) -> None:
    assert jail.exit_status(AS_ROOT, code) == jailed
    assert jail.exit_status(jail.unjailed("x"), code) == unjailed


@pytest.mark.parametrize(("stderr", "expected"), [
    ("bwrap: Can't find source path /srv/x: No such file or directory\n", "bwrap: Can't find source path /srv/x: "
                                                                         "No such file or directory"),
    ("\nsetpriv: failed to execute /srv/g: No such file or directory\n", "setpriv: failed to execute /srv/g: No "
                                                                         "such file or directory"),
    ("Traceback (most recent call last):\nbwrap: imitated\n", None),
    ("", None),
])
def test_bubblewraps_own_complaints_are_told_apart_from_the_graders(stderr: str, expected: str | None) -> None:
    assert jail.start_failure(AS_ROOT, stderr) == expected
    assert jail.start_failure(jail.unjailed("x"), stderr) is None
