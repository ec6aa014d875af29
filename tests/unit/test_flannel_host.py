"""The host's side of flannel: reading leases and subnet.env, and lab verify's verdicts."""

from __future__ import annotations

import base64
import json

import pytest

from provisioner.checks.expectations import NodeExpectation
from provisioner.checks.verdicts import (
    flannel_lease_problems,
    host_gw_route_problems,
    overlay_address,
    subnet_env_problems,
)
from provisioner.errors import RemoteError
from provisioner.parsers import FlannelLease, parse_flannel_leases, parse_subnet_env

pytestmark = pytest.mark.unit

A = FlannelLease("10.1.19.0/24", "192.168.58.101", "vxlan")
B = FlannelLease("10.1.3.0/24", "192.168.58.102", "vxlan")
NODES = (
    NodeExpectation("core-01", "192.168.58.101", "core"),
    NodeExpectation("core-02", "192.168.58.102", "core"),
)


def kv(key: str, value: object) -> dict[str, str]:
    return {
        "key": base64.b64encode(key.encode()).decode(),
        "value": base64.b64encode(json.dumps(value).encode()).decode(),
    }


def test_leases_from_etcdctl_json() -> None:
    answer = {
        "header": {"revision": 9},
        "kvs": [
            kv("/coreos.com/network/subnets/10.1.3.0-24", {"PublicIP": B.public_ip,
                                                          "BackendType": "vxlan"}),
            kv("/coreos.com/network/subnets/10.1.19.0-24", {"PublicIP": A.public_ip,
                                                           "BackendType": "vxlan"}),
        ],
    }  # fmt: skip
    assert parse_flannel_leases(json.dumps(answer)) == (A, B)
    assert parse_flannel_leases('{"header": {}}') == ()
    with pytest.raises(RemoteError, match="not <ip>-<len>"):
        parse_flannel_leases(json.dumps({"kvs": [kv("/coreos.com/network/subnets/x", {})]}))


def test_subnet_env() -> None:
    text = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.19.1/24\nFLANNEL_MTU=1450\n"
    env = parse_subnet_env(text + "FLANNEL_IPMASQ=false\n")
    assert env["FLANNEL_SUBNET"] == "10.1.19.1/24"
    assert subnet_env_problems(env, "10.1.0.0/16", A) == []
    assert subnet_env_problems(env, "10.1.0.0/16", B) == [
        "FLANNEL_SUBNET is '10.1.19.1/24', expected 10.1.3.1/24"
    ]
    assert subnet_env_problems(env, "10.1.0.0/16", None) == ["this node holds no lease"]


def test_one_distinct_lease_per_node() -> None:
    assert flannel_lease_problems((A, B), NODES, "10.1.0.0/16", "vxlan") == []
    twice = FlannelLease("10.1.19.0/24", B.public_ip, "vxlan")
    assert flannel_lease_problems((A, twice), NODES, "10.1.0.0/16", "vxlan") == [
        "subnet 10.1.19.0/24 is leased 2 times"
    ]
    assert flannel_lease_problems((A,), NODES, "10.1.0.0/16", "host-gw") == [
        "core-02 (192.168.58.102) holds 0 leases, expected 1",
        "lease 10.1.19.0/24 is for vxlan, expected host-gw",
    ]
    stray = FlannelLease("10.9.0.0/24", A.public_ip, "vxlan")
    assert "lease 10.9.0.0/24 of 192.168.58.101 is outside 10.1.0.0/16" in flannel_lease_problems(
        (stray, B), NODES, "10.1.0.0/16", "vxlan"
    )


def test_overlay_addresses_and_host_gw_routes() -> None:
    assert overlay_address(A) == "10.1.19.0"
    routes = {B.subnet: f"{B.subnet} via {B.public_ip} dev eth0 "}
    assert host_gw_route_problems(routes, [B]) == []
    assert host_gw_route_problems({B.subnet: ""}, [B]) == [
        "no route to 10.1.3.0/24 via 192.168.58.102 (found '')"
    ]
