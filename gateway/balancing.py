"""Client-side load balancing over the replicas of one service.

An upstream address is one of:

- `host:port`: one address (a name may still resolve to several);
- `dns:///name:port`: every address the name resolves to, e.g. a Kubernetes headless
  Service (`dns:///stt-headless:50051`), re-resolved when a connection goes away;
- `a:port,b:port,...`: a fixed list of IP addresses (`ipv4:` or `ipv6:` targets);
- any other gRPC target URI (`ipv4:...`, `unix:...`), passed through.

Calls are spread with gRPC's `round_robin` policy, and gRPC client-side health checking
(`healthCheckConfig`) keeps a replica that reports NOT_SERVING (loading, draining) out of
the rotation: each connection watches `grpc.health.v1` on the replica and gets no new
call until it says SERVING. Servers recycle connections (`max_connection_age`), so a
long-lived channel re-resolves and new replicas get traffic.

Sources: gRPC load-balancing and health-checking designs (grpc/proposal A17 "client-side
health checking"; doc/load-balancing.md; doc/naming.md for target URIs).
"""

from __future__ import annotations

import ipaddress
from typing import Any

_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


class AddressError(ValueError):
    """An upstream address that cannot be turned into a gRPC target."""


def _split_host_port(address: str) -> tuple[str, str]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AddressError(f"{address!r} is not host:port")
    return host.strip("[]"), port


def channel_target(address: str) -> str:
    """The gRPC target for an upstream address (see the module docstring).

    Raises AddressError for an empty address or a list that names a host instead of an
    IP address (gRPC lists are IP-only; use a DNS name that resolves to all replicas)."""
    address = address.strip()
    if not address:
        raise AddressError("empty upstream address")
    if address.startswith(_SCHEMES) or "," not in address:
        return address
    parts = [p.strip() for p in address.split(",") if p.strip()]
    versions = set()
    for part in parts:
        host, _ = _split_host_port(part)
        try:
            versions.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise AddressError(
                f"{part!r} in the list {address!r} is not an IP address: a list must name "
                "IP addresses; for host names use one DNS name that resolves to every "
                "replica (dns:///name:port)"
            ) from None
    if len(versions) > 1:
        raise AddressError(f"{address!r} mixes IPv4 and IPv6 addresses")
    return ("ipv4:" if versions == {4} else "ipv6:") + ",".join(parts)


def first_host(address: str) -> str:
    """The host of the first replica an address names (for the status page's defaults)."""
    target = channel_target(address)
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    host, _ = _split_host_port(target.split(",")[0])
    return host


def balancing_config() -> dict[str, Any]:
    """Service-config entries: round_robin over every resolved replica, each watched with
    grpc.health.v1 for the whole server (service ""; a NOT_SERVING replica gets no new
    call; a server without the health service counts as healthy, per gRPC)."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
    }
