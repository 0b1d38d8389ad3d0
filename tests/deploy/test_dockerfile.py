"""The Dockerfile, read without a Docker engine: a pinned slim Python 3.11 base, the lock installed with its hashes,
bubblewrap, a numeric non-root user, every COPY source present in the repository, and an entrypoint that is a real
labctl command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.settings import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
LABCTL = Path(sys.executable).parent / "labctl"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def of(kind: str) -> list[str]:
    return [rest for word, rest in instructions() if word == kind]


def test_the_base_is_a_pinned_slim_python_3_11() -> None:
    [base] = of("FROM")
    image = base.split()[0]
    name, _, tag = image.partition("@")[0].partition(":")
    assert name in ("python", "docker.io/library/python"), image
    assert re.fullmatch(r"3\.11\.\d+-slim(-[a-z]+)?", tag) or "@sha256:" in image, f"{image} is not pinned"


def test_the_lock_is_installed_with_its_hashes_and_bubblewrap_is_there() -> None:
    runs = " ".join(of("RUN"))
    assert re.search(r"pip install [^&]*--require-hashes[^&]*-r /app/requirements\.lock", runs), runs
    assert re.search(r"apt-get install [^&]*\bbubblewrap\b", runs), runs
    assert "requirements.lock" in " ".join(of("COPY"))


def test_it_runs_as_a_numeric_non_root_user() -> None:
    users = of("USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]
    last_user = max(i for i, (word, _) in enumerate(instructions()) if word == "USER")
    assert not [w for w, _ in instructions()[last_user:] if w == "RUN"], "RUN after USER runs as the app user"


@pytest.mark.parametrize("copy", of("COPY"))
def test_every_copied_path_exists_in_the_repository(copy: str) -> None:
    parts = shlex.split(copy)
    assert not any(p.startswith("--from") for p in parts)
    *sources, _target = parts
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "--error-unmatch", source],
                                 capture_output=True, text=True, check=False)
        assert tracked.returncode == 0, f"COPY {source}: not in git, so not in a clean checkout"


def test_the_entrypoint_is_a_real_labctl_command() -> None:
    [entrypoint] = of("ENTRYPOINT")
    argv = json.loads(entrypoint)  # exec form: signals reach labctl, no shell in between
    assert argv[0] == "labctl", argv
    assert not of("CMD") or json.loads(of("CMD")[0])
    done = subprocess.run([str(LABCTL), *argv[1:], "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Run the labctl API service" in done.stdout
