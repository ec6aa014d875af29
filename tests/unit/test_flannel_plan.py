"""Per-peer kernel programming computed from leases, and the diff to apply."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from provisioner.guest.flannel.plan import (
    FdbEntry,
    Neighbour,
    Programming,
    Route,
    commands,
    diff,
    hostgw_programming,
    parse_fdb,
    parse_neighbours,
    parse_routes,
    vxlan_programming,
)
from provisioner.guest.flannel.subnets import Lease
from provisioner.guest.flannel.udp import destination, route_table

pytestmark = pytest.mark.unit

net = ipaddress.IPv4Network
OWN = net("10.1.19.0/24")
NETWORK = net("10.1.0.0/16")


def vxlan(subnet: str, public_ip: str, mac: str) -> Lease:
    return Lease(net(subnet), public_ip, "vxlan", {"VNI": 1, "VtepMAC": mac})


LEASES = [
    vxlan("10.1.19.0/24", "172.17.8.101", "aa:aa:aa:aa:aa:01"),  # this node
    vxlan("10.1.3.0/24", "172.17.8.102", "AA:AA:AA:AA:AA:02"),
    vxlan("10.1.77.0/24", "172.17.8.103", "aa:aa:aa:aa:aa:03"),
    Lease(net("10.1.90.0/24"), "172.17.8.104", "host-gw", {}),  # another backend: ignored
]


def test_vxlan_peer_gets_neighbour_fdb_and_onlink_route() -> None:
    plan = vxlan_programming(LEASES, OWN, "flannel.1")
    assert plan.neighbours == {
        Neighbour("10.1.3.0", "aa:aa:aa:aa:aa:02", "flannel.1"),
        Neighbour("10.1.77.0", "aa:aa:aa:aa:aa:03", "flannel.1"),
    }
    assert plan.fdb == {
        FdbEntry("aa:aa:aa:aa:aa:02", "172.17.8.102", "flannel.1"),
        FdbEntry("aa:aa:aa:aa:aa:03", "172.17.8.103", "flannel.1"),
    }
    assert plan.routes == {
        Route("10.1.3.0/24", "10.1.3.0", "flannel.1", onlink=True),
        Route("10.1.77.0/24", "10.1.77.0", "flannel.1", onlink=True),
    }


def test_vxlan_lease_without_a_vtep_mac_is_skipped() -> None:
    broken = Lease(net("10.1.5.0/24"), "172.17.8.105", "vxlan", {"VNI": 1})
    assert vxlan_programming([broken], OWN, "flannel.1").empty()


def test_direct_routing_uses_the_public_ip_on_the_same_l2_subnet() -> None:
    plan = vxlan_programming(
        [*LEASES, vxlan("10.1.8.0/24", "192.168.0.9", "aa:aa:aa:aa:aa:09")],
        OWN,
        "flannel.1",
        direct_routing_net=net("172.17.8.0/24"),
        iface="eth1",
    )
    assert Route("10.1.3.0/24", "172.17.8.102", "eth1") in plan.routes
    assert Route("10.1.8.0/24", "10.1.8.0", "flannel.1", onlink=True) in plan.routes
    assert {n.ip for n in plan.neighbours} == {"10.1.8.0"}


def test_host_gw_routes_via_public_ips() -> None:
    leases = [
        Lease(net("10.1.19.0/24"), "172.17.8.101", "host-gw", {}),
        Lease(net("10.1.3.0/24"), "172.17.8.102", "host-gw", {}),
        vxlan("10.1.77.0/24", "172.17.8.103", "aa:aa:aa:aa:aa:03"),
    ]
    plan = hostgw_programming(leases, OWN, "eth1")
    assert plan == Programming(routes=frozenset({Route("10.1.3.0/24", "172.17.8.102", "eth1")}))


def test_a_removed_lease_removes_all_three_and_an_added_one_adds_them() -> None:
    before = vxlan_programming(LEASES, OWN, "flannel.1")
    after_leases = [
        *[x for x in LEASES if str(x.subnet) != "10.1.77.0/24"],
        vxlan("10.1.4.0/24", "172.17.8.106", "aa:aa:aa:aa:aa:06"),
    ]
    changes = diff(before, vxlan_programming(after_leases, OWN, "flannel.1"))
    assert changes.remove == Programming(
        frozenset({Neighbour("10.1.77.0", "aa:aa:aa:aa:aa:03", "flannel.1")}),
        frozenset({FdbEntry("aa:aa:aa:aa:aa:03", "172.17.8.103", "flannel.1")}),
        frozenset({Route("10.1.77.0/24", "10.1.77.0", "flannel.1", onlink=True)}),
    )
    mac3, mac6 = "aa:aa:aa:aa:aa:03", "aa:aa:aa:aa:aa:06"
    assert commands(changes) == [
        ["ip", "route", "del", "10.1.77.0/24", "via", "10.1.77.0", "dev", "flannel.1"],
        f"bridge fdb del {mac3} dev flannel.1 dst 172.17.8.103 self".split(),
        ["ip", "neigh", "del", "10.1.77.0", "dev", "flannel.1"],
        f"ip neigh replace 10.1.4.0 lladdr {mac6} dev flannel.1 nud permanent".split(),
        f"bridge fdb replace {mac6} dev flannel.1 dst 172.17.8.106 self permanent".split(),
        ["ip", "route", "replace", "10.1.4.0/24", "via", "10.1.4.0", "dev", "flannel.1", "onlink"],
    ]


def test_no_change_no_commands() -> None:
    plan = vxlan_programming(LEASES, OWN, "flannel.1")
    assert diff(plan, plan).empty()
    assert commands(diff(plan, plan)) == []


def test_parsers_read_iproute2_json() -> None:
    neigh = json.dumps([{"dst": "10.1.3.0", "lladdr": "AA:AA:AA:AA:AA:02", "state": ["PERMANENT"]}])
    assert parse_neighbours(neigh, "flannel.1") == {
        Neighbour("10.1.3.0", "aa:aa:aa:aa:aa:02", "flannel.1")
    }
    fdb = json.dumps(
        [
            {"mac": "aa:aa:aa:aa:aa:02", "dst": "172.17.8.102", "flags": ["self"]},
            {"mac": "00:00:00:00:00:00", "dst": "172.17.8.1", "flags": ["self"]},
            {"mac": "33:33:00:00:00:01", "flags": ["self"], "state": "permanent"},
        ]
    )
    assert parse_fdb(fdb, "flannel.1") == {
        FdbEntry("aa:aa:aa:aa:aa:02", "172.17.8.102", "flannel.1")
    }
    routes = json.dumps(
        [
            {"dst": "10.1.3.0/24", "gateway": "10.1.3.0", "dev": "flannel.1", "flags": ["onlink"]},
            {"dst": "10.1.19.0/24", "gateway": "10.1.19.0", "dev": "flannel.1", "flags": []},
            {"dst": "10.1.0.0/16", "dev": "flannel.1", "flags": []},
            {"dst": "192.168.5.0/24", "gateway": "172.17.8.1", "dev": "flannel.1"},
            {"dst": "default", "gateway": "172.17.8.1", "dev": "flannel.1"},
        ]
    )
    assert parse_routes(routes, "flannel.1", NETWORK, OWN) == {
        Route("10.1.3.0/24", "10.1.3.0", "flannel.1", onlink=True)
    }
    assert parse_neighbours("", "flannel.1") == frozenset()


def test_udp_sends_each_packet_to_the_peer_holding_its_destination() -> None:
    leases = [
        Lease(net("10.1.19.0/24"), "172.17.8.101", "udp", {}),
        Lease(net("10.1.3.0/24"), "172.17.8.102", "udp", {}),
    ]
    table = route_table(leases, OWN)
    mask = 0xFFFFFF00
    header = bytes([0x45]) + bytes(11) + bytes([10, 1, 19, 1])
    assert destination(header + bytes([10, 1, 3, 7]), table, mask) == "172.17.8.102"
    assert destination(header + bytes([10, 1, 19, 7]), table, mask) is None
    assert destination(b"\x60" + bytes(39), table, mask) is None  # IPv6


def test_iptables_rules_are_flannels() -> None:
    from provisioner.guest.flannel.firewall import forward_rules, masq_rules

    comment = ["-m", "comment", "--comment", "flanneld forward"]
    assert forward_rules(NETWORK) == [
        ("filter", "FORWARD", [*comment, "-j", "FLANNEL-FWD"]),
        ("filter", "FLANNEL-FWD", ["-s", "10.1.0.0/16", *comment, "-j", "ACCEPT"]),
        ("filter", "FLANNEL-FWD", ["-d", "10.1.0.0/16", *comment, "-j", "ACCEPT"]),
    ]
    masq = [" ".join([table, chain, *spec]) for table, chain, spec in masq_rules(NETWORK, OWN)]
    tail = "-m comment --comment flanneld masq"
    assert masq == [
        f"nat POSTROUTING {tail} -j FLANNEL-POSTRTG",
        f"nat FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {tail} -j RETURN",
        f"nat FLANNEL-POSTRTG -s 10.1.19.0/24 -d 10.1.0.0/16 {tail} -j RETURN",
        f"nat FLANNEL-POSTRTG -s 10.1.0.0/16 -d 10.1.19.0/24 {tail} -j RETURN",
        f"nat FLANNEL-POSTRTG ! -s 10.1.0.0/16 -d 10.1.19.0/24 {tail} -j RETURN",
        f"nat FLANNEL-POSTRTG -s 10.1.0.0/16 ! -d 224.0.0.0/4 {tail} -j MASQUERADE",
        f"nat FLANNEL-POSTRTG ! -s 10.1.0.0/16 -d 10.1.0.0/16 {tail} -j MASQUERADE",
    ]


def test_the_vtep_mac_is_stable_local_and_unicast(tmp_path: Path) -> None:
    from provisioner.guest.flannel.backends import vtep_mac

    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    mac = vtep_mac("flannel.1", "10.0.0.1", str(machine_id))
    assert mac == vtep_mac("flannel.1", "10.0.0.1", str(machine_id))  # a recreated device
    assert mac != vtep_mac("flannel.2", "10.0.0.1", str(machine_id))
    # nodes that share a machine-id (namespaces of one host) still differ
    assert mac != vtep_mac("flannel.1", "10.0.0.2", str(machine_id))
    first = int(mac.split(":")[0], 16)
    assert first & 0x02  # locally administered
    assert not first & 0x01  # unicast
