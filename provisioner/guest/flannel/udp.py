"""The udp backend: a TUN device ``flannel0`` and a userspace encapsulator on UDP 8285.

As flannel's udp backend: the device gets the lease's network address with the
whole Network's prefix (``10.1.19.0/16``), so the kernel routes the Network to it;
every IP packet read from it goes, whole, in one UDP datagram to the public IP of
the peer whose subnet holds the destination, and every datagram received is
written back to the device. MTU = the external interface's MTU - 28 (IPv4 and UDP
headers). Slow (one Python thread each way), but enough to reach every peer.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.guest.flannel import iproute
from provisioner.guest.flannel.config import NetworkConfig
from provisioner.guest.flannel.errors import NetworkSetupError
from provisioner.guest.flannel.iproute import ExternalInterface
from provisioner.guest.flannel.plan import peers
from provisioner.guest.flannel.subnets import Lease

log = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEVICE = "flannel0"


def route_table(leases: Iterable[Lease], own: ipaddress.IPv4Network) -> dict[int, str]:
    """Peer subnet (as the integer of its network address) -> the peer's public IP."""
    return {
        int(lease.subnet.network_address): lease.public_ip for lease in peers(leases, own, "udp")
    }


def destination(packet: bytes, table: Mapping[int, str], mask: int) -> str | None:
    """The public IP to send an IPv4 packet to, if its destination is a peer's."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    return table.get(struct.unpack("!I", packet[16:20])[0] & mask)


class UdpBackend:
    kind = "udp"

    def __init__(self, config: NetworkConfig, ext: ExternalInterface) -> None:
        self.config = config
        self.ext = ext
        self.mtu = ext.mtu - 28
        self.mask = (0xFFFFFFFF << (32 - config.subnet_len)) & 0xFFFFFFFF
        self.table: dict[int, str] = {}
        self._tun = -1
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    def prepare(self) -> Mapping[str, Any]:
        try:
            self._tun = os.open("/dev/net/tun", os.O_RDWR)
            request = struct.pack("16sH", DEVICE.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(self._tun, TUNSETIFF, request)
        except OSError as exc:
            raise NetworkSetupError(f"could not open the TUN device {DEVICE}: {exc}") from exc
        iproute.run(["ip", "link", "set", DEVICE, "mtu", str(self.mtu)])
        return {}

    def configure(self, subnet: ipaddress.IPv4Network) -> None:
        address = ipaddress.IPv4Interface((subnet.network_address, self.config.network.prefixlen))
        iproute.set_only_address(DEVICE, address)
        iproute.run(["ip", "link", "set", DEVICE, "up"])
        if self._sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.ext.address, self.config.port))
            except OSError as exc:
                sock.close()
                raise NetworkSetupError(
                    f"could not listen on UDP {self.ext.address}:{self.config.port}: {exc}"
                ) from exc
            self._sock = sock
            for target, name in ((self._outbound, "udp-out"), (self._inbound, "udp-in")):
                threading.Thread(target=target, name=name, daemon=True).start()

    def reconcile(self, leases: Iterable[Lease], own: ipaddress.IPv4Network) -> int:
        table = route_table(leases, own)
        changed = len(set(table.items()) ^ set(self.table.items()))
        self.table = table
        return changed

    def _outbound(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                packet = os.read(self._tun, 65535)
            except OSError:
                return
            peer = destination(packet, self.table, self.mask)
            if peer is not None:
                try:
                    sock.sendto(packet, (peer, self.config.port))
                except OSError as exc:
                    log.debug("send to %s: %s", peer, exc)

    def _inbound(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                packet = sock.recv(65535)
                os.write(self._tun, packet)
            except OSError:
                if self._stop.is_set():
                    return

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._tun >= 0:
            os.close(self._tun)
