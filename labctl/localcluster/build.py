"""Build the local control plane's binaries from Go modules, cached outside the repo by version.

Upstream ``k8s.io/kubernetes`` cannot be ``go install``-ed (its go.mod points the staging modules at ``./staging``
with replace directives), so we write a small wrapper module of our own that requires it and pins every staging
module to its published ``v0.X.Y`` twin, then ``go build`` the command packages with version ldflags so that
``kubectl version`` reports the real version. etcd gets its own wrapper so the two dependency graphs never move each
other. kwok, kwokctl and metrics-server have no replace directives and install with plain ``go install``;
metrics-server is stamped through ``k8s.io/client-go/pkg/version`` (the variables its own release build sets), so
``metrics-server --version`` (which kwokctl reads) reports the real version.

This module uses the standard library only, so it runs before the virtualenv exists:
``python -m labctl.localcluster.build``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
METRICS_SERVER_VERSION = "v0.8.0"
METRICS_SERVER_COMMIT = "d66279c6426c6581d9656fe3d42bc52db7c29597"  # the commit the v0.8.0 tag points at

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

# The staging modules of k8s.io/kubernetes 1.36 (each published as k8s.io/<name> v0.36.x).
STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go", "cloud-provider",
    "cluster-bootstrap", "code-generator", "component-base", "component-helpers", "controller-manager", "cri-api",
    "cri-client", "cri-streaming", "csi-translation-lib", "dynamic-resource-allocation", "endpointslice",
    "externaljwt", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl",
    "kubelet", "metrics", "mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin",
    "sample-controller", "streaming",
)


class BuildError(RuntimeError):
    """A build step failed; the message says what to do."""


@dataclass(frozen=True)
class Toolset:
    """Where the binaries of one version set live."""

    root: Path

    @property
    def kube_bin(self) -> Path:
        return self.root / f"kubernetes-{KUBE_VERSION}"

    @property
    def etcd(self) -> Path:
        return self.root / f"etcd-{ETCD_VERSION}" / "etcd"

    @property
    def kwok_bin(self) -> Path:
        return self.root / f"kwok-{KWOK_VERSION}"

    @property
    def kwok(self) -> Path:
        return self.kwok_bin / "kwok"

    @property
    def kwokctl(self) -> Path:
        return self.kwok_bin / "kwokctl"

    @property
    def kubectl(self) -> Path:
        return self.kube_bin / "kubectl"

    @property
    def metrics_server(self) -> Path:
        return self.root / f"metrics-server-{METRICS_SERVER_VERSION}" / "metrics-server"

    def all_binaries(self) -> list[Path]:
        return [*(self.kube_bin / c for c in KUBE_COMMANDS), self.etcd, self.kwok, self.kwokctl, self.metrics_server]

    def missing(self) -> list[Path]:
        return [p for p in self.all_binaries() if not os.access(p, os.X_OK)]


def default_cache_dir() -> Path:
    """``$LABCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/labctl``, else ``~/.cache/labctl``."""
    explicit = os.environ.get("LABCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "labctl"


def toolset(cache_dir: Path | None = None) -> Toolset:
    return Toolset((cache_dir or default_cache_dir()) / "bin")


def kube_wrapper_gomod() -> str:
    """The go.mod of the wrapper module that builds the Kubernetes commands."""
    staging_version = "v0." + KUBE_VERSION.split(".", 1)[1]
    replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging_version}" for m in STAGING_MODULES)
    return (
        "module labctl.local/kubebuild\n\ngo 1.26\n\n"
        f"require k8s.io/kubernetes {KUBE_VERSION}\n\nreplace (\n{replaces}\n)\n"
    )


def etcd_wrapper_gomod() -> str:
    return f"module labctl.local/etcdbuild\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"


def kube_ldflags() -> str:
    major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={KUBE_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def metrics_server_ldflags() -> str:
    """The version variables metrics-server's own release build sets (all in client-go's version package)."""
    pkg = "k8s.io/client-go/pkg/version"
    return " ".join(["-s", "-w", f"-X {pkg}.gitVersion={METRICS_SERVER_VERSION}",
                     f"-X {pkg}.gitCommit={METRICS_SERVER_COMMIT}", f"-X {pkg}.gitTreeState=clean",
                     f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"])


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "Go is not installed or not on PATH. labctl builds its local Kubernetes control plane from Go modules: "
            "install Go >= 1.26 (https://go.dev/doc/install) and run the command again."
        )
    return go


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise BuildError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); last lines of {log}:\n" + "\n".join(tail))


def _install_atomically(built: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.replace(dest)


def build(cache_dir: Path | None = None, *, echo: bool = True) -> Toolset:
    """Build whatever binaries are missing from the cache; a warm cache costs one stat per binary."""
    tools = toolset(cache_dir)
    if not tools.missing():
        return tools
    go = _go()
    work = tools.root.parent / "build"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", "GOTOOLCHAIN": "local"}

    def say(msg: str) -> None:
        if echo:
            print(f"[labctl build] {msg}", file=sys.stderr, flush=True)

    kube_targets = [tools.kube_bin / c for c in KUBE_COMMANDS]
    if any(not os.access(p, os.X_OK) for p in kube_targets):
        started = time.monotonic()
        say(f"building Kubernetes {KUBE_VERSION} ({', '.join(KUBE_COMMANDS)}); cold builds take tens of minutes")
        src = work / f"kubernetes-{KUBE_VERSION}"
        src.mkdir(parents=True, exist_ok=True)
        (src / "go.mod").write_text(kube_wrapper_gomod())
        out = src / "out"
        out.mkdir(exist_ok=True)
        pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS]
        _run([go, "build", "-trimpath", "-ldflags", kube_ldflags(), "-o", str(out) + "/", *pkgs], cwd=src, env=env,
             log=log)
        for c in KUBE_COMMANDS:
            _install_atomically(out / c, tools.kube_bin / c)
        say(f"Kubernetes built in {time.monotonic() - started:.0f}s")

    if not os.access(tools.etcd, os.X_OK):
        started = time.monotonic()
        say(f"building etcd {ETCD_VERSION}")
        src = work / f"etcd-{ETCD_VERSION}"
        src.mkdir(parents=True, exist_ok=True)
        (src / "go.mod").write_text(etcd_wrapper_gomod())
        _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(src / "etcd"), "go.etcd.io/etcd/server/v3"],
             cwd=src, env=env, log=log)
        _install_atomically(src / "etcd", tools.etcd)
        say(f"etcd built in {time.monotonic() - started:.0f}s")

    if not (os.access(tools.kwok, os.X_OK) and os.access(tools.kwokctl, os.X_OK)):
        started = time.monotonic()
        say(f"installing kwok and kwokctl {KWOK_VERSION}")
        gobin = work / f"kwok-{KWOK_VERSION}"
        kenv = {**env, "GOBIN": str(gobin), "GOFLAGS": "-buildvcs=false"}
        _run([go, "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}",
              f"sigs.k8s.io/kwok/cmd/kwokctl@{KWOK_VERSION}"], cwd=work, env=kenv, log=log)
        for name in ("kwok", "kwokctl"):
            _install_atomically(gobin / name, tools.kwok_bin / name)
        say(f"kwok built in {time.monotonic() - started:.0f}s")

    if not os.access(tools.metrics_server, os.X_OK):
        started = time.monotonic()
        say(f"installing metrics-server {METRICS_SERVER_VERSION}")
        gobin = work / f"metrics-server-{METRICS_SERVER_VERSION}"
        menv = {**env, "GOBIN": str(gobin), "GOFLAGS": "-buildvcs=false"}
        _run([go, "install", "-trimpath", "-ldflags", metrics_server_ldflags(),
              f"sigs.k8s.io/metrics-server/cmd/metrics-server@{METRICS_SERVER_VERSION}"], cwd=work, env=menv, log=log)
        _install_atomically(gobin / "metrics-server", tools.metrics_server)
        say(f"metrics-server built in {time.monotonic() - started:.0f}s")

    still = tools.missing()
    if still:
        raise BuildError(f"build finished but these binaries are missing: {', '.join(map(str, still))}")
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        tools = build(args.cache_dir)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"binaries ready in {tools.root} ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
