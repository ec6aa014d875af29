"""systemd: the node's expected units (etcd2, fleet, sshd, docker.socket, ...) run; none
failed; docker is ready on its socket."""

from __future__ import annotations

from typing import Any

from provisioner.checks.commands import (
    DOCKER_SOCKET_IS_SOCKET,
    IS_SYSTEM_RUNNING,
    LIST_FAILED_UNITS,
    fail_on,
    is_active,
    run,
    run_ok,
)
from provisioner.checks.expectations import NodeExpectation
from provisioner.checks.verdicts import (
    docker_problems,
    failed_unit_problems,
    inactive_unit_problems,
    system_state_problems,
)
from provisioner.parsers import parse_is_system_running, parse_systemctl_failed


def test_expected_units_are_active(host: Any, lab_node: NodeExpectation) -> None:
    # `systemctl is-active` exits non-zero for anything but active; its word says why.
    states = {unit: run(host, is_active(unit)).stdout.strip() for unit in lab_node.units}
    fail_on(inactive_unit_problems(states))


def test_no_failed_units(host: Any) -> None:
    failed = parse_systemctl_failed(run_ok(host, LIST_FAILED_UNITS))
    fail_on(failed_unit_problems(failed))


def test_system_is_running(host: Any) -> None:
    # Exits non-zero unless running; the state word is printed either way.
    state = parse_is_system_running(run(host, IS_SYSTEM_RUNNING).stdout)
    failed = parse_systemctl_failed(run_ok(host, LIST_FAILED_UNITS))
    fail_on(system_state_problems(state, failed))


def test_docker_is_ready_on_its_socket(host: Any) -> None:
    # As on CoreOS, docker.socket starts docker on first use; the check does not
    # start it (under emulation that is a minute per node). The socket must be
    # there, and docker.service, if it was started, must not have failed.
    socket = run(host, DOCKER_SOCKET_IS_SOCKET).rc == 0
    fail_on(docker_problems(socket, run(host, is_active("docker.service")).stdout.strip()))
