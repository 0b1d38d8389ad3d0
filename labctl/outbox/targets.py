"""Where webhooks may be sent: public addresses only, unless the operator's allow-list names the target.

An instructor's endpoint URL is a request labctl makes on their behalf from inside the network; pointed at loopback,
a private network, link-local or a cloud metadata service (169.254.169.254, fd00:ec2::254) it would reach what only
labctl should reach. So a host is checked by resolving it and judging **every** address it resolves to:
loopback, link-local, private, multicast, unspecified, reserved and metadata addresses are refused unless
``LABCTL_WEBHOOK_ALLOW`` names the host or a network (CIDR) holding the address.

The check runs twice: when the endpoint is created (a 422 that says which address is refused and why), and again at
each connection, because a name can resolve elsewhere later (DNS rebinding). :class:`PinnedTransport` resolves and
checks, then connects to the checked address itself, keeping the original host in the ``Host`` header and as the TLS
server name (SNI, certificate check), so no second lookup happens between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from labctl.errors import Unprocessable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def parse(text: str) -> Address:
    """An address from a resolver or a URL; an IPv4-mapped IPv6 address is judged as the IPv4 address it carries."""
    address = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def category(address: Address) -> str | None:
    """Why an address is not a public one (``None`` when it is)."""
    if address in METADATA:
        return "a cloud metadata address"
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    return None if address.is_global else "not public"


@dataclass(frozen=True)
class TargetPolicy:
    """The allow-list and the resolver; :meth:`addresses` is the check."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()
    resolve: Resolver = field(default=system_resolve, compare=False)

    @classmethod
    def from_entries(cls, entries: Iterable[str], *, resolve: Resolver = system_resolve) -> TargetPolicy:
        """From ``LABCTL_WEBHOOK_ALLOW`` entries: each a CIDR, an IP address or a host name."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(_normal_host(entry))
        return cls(networks=tuple(networks), hosts=frozenset(hosts), resolve=resolve)

    def refusal(self, host: str, addresses: list[str]) -> str | None:
        """Pure: why ``host`` resolving to ``addresses`` may not be a target, or ``None`` when it may."""
        if _normal_host(host) in self.hosts:
            return None
        if not addresses:
            return f"{host} resolves to no address"
        for text in addresses:
            address = parse(text)
            why = category(address)
            if why and not any(address in net for net in self.networks if net.version == address.version):
                shown = host if _literal(host) is not None else f"{host} resolves to {text}, which"
                return (f"{shown} is {why}; webhooks go to public addresses only, unless LABCTL_WEBHOOK_ALLOW "
                        "names the host or its network")
        return None

    def addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return its addresses when every one may be a target; else :class:`Unprocessable`."""
        literal = _literal(host)
        try:
            found = [literal] if literal else self.resolve(host, port)
        except OSError as exc:
            raise Unprocessable(f"the webhook host {host} cannot be resolved: {exc}") from None
        why = self.refusal(host, found)
        if why:
            raise Unprocessable(why)
        return found


class TargetRefused(httpx.TransportError):
    """The connection was not made: the target is not allowed (now), or it does not resolve."""


class PinnedTransport(httpx.BaseTransport):
    """Checks each request's host with the policy and connects to the checked address, not to a fresh lookup."""

    def __init__(self, policy: TargetPolicy, inner: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            address = self.policy.addresses(host, port)[0]
        except Unprocessable as exc:
            raise TargetRefused(f"refused: {exc.detail}", request=request) from None
        if address != host:
            # The Host header was set from the URL when the request was built; the TLS layer verifies the
            # certificate against the SNI name.
            request.url = request.url.copy_with(host=address)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None  # a name, not an address


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")
