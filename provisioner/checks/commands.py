"""Running the catalogue's guest commands (:mod:`provisioner.facts`) on a testinfra host,
and reporting findings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pytest

from provisioner.facts import Fact
from provisioner.remote.runner import CommandResult, quote_argv

T = TypeVar("T")


def run(host: Any, argv: Sequence[str]) -> CommandResult:
    """Run ``argv`` on a testinfra host; a non-zero exit is returned, not raised."""
    result = host.run(quote_argv(argv))
    return CommandResult(rc=result.rc, stdout=result.stdout, stderr=result.stderr)


def read(host: Any, fact: Fact[T]) -> T:
    """What ``fact`` says on a testinfra host; RemoteError (with stderr's tail) if its
    command exits with a code that carries no answer."""
    return fact.read(host.backend.get_hostname(), run(host, fact.argv))


def fail_on(problems: Sequence[str]) -> None:
    """Fail the current check with one line per problem found; pass if there are none."""
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
