"""A background job that meets a store outage logs one line when the outage starts and one when it ends, not a
traceback every pass; a job's real bug still logs its traceback. The outage is a real one: SQLite cannot open a
database file whose directory was removed, and opens it again once the directory is back."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from labctl import runtime
from labctl.settings import Settings
from labctl.store.db import open_store
from tests.support.wait import dead_kubeconfig


def test_an_outage_is_two_lines_and_a_bug_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime.build(Settings(database_url=f"sqlite:///{tmp_path / 'labctl.db'}", data_dir=tmp_path,
                                kubeconfig=dead_kubeconfig(tmp_path), replica_id="replica-a"))
    rt.store.migrate()
    flaky = tmp_path / "flaky"
    store = open_store(f"sqlite:///{flaky / 'labctl.db'}")  # makes the directory
    shutil.rmtree(flaky)  # the database file cannot be opened now

    def job() -> None:
        with store.session() as db:
            db.execute(text("SELECT 1"))

    def bug() -> None:
        raise KeyError("a bug")

    loops = runtime.Loops(rt, jobs={})
    probe, broken = loops._guarded("probe", job), loops._guarded("broken", bug)
    try:
        with caplog.at_level(logging.INFO, logger="labctl.runtime"):
            for _ in range(5):
                probe()
            flaky.mkdir()  # the store answers again
            probe()
            probe()
            broken()
    finally:
        store.engine.dispose()
        rt.close()
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines[:2] == [
        ("WARNING", "background job probe paused: the store did not answer (OperationalError); trying again every "
                    "pass", False),
        ("INFO", "background job probe resumed: the store answers again", False)]
    assert lines[2][:2] == ("ERROR", "background job broken failed") and lines[2][2]
    assert len(lines) == 3
