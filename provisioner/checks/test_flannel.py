"""flannel: one lease per node, this node's subnet.env and device, and the overlay
reaching every other node (vxlan and udp: each peer's overlay address answers from
ours; host-gw, which carries only container traffic: a route to each peer's subnet).
The container-to-container path over docker's bridges is checked on a real lab by
tests/vm/test_flannel_vm.py; `lab verify` does not start docker (see test_system)."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner import facts
from provisioner.checks.commands import fail_on, read
from provisioner.checks.expectations import Expectations, FlannelExpectation, NodeExpectation
from provisioner.checks.verdicts import (
    flannel_lease_problems,
    host_gw_route_problems,
    overlay_address,
    subnet_env_problems,
)
from provisioner.parsers import FlannelLease

DEVICES = {"vxlan": "flannel.1", "udp": "flannel0"}


def _overlay(lab_expectations: Expectations) -> FlannelExpectation:
    if lab_expectations.flannel is None:
        pytest.skip("flannel is off in this lab")
    return lab_expectations.flannel


def _leases(host: Any, lab_node: NodeExpectation) -> tuple[FlannelLease, ...]:
    return read(host, facts.flannel_leases(lab_node.etcd_endpoints))


def test_every_node_holds_one_lease(
    host: Any, lab_node: NodeExpectation, lab_expectations: Expectations
) -> None:
    overlay = _overlay(lab_expectations)
    leases = _leases(host, lab_node)
    fail_on(
        flannel_lease_problems(leases, lab_expectations.nodes, overlay.network, overlay.backend)
    )


def test_subnet_env_matches_this_nodes_lease(
    host: Any, lab_node: NodeExpectation, lab_expectations: Expectations
) -> None:
    overlay = _overlay(lab_expectations)
    own = next((lease for lease in _leases(host, lab_node) if lease.public_ip == lab_node.ip), None)
    fail_on(subnet_env_problems(read(host, facts.FLANNEL_SUBNET_ENV), overlay.network, own))


def test_the_overlay_reaches_every_node(
    host: Any, lab_node: NodeExpectation, lab_expectations: Expectations
) -> None:
    overlay = _overlay(lab_expectations)
    leases = _leases(host, lab_node)
    own = next((lease for lease in leases if lease.public_ip == lab_node.ip), None)
    if own is None:
        pytest.fail(f"{lab_node.name} holds no lease", pytrace=False)
    peers = [lease for lease in leases if lease.public_ip != lab_node.ip]
    device = DEVICES.get(overlay.backend)
    if device is None:  # host-gw: nothing on the host answers inside a subnet but docker
        routes = {peer.subnet: read(host, facts.route_via(peer.subnet)) for peer in peers}
        fail_on(host_gw_route_problems(routes, peers))
        return
    if not read(host, facts.link_exists(device)):
        pytest.fail(f"no {device} device for the {overlay.backend} overlay", pytrace=False)
    source = overlay_address(own)
    fail_on(
        [
            f"{peer.public_ip}'s overlay address {overlay_address(peer)} does not answer"
            f" from {source} over {device}"
            for peer in peers
            if not read(host, facts.ping(source, overlay_address(peer)))
        ]
    )
