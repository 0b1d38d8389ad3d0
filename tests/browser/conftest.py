"""The browser test world: Debian's Chromium driven by Playwright, axe-core from npm, a real `labctl serve` on the
tests' local cluster.

Playwright's own browser builds cannot be downloaded here, so the tests launch the Debian package ``chromium``
(``LABCTL_CHROMIUM`` names another binary). A missing browser or axe-core fails the tests with the command that
installs it: they are never skipped. Screenshots go to ``tests/browser/screenshots/`` (ignored by git), and each
path is printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from labctl.localcluster.cluster import LocalCluster
from tests.support.server import Server

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("LABCTL_CHROMIUM", "/usr/bin/chromium"))
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = HERE / "screenshots"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: install the Debian package "
                    "(apt-get install chromium, or `make system-packages` as root), or set LABCTL_CHROMIUM")
    return CHROMIUM


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `make browser-deps` (npm ci in tests/browser)")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    # --no-sandbox: Chromium's own sandbox needs user namespaces it cannot get as root in CI.
    launched = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("browser"), kubeconfig=local_cluster.kubeconfig).start()
    yield srv
    srv.stop_all_sessions()
    srv.stop()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
