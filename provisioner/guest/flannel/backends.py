"""The backends: what each does to the kernel before and after the lease, and per peer.

* vxlan (flannel's pkg/backend/vxlan): the kernel's VXLAN device ``flannel.<VNI>``,
  learning off, local = the external interface's address, MTU = its MTU - 50,
  the lease's network address as a /32; per peer a neighbour, an FDB entry and an
  onlink route (see :func:`.plan.vxlan_programming`).
* host-gw (pkg/backend/hostgw): per peer a route to its subnet via its public IP.
* udp: see :mod:`.udp` (a TUN device and a userspace encapsulator).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from provisioner.guest.flannel import iproute
from provisioner.guest.flannel.config import VXLAN_DEFAULT_PORT, NetworkConfig
from provisioner.guest.flannel.iproute import ExternalInterface
from provisioner.guest.flannel.plan import diff, hostgw_programming, vxlan_programming
from provisioner.guest.flannel.subnets import Lease

log = logging.getLogger(__name__)


class Backend(Protocol):
    kind: str
    mtu: int

    def prepare(self) -> Mapping[str, Any]:
        """Set up what the lease must describe; returns the lease's BackendData."""

    def configure(self, subnet: ipaddress.IPv4Network) -> None:
        """Give the device the lease once it is held."""

    def reconcile(self, leases: Iterable[Lease], own: ipaddress.IPv4Network) -> int:
        """Program the kernel for every peer; returns the number of commands run."""

    def close(self) -> None:
        """Stop any worker (the kernel state stays for the next run)."""


def vtep_mac(device: str, public_ip: str, machine_id_file: str = "/etc/machine-id") -> str:
    """A locally administered unicast MAC for ``device`` of the node at ``public_ip``, the
    same on every run (so a recreated device keeps the address its peers know); the
    address keeps nodes apart that share a machine-id (network namespaces of one host)."""
    try:
        with open(machine_id_file, encoding="ascii") as handle:  # noqa: PTH123 - no pathlib import
            seed = handle.read().strip()
    except OSError:
        seed = ""
    digest = bytearray(hashlib.sha256(f"{seed}/{public_ip}/{device}".encode()).digest()[:6])
    digest[0] = (digest[0] | 0x02) & 0xFE  # locally administered, unicast
    return ":".join(f"{byte:02x}" for byte in digest)


class VxlanBackend:
    kind = "vxlan"

    def __init__(self, config: NetworkConfig, ext: ExternalInterface) -> None:
        self.config = config
        self.ext = ext
        self.dev = f"flannel.{config.vni}"
        self.port = config.port or VXLAN_DEFAULT_PORT
        self.mtu = ext.mtu - 50

    def _matches(self, details: Mapping[str, Any]) -> bool:
        info = details.get("linkinfo") or {}
        data = info.get("info_data") or {}
        return bool(
            info.get("info_kind") == "vxlan"
            and data.get("id") == self.config.vni
            and data.get("local") == self.ext.address
            and data.get("link") == self.ext.name
            and data.get("port") == self.port
            and not data.get("learning", False)
        )

    def prepare(self) -> Mapping[str, Any]:
        details = iproute.link_details(self.dev)
        if details is not None and not self._matches(details):
            log.info("%s exists with other settings; recreating it", self.dev)
            iproute.run(["ip", "link", "del", self.dev])
            details = None
        if details is None:
            vxlan = ["id", str(self.config.vni), "local", self.ext.address, "dev", self.ext.name]
            vxlan += ["dstport", str(self.port), "nolearning"]
            # The MAC is set at creation, not left to the kernel: udev's default link
            # policy (MACAddressPolicy=persistent) replaces a kernel-made random MAC a
            # moment after the device appears, after flanneld has published it as the
            # VtepMAC, and every peer's FDB entry would then point at nothing.
            mac = vtep_mac(self.dev, self.ext.public_ip)
            iproute.run(
                ["ip", "link", "add", self.dev, "address", mac, "mtu", str(self.mtu),
                 "type", "vxlan", *vxlan]
            )  # fmt: skip
            details = iproute.link_details(self.dev) or {}
        else:
            iproute.run(["ip", "link", "set", self.dev, "mtu", str(self.mtu)])
        mac = str(details.get("address", "")).lower()
        log.info(
            "VXLAN device %s: VNI=%d Port=%d VtepMAC=%s", self.dev, self.config.vni, self.port, mac
        )
        return {"VNI": self.config.vni, "VtepMAC": mac}

    def configure(self, subnet: ipaddress.IPv4Network) -> None:
        iproute.set_only_address(self.dev, ipaddress.IPv4Interface((subnet.network_address, 32)))
        iproute.run(["ip", "link", "set", self.dev, "up"])

    def reconcile(self, leases: Iterable[Lease], own: ipaddress.IPv4Network) -> int:
        direct = self.ext.network if self.config.direct_routing else None
        desired = vxlan_programming(
            leases, own, self.dev, direct_routing_net=direct, iface=self.ext.name
        )
        extra = (self.ext.name,) if direct is not None else ()
        now = iproute.current(
            self.dev, self.config.network, own, neighbours=True, extra_route_devs=extra
        )
        changes = diff(now, desired)
        iproute.apply(changes)
        return len(changes.add.routes) + len(changes.remove.routes)

    def close(self) -> None:
        return None


class HostGwBackend:
    kind = "host-gw"

    def __init__(self, config: NetworkConfig, ext: ExternalInterface) -> None:
        self.config = config
        self.ext = ext
        self.mtu = ext.mtu

    def prepare(self) -> Mapping[str, Any]:
        return {}

    def configure(self, subnet: ipaddress.IPv4Network) -> None:
        """Nothing to give: the routes point at the peers' public IPs."""
        del subnet

    def reconcile(self, leases: Iterable[Lease], own: ipaddress.IPv4Network) -> int:
        desired = hostgw_programming(leases, own, self.ext.name)
        now = iproute.current(self.ext.name, self.config.network, own, neighbours=False)
        changes = diff(now, desired)
        iproute.apply(changes)
        return len(changes.add.routes) + len(changes.remove.routes)

    def close(self) -> None:
        return None


def make_backend(config: NetworkConfig, ext: ExternalInterface) -> Backend:
    if config.backend_type == "vxlan":
        return VxlanBackend(config, ext)
    if config.backend_type == "host-gw":
        return HostGwBackend(config, ext)
    from provisioner.guest.flannel.udp import UdpBackend  # the only user of fcntl/threads

    return UdpBackend(config, ext)
