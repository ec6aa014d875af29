"""What the kernel should hold for a set of leases, and the commands that get it there.

Pure: leases in, desired neighbour/FDB/route sets out (flannel's
pkg/backend/vxlan/vxlan_network.go and pkg/backend/hostgw), then the difference
from what the kernel holds now as ``ip``/``bridge`` argument lists. Parsers for
``ip -j`` and ``bridge -j`` output read the current state.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass

from provisioner.guest.flannel.subnets import Lease


@dataclass(frozen=True, order=True)
class Neighbour:
    ip: str
    mac: str
    dev: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    mac: str
    dst: str
    dev: str


@dataclass(frozen=True, order=True)
class Route:
    dst: str
    via: str
    dev: str
    onlink: bool = False


@dataclass(frozen=True)
class Programming:
    """Per-peer kernel state: neighbours, FDB entries and routes."""

    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    routes: frozenset[Route] = frozenset()

    def __sub__(self, other: Programming) -> Programming:
        return Programming(
            self.neighbours - other.neighbours, self.fdb - other.fdb, self.routes - other.routes
        )

    def empty(self) -> bool:
        return not (self.neighbours or self.fdb or self.routes)


@dataclass(frozen=True)
class Changes:
    add: Programming
    remove: Programming

    def empty(self) -> bool:
        return self.add.empty() and self.remove.empty()


def peers(leases: Iterable[Lease], own: ipaddress.IPv4Network, backend: str) -> list[Lease]:
    """Every other lease of the same backend, in subnet order (flannel ignores the rest)."""
    return sorted(
        (lease for lease in leases if lease.subnet != own and lease.backend_type == backend),
        key=lambda lease: int(lease.subnet.network_address),
    )


def vxlan_programming(
    leases: Iterable[Lease],
    own: ipaddress.IPv4Network,
    dev: str,
    *,
    direct_routing_net: ipaddress.IPv4Network | None = None,
    iface: str = "",
) -> Programming:
    """Neighbour, FDB entry and onlink route per peer; with DirectRouting a plain
    route via the peer's public IP when it shares ``direct_routing_net``."""
    neighbours: set[Neighbour] = set()
    fdb: set[FdbEntry] = set()
    routes: set[Route] = set()
    for lease in peers(leases, own, "vxlan"):
        gateway = str(lease.subnet.network_address)
        if direct_routing_net is not None and _inside(lease.public_ip, direct_routing_net):
            routes.add(Route(str(lease.subnet), lease.public_ip, iface))
            continue
        if not lease.vtep_mac or not lease.public_ip:
            continue
        neighbours.add(Neighbour(gateway, lease.vtep_mac, dev))
        fdb.add(FdbEntry(lease.vtep_mac, lease.public_ip, dev))
        routes.add(Route(str(lease.subnet), gateway, dev, onlink=True))
    return Programming(frozenset(neighbours), frozenset(fdb), frozenset(routes))


def hostgw_programming(
    leases: Iterable[Lease], own: ipaddress.IPv4Network, iface: str
) -> Programming:
    """One route per peer: its subnet via its public IP on the external interface."""
    routes = {
        Route(str(lease.subnet), lease.public_ip, iface)
        for lease in peers(leases, own, "host-gw")
        if lease.public_ip
    }
    return Programming(routes=frozenset(routes))


def _inside(address: str, network: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.IPv4Address(address) in network
    except ValueError:
        return False


def diff(current: Programming, desired: Programming) -> Changes:
    return Changes(add=desired - current, remove=current - desired)


def commands(changes: Changes) -> list[list[str]]:
    """Removals first (route, FDB, neighbour), then additions (neighbour, FDB, route)."""
    out: list[list[str]] = []
    remove, add = changes.remove, changes.add
    for route in sorted(remove.routes):
        out.append(["ip", "route", "del", route.dst, "via", route.via, "dev", route.dev])
    for entry in sorted(remove.fdb):
        out.append(["bridge", "fdb", "del", entry.mac, "dev", entry.dev, "dst", entry.dst, "self"])
    for neighbour in sorted(remove.neighbours):
        out.append(["ip", "neigh", "del", neighbour.ip, "dev", neighbour.dev])
    for neighbour in sorted(add.neighbours):
        lladdr = ["lladdr", neighbour.mac, "dev", neighbour.dev, "nud", "permanent"]
        out.append(["ip", "neigh", "replace", neighbour.ip, *lladdr])
    for entry in sorted(add.fdb):
        where = ["dev", entry.dev, "dst", entry.dst, "self", "permanent"]
        out.append(["bridge", "fdb", "replace", entry.mac, *where])
    for route in sorted(add.routes):
        argv = ["ip", "route", "replace", route.dst, "via", route.via, "dev", route.dev]
        out.append([*argv, "onlink"] if route.onlink else argv)
    return out


# -- the kernel's current state, from JSON output ------------------------------------------
def _json_list(text: str) -> list[dict[str, object]]:
    if not text.strip():
        return []
    data = json.loads(text)
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def parse_neighbours(text: str, dev: str) -> frozenset[Neighbour]:
    """``ip -j -4 neigh show dev DEV nud permanent``."""
    return frozenset(
        Neighbour(str(item["dst"]), str(item["lladdr"]).lower(), dev)
        for item in _json_list(text)
        if "dst" in item and "lladdr" in item
    )


def parse_fdb(text: str, dev: str) -> frozenset[FdbEntry]:
    """``bridge -j fdb show dev DEV``: the unicast entries with a remote destination."""
    return frozenset(
        FdbEntry(str(item["mac"]).lower(), str(item["dst"]), dev)
        for item in _json_list(text)
        if "dst" in item and "mac" in item and str(item["mac"]) != "00:00:00:00:00:00"
    )


def parse_routes(
    text: str, dev: str, network: ipaddress.IPv4Network, own: ipaddress.IPv4Network
) -> frozenset[Route]:
    """``ip -j -4 route show dev DEV``: gatewayed routes to other subnets of ``network``."""
    out: set[Route] = set()
    for item in _json_list(text):
        gateway = item.get("gateway")
        try:
            dst = ipaddress.IPv4Network(str(item.get("dst", "")))
        except ValueError:
            continue
        if gateway is None or not dst.subnet_of(network) or dst == network or dst.overlaps(own):
            continue
        flags = item.get("flags") or []
        onlink = isinstance(flags, list) and "onlink" in flags
        out.add(Route(str(dst), str(gateway), dev, onlink))
    return frozenset(out)
