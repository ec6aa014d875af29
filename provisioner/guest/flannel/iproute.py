"""The kernel through iproute2: run ``ip``/``bridge``, read links, addresses and routes.

Every call has a deadline; a refusal raises :class:`NetworkSetupError` with the
command and what it printed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from dataclasses import dataclass

from provisioner.guest.flannel.errors import NetworkSetupError
from provisioner.guest.flannel.plan import (
    Changes,
    Programming,
    commands,
    parse_fdb,
    parse_neighbours,
    parse_routes,
)

log = logging.getLogger(__name__)

TIMEOUT = 30.0


def run(argv: list[str], *, check: bool = True) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkSetupError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise NetworkSetupError(
            f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def run_json(argv: list[str]) -> list[dict[str, object]]:
    text = run(argv)
    data = json.loads(text) if text.strip() else []
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


@dataclass(frozen=True)
class ExternalInterface:
    name: str
    index: int
    mtu: int
    address: str  # the interface's IPv4 address
    network: ipaddress.IPv4Network  # the interface's own subnet
    public_ip: str  # --public-ip or ``address``


def succeeds(argv: list[str]) -> bool:
    """True if the command exits 0 (a probe: its output is not wanted)."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def link_exists(name: str) -> bool:
    return bool(name) and succeeds(["ip", "link", "show", "dev", name])


def link_details(name: str) -> dict[str, object] | None:
    if not link_exists(name):
        return None
    found = run_json(["ip", "-d", "-j", "link", "show", "dev", name])
    return found[0] if found else None


def _ipv4_addresses(item: dict[str, object]) -> list[ipaddress.IPv4Interface]:
    out = []
    infos = item.get("addr_info") or []
    for info in infos if isinstance(infos, list) else []:
        if isinstance(info, dict) and info.get("family") == "inet":
            out.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
    return out


def default_route_interface() -> str:
    for route in run_json(["ip", "-j", "-4", "route", "show", "default"]):
        if route.get("dev"):
            return str(route["dev"])
    return ""


def find_interface(candidates: tuple[str, ...], public_ip: str) -> ExternalInterface:
    """flannel's LookupExtIface: the first of ``--iface`` (names or addresses) that exists,
    or the default route's interface."""
    items = run_json(["ip", "-j", "-4", "addr", "show"])
    wanted = candidates or (default_route_interface(),)
    for want in wanted:
        for item in items:
            addresses = _ipv4_addresses(item)
            by_address = any(str(address.ip) == want for address in addresses)
            if (item.get("ifname") == want or by_address) and addresses:
                chosen = next((a for a in addresses if str(a.ip) == want), addresses[0])
                return ExternalInterface(
                    name=str(item["ifname"]),
                    index=int(str(item.get("ifindex", 0))),
                    mtu=int(str(item.get("mtu", 1500))),
                    address=str(chosen.ip),
                    network=chosen.network,
                    public_ip=public_ip or str(chosen.ip),
                )
    raise NetworkSetupError(
        f"no usable interface among {', '.join(w or '(default route)' for w in wanted)}: "
        "none exists with an IPv4 address",
        hint="set -iface (FLANNELD_IFACE) to the interface other nodes reach this one on",
    )


def set_only_address(dev: str, address: ipaddress.IPv4Interface) -> None:
    """Give ``dev`` exactly this IPv4 address (flannel's ensureV4AddressOnLink)."""
    item = run_json(["ip", "-j", "-4", "addr", "show", "dev", dev])
    for existing in _ipv4_addresses(item[0]) if item else []:
        if existing != address:
            run(["ip", "addr", "del", str(existing), "dev", dev])
    if not item or address not in _ipv4_addresses(item[0]):
        run(["ip", "addr", "replace", str(address), "dev", dev])


def current(
    dev: str,
    network: ipaddress.IPv4Network,
    own: ipaddress.IPv4Network,
    *,
    neighbours: bool,
    extra_route_devs: tuple[str, ...] = (),
) -> Programming:
    """What ``dev`` (and the external interface, for direct routes) holds now."""
    routes = parse_routes(run(["ip", "-j", "-4", "route", "show", "dev", dev]), dev, network, own)
    for other in extra_route_devs:
        text = run(["ip", "-j", "-4", "route", "show", "dev", other])
        routes |= parse_routes(text, other, network, own)
    if not neighbours:
        return Programming(routes=routes)
    return Programming(
        parse_neighbours(
            run(["ip", "-j", "-4", "neigh", "show", "dev", dev, "nud", "permanent"]), dev
        ),
        parse_fdb(run(["bridge", "-j", "fdb", "show", "dev", dev]), dev),
        routes,
    )


def apply(changes: Changes) -> None:
    """Run the commands; removals that find nothing to remove are not errors."""
    for argv in commands(changes):
        log.info("%s", " ".join(argv))
        removing = argv[2] == "del"
        run(argv, check=not removing)
