"""fleet: every node sees every node, each with its own machine-id, IP and metadata."""

from __future__ import annotations

from typing import Any

from provisioner import facts
from provisioner.checks.commands import fail_on, read
from provisioner.checks.expectations import Expectations, NodeExpectation
from provisioner.checks.verdicts import fleet_machine_problems, this_machine_problems


def test_fleet_lists_every_node(host: Any, lab_expectations: Expectations) -> None:
    machines = read(host, facts.FLEET_MACHINES)
    fail_on(fleet_machine_problems(machines, lab_expectations.nodes))


def test_fleet_knows_this_machine(host: Any, lab_node: NodeExpectation) -> None:
    machine_id = read(host, facts.MACHINE_ID)
    machines = read(host, facts.FLEET_MACHINES)
    fail_on(this_machine_problems(lab_node, machine_id, machines))
