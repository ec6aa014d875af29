"""A running lab as one object, for acceptance tests (the pytest plugin hands one out).

:class:`LabSession` wraps the library behind the ``lab`` verbs: brought up with
``lab up --snapshot NAME``'s fast path and verified, brought back to that
snapshot on demand, and driven like the CLI drives it (``lab exec``,
``lab etcdctl``, ``lab fleetctl``, ``lab kill/stop/start``, ``lab status``,
``lab logs``). Nothing here runs the ``lab`` command.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from provisioner import lifecycle, operate
from provisioner.checks.runner import VerifyResult
from provisioner.config import CONFIG_FILE, STATE_DIR, LabConfig, Overrides, config_warnings
from provisioner.errors import ConfigError, LabError
from provisioner.lab import load_lab, remember_flags
from provisioner.lifecycle import fastpath, snapshots
from provisioner.lifecycle.fastpath import Ready
from provisioner.lifecycle.snapshots import SnapshotResult
from provisioner.operate import NodeStatus
from provisioner.progress import make_progress
from provisioner.remote.login import command_words
from provisioner.remote.runner import CommandResult

FLEETCTL_TIMEOUT = 900.0


@dataclass(frozen=True)
class LabLocation:
    """Where a lab is: its directory, and the config file if it is not ``DIR/lab.yaml``."""

    directory: Path
    config_file: Path | None = None


class CommandError(LabError):
    """A command run with ``check=True`` exited non-zero; carries its result."""

    def __init__(self, what: str, result: CommandResult) -> None:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()[-10:]
        super().__init__(f"{what} exited {result.rc}" + "".join(f"\n  {x}" for x in output))
        self.result = result


def find_lab(
    directory: Path | None, config_file: Path | None, search_from: Sequence[Path] = ()
) -> LabLocation:
    """The lab named by ``directory`` and/or ``config_file``; else the first of
    ``search_from`` holding a ``lab.yaml``. A directory counts as a lab if it holds
    ``lab.yaml`` or ``.lab/`` (or ``config_file`` is given), so a mistyped path
    never boots a fresh three-node lab somewhere unexpected."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(
            "lab config file not found", path=str(config_file), hint="give a lab.yaml"
        )
    if directory is not None:
        if not directory.is_dir():
            raise ConfigError(
                "lab directory not found",
                path=str(directory),
                hint="create it with a lab.yaml (every key is optional: `{}` is 3 nodes)",
            )
        if config_file is None and not _is_lab(directory):
            raise ConfigError(
                f"not a lab directory: it has neither {CONFIG_FILE} nor {STATE_DIR}/",
                path=str(directory),
                hint=f"write a {CONFIG_FILE} there (every key is optional: `{{}}` is 3 nodes)",
            )
        return LabLocation(directory.resolve(), config_file and config_file.resolve())
    if config_file is not None:
        return LabLocation(config_file.resolve().parent, config_file.resolve())
    for candidate in search_from:
        if (candidate / CONFIG_FILE).is_file():
            return LabLocation(candidate.resolve())
    looked = ", ".join(str(p) for p in search_from) or "nowhere"
    raise ConfigError(
        f"no lab directory: no {CONFIG_FILE} in {looked}",
        hint="pass --lab-dir DIR or --lab-config FILE (or set lab_dir in the pytest ini file)",
    )


