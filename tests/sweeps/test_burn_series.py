"""The learner page's budget gauge and burn-rate chart follow the ledger, sweep by sweep, with a fake clock: each
metering adds one reading in the transaction that accrues the money, and the page shows what the ledger holds."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from labctl.localcluster.cluster import LocalCluster
from labctl.store import meter_readings
from tests.sweeps.test_meter_and_timers import HEADERS, _stop_all, _world


def test_each_sweep_adds_a_reading_and_the_page_shows_the_ledger(tmp_path: Path, local_cluster: LocalCluster) -> None:
    w = _world(tmp_path, local_cluster)
    with w.client:
        try:
            session = w.start("gpu-rightsizing", "gauge-watcher")
            sid = session["id"]
            link = urlsplit(session["learner_url"])
            opened = w.client.get(f"{link.path}?{link.query}", follow_redirects=False)
            assert opened.status_code == 303, opened.text
            for minutes in (0, 10, 10):
                w.clock.advance(minutes=minutes)
                report = w.sweep()
                assert report.errors == [], report.errors
            with w.app.state.parts.runtime.store.session() as db:
                series = meter_readings.series(db, session_id=sid)
            answer = w.client.get(f"/v1/sessions/{sid}", headers=HEADERS).json()
            assert len(series) == 3 and [r.at for r in series] == sorted(r.at for r in series)
            assert series[-1].accrued_usd == Decimal(str(answer["cost"]["accrued_usd"])).quantize(Decimal("1e-6"))
            assert series[0].accrued_usd < series[1].accrued_usd < series[2].accrued_usd
            assert series[-1].service  # the lab simulates demand: its workloads' figures come with the reading

            state = w.client.get(f"/learn/{sid}/state")
            assert state.status_code == 200, state.text
            body = state.json()
            assert body["accrued_usd"] == answer["cost"]["accrued_usd"]
            budget = body["panels"]["budget"]
            assert f'value="{answer["cost"]["accrued_usd"]}"' in budget  # the gauge
            assert "over 3 meter readings" in budget  # the chart's summary
            spent = re.search(r"data-spent>\$([0-9.,]+)<", budget)
            assert spent and float(spent.group(1)) == round(answer["cost"]["accrued_usd"], 4)
            assert "Cost per 1,000 requests" in body["panels"]["workloads"]
        finally:
            _stop_all(w)
