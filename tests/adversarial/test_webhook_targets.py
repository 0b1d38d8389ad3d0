"""Webhook endpoints cannot be aimed inside the network: refused at creation by a real `labctl serve`, and refused
again at connect time when a name that was public when checked resolves elsewhere later (DNS rebinding).

The rebinding cases need a name whose answer the test controls. :class:`FakeDNS` is a fake resolver, named as one:
no real DNS server runs here, and the resolver hook of the target policy is the seam the service uses for lookups.
Everything else is real: the store, the dispatcher, its HTTP transport and a loopback receiver.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from labctl.errors import Unprocessable
from labctl.localcluster.cluster import LocalCluster
from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.events import emit
from labctl.outbox.targets import TargetPolicy
from labctl.store.db import Store, open_store
from labctl.store.webhook_models import WebhookDelivery
from tests.support.server import Server
from tests.webhooks.receiver import Receiver


class FakeDNS:
    """A fake resolver: answers from a table the test edits (a stand-in for an attacker's DNS zone)."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {name.replace("_", "."): addresses for name, addresses in answers.items()}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise OSError(f"fake DNS has no record for {host}")
        return list(self.answers[host])


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service with no allow-list: only public targets."""
    srv = Server(data_dir=tmp_path_factory.mktemp("targets"), kubeconfig=local_cluster.kubeconfig).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1:8080/hook", "127.0.0.1 is loopback"),
    ("http://localhost:8080/hook", "localhost resolves to 127.0.0.1, which is loopback"),
    ("http://[::1]/hook", "::1 is loopback"),
    ("http://10.20.30.40/hook", "10.20.30.40 is private"),
    ("http://192.168.1.10/hook", "192.168.1.10 is private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
    ("http://169.254.10.1/hook", "169.254.10.1 is link-local"),
    ("http://0.0.0.0:8080/hook", "0.0.0.0 is unspecified"),
    ("http://224.0.0.251/hook", "224.0.0.251 is multicast"),
    ("http://[::ffff:127.0.0.1]/hook", "is loopback"),
    ("http://100.64.0.1/hook", "100.64.0.1 is not public"),
])
def test_inside_targets_are_refused_at_creation(server: Server, url: str, why: str) -> None:
    with server.client() as admin:
        r = admin.post("/v1/webhooks/endpoints", json={"url": url, "events": "*"})
        listed = admin.get("/v1/webhooks/endpoints").json()
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert why in r.json()["detail"] and "LABCTL_WEBHOOK_ALLOW" in r.json()["detail"]
    assert listed == []


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'labctl.db'}")
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _emit(store: Store) -> str:
    with store.session() as db:
        return emit(db, type="session.ready", data={"session_id": "s-1"}, session_id="s-1", now=datetime.now(UTC)).id


def test_every_address_of_a_name_is_checked_at_creation(store: Store) -> None:
    dns = FakeDNS(exam_test=["93.184.216.34", "10.0.0.7"])
    with pytest.raises(Unprocessable, match=r"exam.test resolves to 10.0.0.7, which is private"):
        Webhooks(store, targets=TargetPolicy(resolve=dns)).create(url="https://exam.test/hook", events="*")
    with pytest.raises(Unprocessable, match="cannot be resolved"):
        Webhooks(store, targets=TargetPolicy(resolve=dns)).create(url="https://nowhere.test/hook", events="*")


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(store: Store,
                                                                              receiver: Receiver) -> None:
    dns = FakeDNS(exam_test=["93.184.216.34"])  # public when the instructor adds it
    policy = TargetPolicy(resolve=dns)
    endpoint = Webhooks(store, targets=policy).create(url=f"http://exam.test:{receiver.port}/hook", events="*")
    receiver.secrets.append(endpoint.secret)
    dns.answers["exam.test"] = ["127.0.0.1"]  # ... and the attacker's zone now points at the service's own host
    msg = _emit(store)
    with Dispatcher(store, targets=policy) as dispatcher:
        assert dispatcher.run_once() == 1
    with store.session() as db:
        (delivery,) = db.query(WebhookDelivery).all()
    assert receiver.arrivals == []
    assert delivery.state == "failed" and delivery.event_id == msg
    assert delivery.last_error is not None
    assert "TargetRefused: refused: exam.test resolves to 127.0.0.1, which is loopback" in delivery.last_error


def test_the_checked_address_is_the_one_connected_to_with_the_original_host(store: Store,
                                                                           receiver: Receiver) -> None:
    # No real resolver knows receiver.test: a delivery that arrives was sent to the address the policy checked.
    dns = FakeDNS(receiver_test=["127.0.0.1"])
    policy = TargetPolicy.from_entries(["127.0.0.1/32"], resolve=dns)
    endpoint = Webhooks(store, targets=policy).create(url=f"http://receiver.test:{receiver.port}/hook",
                                                      events="*")
    receiver.secrets.append(endpoint.secret)
    with pytest.raises(httpx.ConnectError):
        httpx.post(endpoint.url, content=b"{}", timeout=5)  # the name means nothing to the system resolver
    msg = _emit(store)
    lookups_before = len(dns.lookups)
    with Dispatcher(store, targets=policy) as dispatcher:
        assert dispatcher.run_once() == 1
    (arrival,) = receiver.arrivals
    assert arrival.verified and arrival.msg_id == msg
    assert arrival.headers["host"] == f"receiver.test:{receiver.port}"
    assert len(dns.lookups) == lookups_before + 1  # one lookup per connection, checked and used
