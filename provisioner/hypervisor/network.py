"""The lab's isolated libvirt network as data: plan it, render its XML, read it back.

A lab network has no ``<forward>`` element (libvirt's "isolated" mode): guests
reach each other and the host's bridge address ``.1``, nothing else. DHCP hands
out only static reservations (one per node: MAC, IP, host name), so the address
vagrant-libvirt finds in the lease table is the one the lab planned. DNS is
off: dnsmasq would otherwise forward guests' queries to the host's resolvers.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.errors import ConfigError, HostError
from provisioner.hypervisor.naming import bridge_name, check_node_name, network_name

_MAC = re.compile(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")


@dataclass(frozen=True)
class DhcpHost:
    """One static DHCP reservation."""

    name: str
    mac: str
    ip: ipaddress.IPv4Address


@dataclass(frozen=True)
class NetworkSpec:
    """What a lab network must look like."""

    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    hosts: tuple[DhcpHost, ...]
    forward: str | None = None  # None: isolated
    dns: bool = False

    @property
    def host_address(self) -> ipaddress.IPv4Address:
        """The host's address on the bridge, ``.1``."""
        return self.subnet.network_address + 1


def lab_network(
    lab: str, subnet: ipaddress.IPv4Network | str, hosts: Sequence[DhcpHost]
) -> NetworkSpec:
    """The isolated network of ``lab`` on ``subnet`` with the nodes' reservations.

    Raises ConfigError naming the offending node when a reservation cannot work.
    """
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise ConfigError(f"invalid subnet {subnet!r}: {exc}", key="subnet") from exc
    if not net.is_private or net.prefixlen > 29:
        raise ConfigError(
            f"subnet {net} must be a private IPv4 network of /29 or larger",
            key="subnet",
            hint="for example 192.168.150.0/24",
        )
    gateway = net.network_address + 1
    for host in hosts:
        check_node_name(host.name)
        if not _MAC.fullmatch(host.mac):
            raise ConfigError(f"{host.name}: invalid MAC {host.mac!r}", key="nodes")
        if host.ip not in net or host.ip in (net.network_address, net.broadcast_address, gateway):
            raise ConfigError(
                f"{host.name}: address {host.ip} is not a usable guest address in {net}",
                key="nodes",
                hint=f"{gateway} is the host's; guests need another address of the subnet",
            )
    for label, values in (
        ("names", [h.name for h in hosts]),
        ("MACs", [h.mac for h in hosts]),
        ("addresses", [str(h.ip) for h in hosts]),
    ):
        if len(set(values)) != len(values):
            raise ConfigError(f"node {label} repeat: {', '.join(values)}", key="nodes")
    return NetworkSpec(
        name=network_name(lab),
        bridge=bridge_name(lab),
        subnet=net,
        hosts=tuple(hosts),
    )


