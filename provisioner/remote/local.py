"""Run commands on this machine through subprocess."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from provisioner.errors import HostError, WaitTimeout
from provisioner.remote.runner import CommandResult, quote_argv


class LocalRunner:
    """The :class:`~provisioner.remote.runner.Runner` for the host itself."""

    def __init__(
        self,
        *,
        name: str = "localhost",
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._name = name
        self._cwd = cwd
        self._env = dict(env) if env is not None else None

    @property
    def name(self) -> str:
        return self._name

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        command = list(argv)
        if not command:
            raise ValueError("empty command")
        try:
            completed = subprocess.run(
                command,
                input=stdin.encode() if stdin is not None else None,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                cwd=self._cwd,
                env=self._env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise HostError(
                f"{self._name}: cannot run `{quote_argv(command)}`: {command[0]} not found",
                hint=f"install the package that provides {command[0]}",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise WaitTimeout(
                self._name, f"`{quote_argv(command)}` did not finish within {timeout:g}s"
            ) from exc
        return CommandResult(
            rc=completed.returncode,
            stdout=completed.stdout.decode(errors="replace"),
            stderr=completed.stderr.decode(errors="replace"),
        )

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        target = Path(remote)
        shutil.copyfile(local, target)
        if mode is not None:
            target.chmod(mode)

    def close(self) -> None:
        """Nothing to release; present so LocalRunner is a Runner."""