def _is_lab(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file() or (directory / STATE_DIR).is_dir()


class LabSession:
    """A lab under test: its config, the snapshot it comes back to, and its verbs."""

    def __init__(
        self,
        config: LabConfig,
        snapshot: str,
        *,
        accel: str = "auto",
        config_file: Path | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.config = config
        self.snapshot = snapshots.check_name(snapshot)
        self.accel = accel
        self.config_file = config_file
        self.stream = stream  # progress lines; stderr by default
        self.ready: Ready | None = None

    @classmethod
    def load(cls, where: LabLocation, snapshot: str, *, accel: str = "auto") -> LabSession:
        """The lab's config as ``lab`` loads it (lab.yaml, then the flags it was rendered
        with); its warnings become Python warnings."""
        config = load_lab(where.directory, None, where.config_file)
        for text in config_warnings(config):
            warnings.warn(f"lab {config.name}: {text}", stacklevel=2)
        return cls(config, snapshot, accel=accel, config_file=where.config_file)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def directory(self) -> Path:
        return self.config.directory

    @property
    def nodes(self) -> list[str]:
        return [node.name for node in self.config.nodes]

    @property
    def logs(self) -> Path:
        return self.config.state_dir / "logs"

    # --- up and back ---------------------------------------------------------------

    def bring_up(self) -> Ready:
        """``lab up --snapshot NAME``, and ``lab verify`` after a restore too: a lab
        that fails a check raises :class:`~provisioner.lifecycle.fastpath.VerifyError`
        naming the checks."""
        remember_flags(self.config, Overrides(), self.config_file)
        progress = make_progress(self.stream)
        try:
            self.ready = fastpath.up_from_snapshot(
                self.config, self.snapshot, progress, accel=self.accel, verify_restored=True
            )
        finally:
            progress.close()
        return self.ready

    def restore(self) -> SnapshotResult:
        """Every node back to the session's snapshot, clocks stepped, readiness checked."""
        progress = make_progress(self.stream)
        try:
            return snapshots.restore(self.config, self.snapshot, progress)
        finally:
            progress.close()

    def verify(self, *extra: Path, only: Sequence[str] | None = None) -> VerifyResult:
        """``lab verify [PATH...]``: the result, failing or not."""
        result: VerifyResult = operate.verify(self.config, junit=None, extra=extra, only=only)
        return result

    # --- commands --------------------------------------------------------------------

    def exec(self, node: str, *argv: str, check: bool = False) -> CommandResult:
        """``lab exec NODE -- ARGV...``: each argument stays one argument."""
        outcome = operate.exec_on(self.config, [node], command_words(argv))[node]
        return _result(f"{node}: {' '.join(argv)}", outcome, check)

    def exec_all(self, *argv: str, check: bool = False) -> dict[str, CommandResult]:
        """``lab exec --all -- ARGV...``: every node's result."""
        outcomes = operate.exec_on(self.config, self.nodes, command_words(argv))
        return {
            name: _result(f"{name}: {' '.join(argv)}", outcome, check)
            for name, outcome in outcomes.items()
        }

    def etcdctl(self, *args: str, check: bool = False) -> CommandResult:
        """``lab etcdctl ARGS``: etcdctl (v3) on a healthy member, against every member."""
        return _result(f"etcdctl {' '.join(args)}", operate.etcdctl(self.config, args), check)

    def fleetctl(self, *args: str | Path, check: bool = False) -> CommandResult:
        """``lab fleetctl ARGS``: unit files named in ARGS uploaded first, fleetctl run in a
        ``lab ssh`` session (agent forwarded), so status/journal reach other nodes."""
        words = [str(Path(a).resolve()) if isinstance(a, Path) else a for a in args]
        argv = operate.fleetctl_argv(self.config, words)
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=FLEETCTL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        result = CommandResult(done.returncode, done.stdout, done.stderr)
        return _result(f"fleetctl {' '.join(words)}", result, check)

    def start_unit(self, *unit_files: Path) -> CommandResult:
        """``lab fleetctl start FILE...``: upload the unit files and start them in fleet."""
        if not unit_files:
            raise LabError("no unit file given", hint="start_unit(Path('app.service'))")
        missing = [str(p) for p in unit_files if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"unit file not found: {', '.join(missing)}")
        return self.fleetctl("start", *(Path(p) for p in unit_files), check=True)

    # --- fault drills and state ------------------------------------------------------

    def kill(self, *nodes: str) -> list[str]:
        """``lab kill``: hard power-off."""
        return lifecycle.kill(self.config, nodes)

    def stop(self, *nodes: str) -> list[str]:
        """``lab stop``: clean shutdown."""
        return lifecycle.stop(self.config, nodes)

    def start(self, *nodes: str) -> list[str]:
        """``lab start``: boot and wait until they answer with their pinned host keys."""
        progress = make_progress(self.stream)
        try:
            return lifecycle.start(self.config, nodes, progress)
        finally:
            progress.close()

    def status(self) -> list[NodeStatus]:
        """``lab status``: every node as libvirt, etcd and fleet see it now."""
        return operate.status(self.config)

    def node_status(self, node: str) -> NodeStatus:
        self.config.node(node)
        return next(s for s in self.status() if s.name == node)

    def collect_logs(self, into: Path | None = None) -> Path:
        """``lab logs [--into DIR]``: every node's journal and console, now."""
        return lifecycle.collect_logs(self.config, into)


def _result(what: str, outcome: CommandResult | Exception, check: bool) -> CommandResult:
    if isinstance(outcome, Exception):
        if isinstance(outcome, LabError):
            raise outcome
        raise LabError(f"{what}: {outcome}") from outcome
    if check and outcome.failed:
        raise CommandError(what, outcome)
    return outcome


__all__ = ["CommandError", "LabLocation", "LabSession", "find_lab"]
