"""etcd: every node reaches one healthy cluster of the expected size with one leader.

Each node talks to the endpoints its expectations list (127.0.0.1: its own member on a
core node, its etcd gateway on a worker); ``--cluster`` then reaches every member's
own URL, so the checks also prove the network between nodes.
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


def test_local_endpoint_is_healthy(host: Any, lab_node: NodeExpectation) -> None:
    """The node's own endpoint commits through to the cluster: on a worker, its gateway."""
    health = read(host, facts.endpoint_health(lab_node.etcd_endpoints))
    fail_on(etcd_health_problems(health))


def test_v2_api_answers_on_loopback(host: Any, lab_node: NodeExpectation) -> None:
    """The tutorials' ``curl http://127.0.0.1:PORT/v2/keys/...`` works on every node, on
    ports 2379 and 4001: a core node's member serves both, a worker's gateway 2379
    and its v2 proxy 4001."""
    problems = []
    for url in lab_node.v2_endpoints:
        action = read(host, facts.etcd_v2_read(url))
        if action != "get":
            problems.append(f"{url}/v2/keys/ answered {action!r}, expected 'get'")
    fail_on(problems)


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
