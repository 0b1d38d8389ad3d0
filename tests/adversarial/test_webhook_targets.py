"""Webhook endpoints cannot be aimed inside the network: refused at creation by a real `labctl serve`, and refused
again at connect time when a name that was public when checked resolves elsewhere later (DNS rebinding).

The rebinding cases need a name whose answer the test controls. :class:`FakeDNS` is a fake resolver, named as one:
no real DNS server runs here, and the resolver hook of the target policy is the seam the service uses for lookups.
Everything else is real: the store, the dispatcher, its HTTP transport and loopback receivers (one speaking TLS
with a certificate from a CA made for the test, to show the pinned connection still names and verifies the host).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class TLSReceiver:
    """An HTTPS server on 127.0.0.1 with a certificate for one DNS name from a CA made for the test; records the
    TLS server name (SNI) and the Host header of each request."""

    def __init__(self, tmp_path: Path, dns_name: str) -> None:
        self.ca_file, cert_file, key_file = _certificates(tmp_path, dns_name)
        self.seen: list[tuple[str | None, str]] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        sni: list[str | None] = []
        context.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment,func-returns-value]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.seen.append((sni[-1] if sni else None, self.headers["host"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client_trusting_the_ca(self) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(self.ca_file)))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _certificates(directory: Path, dns_name: str) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labctl test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_file, cert_file, key_file


@pytest.mark.parametrize("certificate_for", ["receiver.test", "someone-else.test"])
def test_tls_to_the_pinned_address_names_and_verifies_the_original_host(store: Store, tmp_path: Path,
                                                                       certificate_for: str) -> None:
    tls = TLSReceiver(tmp_path, certificate_for)
    try:
        dns = FakeDNS(receiver_test=["127.0.0.1"])
        policy = TargetPolicy.from_entries(["127.0.0.1/32"], resolve=dns)
        Webhooks(store, targets=policy).create(url=f"https://receiver.test:{tls.port}/hook", events="*")
        _emit(store)
        with Dispatcher(store, targets=policy, transport=tls.client_trusting_the_ca()) as dispatcher:
            assert dispatcher.run_once() == 1
        with store.session() as db:
            (delivery,) = db.query(WebhookDelivery).all()
    finally:
        tls.stop()
    if certificate_for == "receiver.test":
        assert delivery.state == "delivered", delivery.last_error
        assert tls.seen == [("receiver.test", f"receiver.test:{tls.port}")]
    else:  # the certificate is checked against the name in the URL, not against the address connected to
        assert delivery.state == "failed" and tls.seen == []
        assert "certificate" in str(delivery.last_error).lower()
