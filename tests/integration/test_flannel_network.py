"""flanneld processes as nodes in network namespaces, with a real etcd and the real kernel."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flannel_support import Node, Underlay, can_run, ping, sh, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(can_run()), reason=can_run() or "runs"),
]

NETWORK = "10.251.0.0/16"


@pytest.fixture
def underlay(tmp_path: Path) -> Iterator[Underlay]:
    net = Underlay(tmp_path, lease_ttl=6)
    try:
        yield net
    finally:
        net.close()


def config(backend: str) -> str:
    return json.dumps({"Network": NETWORK, "Backend": {"Type": backend}})


def all_reach(nodes: list[Node]) -> bool:
    return all(a.pings(b) for a, b in itertools.permutations(nodes, 2))


def test_vxlan_nodes_lease_distinct_subnets_reach_each_other_and_keep_them(
    underlay: Underlay,
) -> None:
    nodes = underlay.start(3)
    underlay.set_config(config("vxlan"))
    for node in nodes:  # all at once: the leases are taken concurrently
        node.start()
    subnets = [node.wait_for_lease() for node in nodes]
    assert len(set(subnets)) == 3
    assert len(underlay.lease_keys()) == 3
    for node in nodes:
        env = node.env()
        assert env["FLANNEL_NETWORK"] == NETWORK
        assert env["FLANNEL_MTU"] == "1450"
        assert env["FLANNEL_IPMASQ"] == "false"
        assert node.docker_file.read_text().splitlines() == [
            f'DOCKER_OPT_BIP="--bip={env["FLANNEL_SUBNET"]}"',
            'DOCKER_OPT_IPMASQ="--ip-masq=true"',
            'DOCKER_OPT_MTU="--mtu=1450"',
        ]
        link = node.ip("-d", "link", "show", "flannel.1")
        assert "vxlan id 1" in link
        assert "nolearning" in link
        assert "mtu 1450" in link
        assert f"{node.subnet.network_address}/32" in node.ip("-4", "addr", "show", "flannel.1")
        node.add_docker_bridge()
    wait_for("every docker bridge reaching every other over vxlan", lambda: all_reach(nodes))
    first = nodes[0]
    for other in nodes[1:]:
        assert f"{other.subnet} via {other.subnet.network_address} dev flannel.1 onlink" in (
            first.routes()
        )

    # killed and started again, a node keeps its subnet
    before = first.subnet
    first.stop(signal.SIGKILL)
    first.subnet_file.unlink()  # from its lease in etcd alone
    first.start()
    assert first.wait_for_lease() == before
    wait_for("reachability after the restart", lambda: all_reach(nodes))

    # a node that dies loses its lease when the TTL runs out, and leaves the others' routes
    gone = nodes[2]
    assert gone.stop() == 0
    wait_for(
        f"{gone.subnet} to leave the other nodes' routes",
        lambda: all(str(gone.subnet) not in node.routes() for node in nodes[:2]),
    )
    assert len(underlay.lease_keys()) == 2
    assert nodes[0].pings(nodes[1])
    assert "Lease renewed" in nodes[1].log.read_text()  # a 6 s TTL, renewed every 2 s


def test_containers_behind_the_docker_bridges_reach_each_other_across_nodes(
    underlay: Underlay,
) -> None:
    nodes = underlay.start(2)
    underlay.set_config(config("vxlan"))
    for node in nodes:
        node.start()
    containers = []
    for node in nodes:
        node.wait_for_lease()
        wait_for("the node to be ready", node.ready)
        node.add_docker_bridge()
        containers.append((f"{node.netns}-c", node.add_container()))
    (a_ns, a_ip), (b_ns, b_ip) = containers
    wait_for("container a reaching container b", lambda: ping(a_ns, a_ip, b_ip))
    assert ping(b_ns, b_ip, a_ip)


def test_host_gw_routes_via_the_peers_public_ips_and_masquerades(underlay: Underlay) -> None:
    nodes = underlay.start(2)
    underlay.set_config(config("host-gw"))
    for node in nodes:
        node.start("-ip-masq")
    for node in nodes:
        node.wait_for_lease()
        assert node.env()["FLANNEL_MTU"] == "1500"
        assert node.env()["FLANNEL_IPMASQ"] == "true"
        assert 'DOCKER_OPT_IPMASQ="--ip-masq=false"' in node.docker_file.read_text()
        node.add_docker_bridge()
    wait_for("the docker bridges reaching each other via host-gw", lambda: all_reach(nodes))
    a, b = nodes
    assert f"{b.subnet} via {b.address} dev eth0" in a.routes()
    rules = sh("ip", "netns", "exec", a.netns, "iptables", "-w", "-t", "nat", "-S")
    forward = sh("ip", "netns", "exec", a.netns, "iptables", "-w", "-S")
    assert '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD' in forward
    assert (
        f'-A FLANNEL-FWD -s {NETWORK} -m comment --comment "flanneld forward" -j ACCEPT'
    ) in forward
    assert (
        f'-A FLANNEL-FWD -d {NETWORK} -m comment --comment "flanneld forward" -j ACCEPT'
    ) in forward
    assert '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG' in rules
    assert (
        f'-A FLANNEL-POSTRTG -s {a.subnet} -d {NETWORK} -m comment --comment "flanneld masq" '
        "-j RETURN"
    ) in rules
    assert (
        f'-A FLANNEL-POSTRTG -s {NETWORK} ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" '
        "-j MASQUERADE"
    ) in rules
    # a restart adds no second copy
    a.stop()
    a.start("-ip-masq")
    wait_for("the restarted node to be ready", a.ready)
    assert sh("ip", "netns", "exec", a.netns, "iptables", "-w", "-t", "nat", "-S") == rules
    assert sh("ip", "netns", "exec", a.netns, "iptables", "-w", "-S") == forward


def test_a_node_whose_lease_is_deleted_exits_and_comes_back_on_the_same_subnet(
    underlay: Underlay,
) -> None:
    (node,) = underlay.start(1)
    underlay.set_config(config("vxlan"))
    node.start()
    subnet = node.wait_for_lease()
    wait_for("the node to be ready", node.ready)
    underlay.etcdctl("del", f"/coreos.com/network/subnets/{subnet.network_address}-24")
    assert node.process is not None
    assert node.process.wait(timeout=30) == 1
    assert "Lease has been revoked" in node.log.read_text()
    node.start()  # as systemd's Restart=always: the subnet file names the previous subnet
    wait_for("the lease to come back", lambda: len(underlay.lease_keys()) == 1)
    assert underlay.lease_keys() == [f"/coreos.com/network/subnets/{subnet.network_address}-24"]
    assert node.subnet == subnet


def test_udp_backend_carries_packets_through_flannel0(underlay: Underlay) -> None:
    nodes = underlay.start(2)
    underlay.set_config(config("udp"))
    for node in nodes:
        node.start(iface=node.address)  # -iface by address, as the lab's cloud-config gives it
    for node in nodes:
        node.wait_for_lease()
        assert node.env()["FLANNEL_MTU"] == "1472"
        node.add_docker_bridge()
    wait_for("the docker bridges reaching each other over udp", lambda: all_reach(nodes))


@pytest.mark.parametrize(
    ("network_config", "message"),
    [
        ('{"Network": "10.251.0.0/16", "Backend": {"Type": "carrier-pigeon"}}', "unknown backend"),
        ('{"Network": "10.251.0.0/33"}', "not an IPv4 CIDR"),
        ('{"Network": "10.251.0.0/16", "SubnetLen": 17}', "at least four subnets"),
        ('{"Network": "10.251.0.0/16", "SubnetMin": "10.9.0.0"}', "SubnetMin is not in the range"),
    ],
)
def test_an_unusable_config_ends_flanneld_before_anything_is_programmed(
    underlay: Underlay, network_config: str, message: str
) -> None:
    (node,) = underlay.start(1)
    underlay.set_config(network_config)
    assert node.start().wait(timeout=30) == 1
    assert message in node.log.read_text()
    assert "flannel.1" not in node.ip("link", "show")
    assert underlay.lease_keys() == []
    assert not node.subnet_file.exists()
