"""systemd: the node's expected units (etcd2, fleet, sshd, docker.socket, ...) run; none
failed; docker is ready on its socket."""

from __future__ import annotations

from typing import Any

from provisioner import facts
from provisioner.checks.commands import fail_on, read
from provisioner.checks.expectations import NodeExpectation
from provisioner.checks.verdicts import (
    docker_problems,
    failed_unit_problems,
    inactive_unit_problems,
    system_state_problems,
)


def test_expected_units_are_active(host: Any, lab_node: NodeExpectation) -> None:
    states = {unit: read(host, facts.unit_state(unit)) for unit in lab_node.units}
    fail_on(inactive_unit_problems(states))


def test_no_failed_units(host: Any) -> None:
    failed = read(host, facts.FAILED_UNITS)
    fail_on(failed_unit_problems(failed))


def test_system_is_running(host: Any) -> None:
    state = read(host, facts.system_state())
    failed = read(host, facts.FAILED_UNITS)
    fail_on(system_state_problems(state, failed))


def test_docker_is_ready_on_its_socket(host: Any) -> None:
    # As on CoreOS, docker.socket starts docker on first use; the check does not
    # start it (under emulation that is a minute per node). The socket must be
    # there, and docker.service, if it was started, must not have failed.
    socket = read(host, facts.DOCKER_SOCKET_LISTENS)
    fail_on(docker_problems(socket, read(host, facts.unit_state("docker.service"))))