def render_network_xml(spec: NetworkSpec) -> str:
    """libvirt network XML for ``spec``."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec.name
    if spec.forward is not None:
        ET.SubElement(root, "forward", mode=spec.forward)
    ET.SubElement(root, "bridge", name=spec.bridge, stp="on", delay="0")
    ET.SubElement(root, "dns", enable="yes" if spec.dns else "no")
    ip = ET.SubElement(root, "ip", address=str(spec.host_address), netmask=str(spec.subnet.netmask))
    dhcp = ET.SubElement(ip, "dhcp")
    for host in spec.hosts:
        ET.SubElement(dhcp, "host", mac=host.mac, name=host.name, ip=str(host.ip))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def parse_network_xml(text: str) -> NetworkSpec:
    """Read back a network's XML (as libvirt returns it) into a spec.

    Only the first IPv4 ``<ip>`` element is read; a network without one gets the
    empty ``0.0.0.0/32`` subnet so comparisons report it rather than crash.
    """
    try:
        root = ET.fromstring(text)  # noqa: S314 - XML from the local libvirtd
    except ET.ParseError as exc:
        raise HostError(f"libvirt returned unreadable network XML: {exc}") from exc
    forward = root.find("forward")
    bridge = root.find("bridge")
    dns = root.find("dns")
    subnet = ipaddress.IPv4Network("0.0.0.0/32")
    hosts: list[DhcpHost] = []
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4" or ip.get("address") is None:
            continue
        mask = ip.get("netmask") or ip.get("prefix") or "32"
        subnet = ipaddress.IPv4Interface(f"{ip.get('address')}/{mask}").network
        hosts = [
            DhcpHost(
                h.get("name", ""), h.get("mac", "").lower(), ipaddress.IPv4Address(h.get("ip"))
            )
            for h in ip.findall("dhcp/host")
            if h.get("ip")
        ]
        break
    return NetworkSpec(
        name=root.findtext("name", ""),
        bridge=bridge.get("name", "") if bridge is not None else "",
        subnet=subnet,
        hosts=tuple(hosts),
        forward=forward.get("mode", "nat") if forward is not None else None,
        dns=dns is None or dns.get("enable", "yes") == "yes",
    )


def network_differences(expected: NetworkSpec, actual: NetworkSpec) -> list[str]:
    """How ``actual`` differs from ``expected``, one line per difference."""
    problems = []
    if actual.forward != expected.forward:
        problems.append(
            f"forward mode is {actual.forward or 'isolated'}, want {expected.forward or 'isolated'}"
        )
    for label, want, have in (
        ("bridge", expected.bridge, actual.bridge),
        ("subnet", str(expected.subnet), str(actual.subnet)),
    ):
        if want != have:
            problems.append(f"{label} is {have}, want {want}")
    if actual.dns != expected.dns:
        problems.append(
            f"DNS is {'on' if actual.dns else 'off'}, want {'on' if expected.dns else 'off'}"
        )
    have_hosts, want_hosts = set(actual.hosts), set(expected.hosts)
    problems.extend(
        f"missing DHCP reservation {h.name} {h.mac} {h.ip}"
        for h in sorted(want_hosts - have_hosts, key=lambda h: h.ip)
    )
    problems.extend(
        f"unexpected DHCP reservation {h.name} {h.mac} {h.ip}"
        for h in sorted(have_hosts - want_hosts, key=lambda h: h.ip)
    )
    return problems


@dataclass(frozen=True)
class DhcpChanges:
    """The reservations to add to and delete from a network to reach a spec's."""

    add: tuple[DhcpHost, ...]
    delete: tuple[DhcpHost, ...]

    @property
    def empty(self) -> bool:
        return not self.add and not self.delete


def dhcp_changes(expected: NetworkSpec, actual: NetworkSpec) -> DhcpChanges:
    """What ``lab scale`` changes in a running network: reservations only.

    A reservation whose name, MAC or address differs from the wanted one is
    deleted and added again (libvirt matches a deleted host by its MAC or name).
    """
    want, have = set(expected.hosts), set(actual.hosts)
    return DhcpChanges(
        add=tuple(sorted(want - have, key=lambda h: h.ip)),
        delete=tuple(sorted(have - want, key=lambda h: h.ip)),
    )


def dhcp_host_xml(host: DhcpHost) -> str:
    """One ``<host>`` of a network's ``<dhcp>``, as libvirt's network update takes it."""
    return ET.tostring(
        ET.Element("host", mac=host.mac, name=host.name, ip=str(host.ip)), encoding="unicode"
    )


def network_conflicts(spec: NetworkSpec, others: Sequence[NetworkSpec]) -> list[str]:
    """Other networks that would clash with ``spec`` (same bridge or overlapping subnet)."""
    problems = []
    for other in others:
        if other.name == spec.name:
            continue
        if other.bridge == spec.bridge:
            problems.append(f"network {other.name} already uses bridge {spec.bridge}")
        if other.subnet.prefixlen < 32 and other.subnet.overlaps(spec.subnet):
            problems.append(f"network {other.name} already uses {other.subnet}")
    return problems


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"
