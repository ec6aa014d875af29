"""etcd: every node reaches one healthy cluster of the expected size with one leader.

Each node talks to the endpoints its expectations list (its own member, or the
members' URLs on a worker), so the checks also prove the network between nodes.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioner import facts
from provisioner.checks.commands import fail_on, read
from provisioner.checks.expectations import Expectations, NodeExpectation
from provisioner.checks.verdicts import (
    etcd_health_problems,
    etcd_leader_problems,
    etcd_member_problems,
    local_member_problems,
)


def test_every_member_is_healthy(host: Any, lab_node: NodeExpectation) -> None:
    health = read(host, facts.endpoint_health(lab_node.etcd_endpoints, cluster=True))
    fail_on(etcd_health_problems(health))


def test_member_count(host: Any, lab_node: NodeExpectation, lab_expectations: Expectations) -> None:
    members = read(host, facts.member_list(lab_node.etcd_endpoints))
    fail_on(etcd_member_problems(members, lab_expectations.etcd_members))


def test_node_is_a_member(host: Any, lab_node: NodeExpectation) -> None:
    if not lab_node.is_member:
        pytest.skip(f"{lab_node.name} is a worker and runs no etcd member")
    endpoints = lab_node.etcd_endpoints
    statuses = read(host, facts.endpoint_status(endpoints))
    members = read(host, facts.member_list(endpoints))
    fail_on(local_member_problems(lab_node, statuses, members))


def test_one_leader(host: Any, lab_node: NodeExpectation, lab_expectations: Expectations) -> None:
    statuses = read(host, facts.endpoint_status(lab_node.etcd_endpoints, cluster=True))
    fail_on(etcd_leader_problems(statuses, lab_expectations.etcd_members))
