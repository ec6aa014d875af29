"""Planning, rendering, reading back and comparing lab networks."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from provisioner.errors import ConfigError
from provisioner.hypervisor.network import (
    DhcpHost,
    lab_network,
    network_conflicts,
    network_differences,
    parse_network_xml,
    render_network_xml,
)

pytestmark = pytest.mark.unit

NODES = ["core-01", "core-02", "core-03"]


def node_mac(index: int) -> str:
    return f"52:54:00:12:34:{index:02x}"


def hosts(subnet: str, names: list[str] = NODES) -> list[DhcpHost]:
    """Node i at .(100+i), as the lab config plans them."""
    base = ipaddress.IPv4Network(subnet).network_address
    return [DhcpHost(n, node_mac(i), base + 100 + i) for i, n in enumerate(names, start=1)]


# What libvirt 9 returns for a NAT network (virsh net-dumpxml default).
DEFAULT_NAT = """<network>
  <name>default</name>
  <uuid>1f3e5ab6-2a57-4f2a-9c6b-0b3d2c1d5e11</uuid>
  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:aa:bb:cc'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>"""


def test_spec_names_the_lab_and_keeps_the_reservations() -> None:
    spec = lab_network("demo", "10.77.1.0/24", hosts("10.77.1.0/24"))
    assert spec.name == "lab-demo"
    assert spec.forward is None
    assert not spec.dns
    assert spec.host_address == ipaddress.IPv4Address("10.77.1.1")
    assert spec.hosts == tuple(hosts("10.77.1.0/24"))


def test_rendered_xml_is_isolated_static_dhcp_without_dns() -> None:
    xml = render_network_xml(lab_network("demo", "10.77.1.0/24", hosts("10.77.1.0/24")))
    assert "<forward" not in xml
    assert '<dns enable="no" />' in xml
    assert '<ip address="10.77.1.1" netmask="255.255.255.0">' in xml
    assert "<range" not in xml
    assert f'<host mac="{node_mac(2)}" name="core-02" ip="10.77.1.102" />' in xml


def test_render_then_parse_round_trips() -> None:
    spec = lab_network("demo", "10.77.1.0/24", hosts("10.77.1.0/24"))
    assert parse_network_xml(render_network_xml(spec)) == spec


def test_parse_libvirt_nat_network() -> None:
    nat = parse_network_xml(DEFAULT_NAT)
    assert nat.forward == "nat"
    assert nat.bridge == "virbr0"
    assert nat.subnet == ipaddress.IPv4Network("192.168.122.0/24")
    assert nat.dns
    assert nat.hosts == ()


def test_parse_prefix_form_and_uppercase_mac() -> None:
    xml = """<network><name>n</name><bridge name='b'/><ip address='10.1.2.1' prefix='25'>
      <dhcp><host mac='52:54:00:AA:00:01' name='x' ip='10.1.2.5'/></dhcp></ip></network>"""
    spec = parse_network_xml(xml)
    assert spec.subnet == ipaddress.IPv4Network("10.1.2.0/25")
    assert spec.hosts[0].mac == "52:54:00:aa:00:01"


def test_identical_networks_have_no_differences() -> None:
    spec = lab_network("demo", "10.77.1.0/24", hosts("10.77.1.0/24"))
    assert network_differences(spec, parse_network_xml(render_network_xml(spec))) == []


def test_every_difference_is_reported() -> None:
    want = lab_network("demo", "10.77.1.0/24", hosts("10.77.1.0/24"))
    have = dataclasses.replace(
        lab_network("demo", "10.77.2.0/24", hosts("10.77.2.0/24", NODES[:2])),
        forward="nat",
        dns=True,
        bridge="virbr9",
    )
    problems = network_differences(want, have)
    assert problems[:4] == [
        "forward mode is nat, want isolated",
        "bridge is virbr9, want " + want.bridge,
        "subnet is 10.77.2.0/24, want 10.77.1.0/24",
        "DNS is on, want off",
    ]
    assert f"missing DHCP reservation core-03 {node_mac(3)} 10.77.1.103" in problems
    assert f"unexpected DHCP reservation core-01 {node_mac(1)} 10.77.2.101" in problems
    assert len(problems) == 4 + 3 + 2


def test_conflicts_with_other_networks() -> None:
    spec = lab_network("demo", "192.168.122.0/25", hosts("192.168.122.0/25"))
    other_lab = dataclasses.replace(
        spec, name="lab-other", subnet=ipaddress.IPv4Network("10.0.0.0/24")
    )
    problems = network_conflicts(spec, [parse_network_xml(DEFAULT_NAT), other_lab, spec])
    assert problems == [
        "network default already uses 192.168.122.0/24",
        f"network lab-other already uses bridge {spec.bridge}",
    ]


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("8.8.8.0/24", "must be a private IPv4 network"),
        ("10.0.0.0/30", "must be a private IPv4 network"),
        ("10.0.0.1/24", "invalid subnet"),
        ("nonsense", "invalid subnet"),
    ],
)
def test_bad_subnets(subnet: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        lab_network("demo", subnet, [])


@pytest.mark.parametrize("last_octet", [0, 1, 255])
def test_reserved_addresses_are_refused(last_octet: int) -> None:
    host = DhcpHost("core-01", node_mac(1), ipaddress.IPv4Address(f"10.0.0.{last_octet}"))
    with pytest.raises(ConfigError, match="not a usable guest address"):
        lab_network("demo", "10.0.0.0/24", [host])


def test_address_outside_the_subnet_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"core-01: address 10\.0\.1\.101"):
        lab_network("demo", "10.0.0.0/24", hosts("10.0.1.0/24")[:1])


def test_bad_mac_is_refused() -> None:
    host = DhcpHost("core-01", "52:54:00:AA:BB", ipaddress.IPv4Address("10.0.0.5"))
    with pytest.raises(ConfigError, match="invalid MAC"):
        lab_network("demo", "10.0.0.0/24", [host])


def test_repeats_are_refused() -> None:
    first, second = hosts("10.0.0.0/24", NODES[:2])
    for clash, label in (
        (dataclasses.replace(second, name=first.name), "names"),
        (dataclasses.replace(second, mac=first.mac), "MACs"),
        (dataclasses.replace(second, ip=first.ip), "addresses"),
    ):
        with pytest.raises(ConfigError, match=f"node {label} repeat"):
            lab_network("demo", "10.0.0.0/24", [first, clash])
