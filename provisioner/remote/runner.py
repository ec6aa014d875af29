"""One way to run a command on a host: the :class:`Runner` protocol and its result."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from provisioner.errors import RemoteError

# How much of stderr an error message quotes; the rest stays in the result.
_STDERR_TAIL_LINES = 10


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    rc: int
    stdout: str
    stderr: str

    @property
    def succeeded(self) -> bool:
        return self.rc == 0

    @property
    def failed(self) -> bool:
        return self.rc != 0


@runtime_checkable
class Runner(Protocol):
    """Runs argument lists on one host; ``name`` says which host in messages."""

    @property
    def name(self) -> str: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` and return its result; a non-zero exit is not an error.

        Raises :class:`RemoteError` when the command could not be run at all and
        :class:`WaitTimeout` when it ran past ``timeout`` seconds.
        """
        ...

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        """Copy the file ``local`` to the path ``remote`` on the host."""
        ...

    def close(self) -> None:
        """Release connections; the runner may be used again afterwards."""
        ...


def quote_argv(argv: Sequence[str]) -> str:
    """Join an argument list into one shell command line, each word quoted."""
    if not argv:
        raise ValueError("empty command")
    return shlex.join(argv)


def check_result(host: str, argv: Sequence[str], result: CommandResult) -> CommandResult:
    """Return ``result`` if it succeeded, else raise a RemoteError quoting its stderr."""
    if result.succeeded:
        return result
    raise RemoteError(describe_failure(host, argv, result))


def describe_failure(host: str, argv: Sequence[str], result: CommandResult) -> str:
    """One message naming the host, the command, its exit code and stderr's tail."""
    tail = "\n".join(result.stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
    message = f"{host}: `{quote_argv(argv)}` exited with {result.rc}"
    return f"{message}: {tail}" if tail else message
