"""Facts about the host the benchmark needs: free subnets, the pool's volumes, leftovers.

The ``parse_*``/``pick_*`` functions and :func:`box_uploaded` are pure; the
rest ask libvirt or ``ip``.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import libvirt

from provisioner.hypervisor.boxvolume import volume_prefix
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.hypervisor.network import parse_network_xml

_INET = re.compile(r"\binet (?P<cidr>\d+\.\d+\.\d+\.\d+/\d+)")


def parse_ip_addr_networks(text: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the host's interfaces, from ``ip -o -4 addr show``."""
    return [ipaddress.IPv4Interface(m.group("cidr")).network for m in _INET.finditer(text)]


def pick_subnets(
    used: Iterable[ipaddress.IPv4Network],
    count: int,
    candidates: Iterable[ipaddress.IPv4Network] | None = None,
) -> list[ipaddress.IPv4Network]:
    """``count`` /24s that overlap nothing in ``used`` (nor each other).

    By default from 192.168.200.0/24 upwards: labs pick their default subnet in
    192.168.100-199, so the benchmark stays out of their way.
    """
    taken = list(used)
    pool = candidates or (ipaddress.IPv4Network(f"192.168.{n}.0/24") for n in range(200, 255))
    chosen: list[ipaddress.IPv4Network] = []
    for net in pool:
        if len(chosen) == count:
            break
        if not any(net.overlaps(other) for other in (*taken, *chosen)):
            chosen.append(net)
    if len(chosen) < count:
        raise ValueError(f"no {count} free /24 subnets among the candidates")
    return chosen


def used_networks(host: LibvirtHost) -> list[ipaddress.IPv4Network]:
    nets = [parse_network_xml(n.XMLDesc(0)).subnet for n in host.connection.listAllNetworks(0)]
    result = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10, check=False
    )
    return [n for n in nets if n.prefixlen < 32] + parse_ip_addr_networks(result.stdout)


def box_uploaded(volumes: Iterable[str], vagrant_name: str) -> bool:
    """Whether vagrant-libvirt's copy of the box (any version) is among ``volumes``."""
    prefix = volume_prefix(vagrant_name)
    return any(name.startswith(prefix) for name in volumes)


def pool_volumes(host: LibvirtHost, pool: str = "default") -> dict[str, str]:
    """Volume name -> path in ``pool`` (empty if the pool does not exist yet)."""
    try:
        pool_obj = host.connection.storagePoolLookupByName(pool)
    except libvirt.libvirtError:
        return {}
    if not pool_obj.isActive():
        return {}
    pool_obj.refresh(0)
    return {vol.name(): vol.path() for vol in pool_obj.listAllVolumes(0)}


def read_through(path: Path) -> None:
    """Read a file once so the page cache holds it (both runs then start warm)."""
    with path.open("rb") as handle:
        while handle.read(1 << 22):
            pass


def other_domains(host: LibvirtHost, run_id: str) -> list[str]:
    active = host.connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    return sorted(d.name() for d in active if run_id not in d.name())


def leftovers(host: LibvirtHost, run_id: str) -> list[str]:
    """Everything in libvirt whose name carries this run's id."""
    conn = host.connection
    names = [d.name() for d in conn.listAllDomains(0)]
    names += [n.name() for n in conn.listAllNetworks(0)]
    names += list(pool_volumes(host))
    return sorted(n for n in names if run_id in n)
