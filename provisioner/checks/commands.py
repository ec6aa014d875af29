"""The guest commands the checks run (argument lists), running them, and reporting findings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from provisioner.errors import RemoteError
from provisioner.remote.runner import CommandResult, describe_failure, quote_argv

ETCDCTL_TIMEOUT = "5s"

MACHINE_ID = ("cat", "/etc/machine-id")
LIST_MACHINES = ("fleetctl", "list-machines", "--full", "--no-legend")
LIST_FAILED_UNITS = ("systemctl", "list-units", "--state=failed", "--no-legend", "--plain")
IS_SYSTEM_RUNNING = ("systemctl", "is-system-running")
DOCKER_SOCKET = "/run/docker.sock"  # docker.socket listens here; a connection starts docker
DOCKER_SOCKET_IS_SOCKET = ("test", "-S", DOCKER_SOCKET)


def etcdctl(endpoints: Sequence[str], *args: str) -> tuple[str, ...]:
    """``etcdctl`` speaking the v3 API to ``endpoints``, with a deadline per request."""
    return (
        "env",
        "ETCDCTL_API=3",
        "etcdctl",
        f"--endpoints={','.join(endpoints)}",
        f"--command-timeout={ETCDCTL_TIMEOUT}",
        *args,
    )


def is_active(unit: str) -> tuple[str, ...]:
    return ("systemctl", "is-active", unit)


def run(host: Any, argv: Sequence[str]) -> CommandResult:
    """Run ``argv`` on a testinfra host; a non-zero exit is returned, not raised."""
    result = host.run(quote_argv(argv))
    return CommandResult(rc=result.rc, stdout=result.stdout, stderr=result.stderr)


def run_ok(host: Any, argv: Sequence[str], *, ok: Sequence[int] = (0,)) -> str:
    """stdout of ``argv``; RemoteError (with stderr's tail) if it exits outside ``ok``."""
    result = run(host, argv)
    if result.rc not in ok:
        raise RemoteError(describe_failure(host.backend.get_hostname(), argv, result))
    return result.stdout


def fail_on(problems: Sequence[str]) -> None:
    """Fail the current check with one line per problem found; pass if there are none."""
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
