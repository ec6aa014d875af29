"""etcd: every node reaches one healthy cluster of the expected size with one leader.

Each node talks to the endpoints its expectations list (its own member, or the
members' URLs on a worker), so the checks also prove the network between nodes.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.checks.commands import etcdctl, fail_on, run_ok
from provisioner.checks.expectations import Expectations, NodeExpectation
from provisioner.checks.verdicts import (
    etcd_health_problems,
    etcd_leader_problems,
    etcd_member_problems,
    local_member_problems,
)
from provisioner.parsers import parse_endpoint_health, parse_endpoint_status, parse_member_list

# etcdctl exits 1 when an endpoint is unhealthy but still prints every endpoint.
HEALTH_EXIT_CODES = (0, 1)


def test_every_member_is_healthy(host: Any, lab_node: NodeExpectation) -> None:
    argv = etcdctl(lab_node.etcd_endpoints, "endpoint", "health", "--cluster", "-w", "json")
    health = parse_endpoint_health(run_ok(host, argv, ok=HEALTH_EXIT_CODES))
    fail_on(etcd_health_problems(health))


def test_member_count(host: Any, lab_node: NodeExpectation, lab_expectations: Expectations) -> None:
    argv = etcdctl(lab_node.etcd_endpoints, "member", "list", "-w", "json")
    members = parse_member_list(run_ok(host, argv))
    fail_on(etcd_member_problems(members, lab_expectations.etcd_members))


def test_node_is_a_member(host: Any, lab_node: NodeExpectation) -> None:
    if not lab_node.is_member:
        pytest.skip(f"{lab_node.name} is a worker and runs no etcd member")
    endpoints = lab_node.etcd_endpoints
    statuses = parse_endpoint_status(
        run_ok(host, etcdctl(endpoints, "endpoint", "status", "-w", "json"))
    )
    members = parse_member_list(run_ok(host, etcdctl(endpoints, "member", "list", "-w", "json")))
    fail_on(local_member_problems(lab_node, statuses, members))


def test_one_leader(host: Any, lab_node: NodeExpectation, lab_expectations: Expectations) -> None:
    argv = etcdctl(lab_node.etcd_endpoints, "endpoint", "status", "--cluster", "-w", "json")
    statuses = parse_endpoint_status(run_ok(host, argv))
    fail_on(etcd_leader_problems(statuses, lab_expectations.etcd_members))
