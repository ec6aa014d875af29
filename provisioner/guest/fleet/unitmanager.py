"""The agent's hands on systemd: a small protocol and its two implementations.

``SystemctlUnitManager`` is the real one: unit files are written (mode 0644) to
``units_directory`` (default ``/run/fleet/units/``), linked into the runtime unit
directory with ``systemctl link --runtime --force`` (or enabled with ``systemctl
enable --runtime --force`` when they have an ``[Install]`` section, as fleet
does), ``systemctl daemon-reload``, ``systemctl start/stop --no-block``; states
come from ``systemctl show``. Every call is an argument list with a timeout.

``FakeUnitManager`` is a *test stand-in* used only by the host integration tests
and benchmarks (``unit_manager=fake``), where no systemd runs as PID 1: it writes
the same unit files and records load/active/sub states in a JSON file next to
them, plus an operation log, so tests can see what the agent did.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provisioner.guest.fleet.errors import UnitManagerError
from provisioner.guest.fleet.model import SystemdState
from provisioner.guest.fleet.unitfile import UnitFile

log = logging.getLogger(__name__)

NOT_FOUND = SystemdState("not-found", "inactive", "dead")
ACTIVE_STATES = frozenset({"active", "activating", "reloading"})


class UnitManager(Protocol):
    """What the agent needs from systemd."""

    def load(self, name: str, unit: UnitFile) -> None: ...

    def unload(self, name: str) -> None: ...

    def reload(self) -> None: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str) -> None: ...

    def loaded_units(self) -> dict[str, str]:
        """Unit files present in the units directory: name -> SHA1 of the file."""
        ...

    def states(self, names: list[str]) -> dict[str, SystemdState]: ...


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[list[str], float], CommandResult]


def run_command(argv: list[str], timeout: float) -> CommandResult:
    """Run ``argv`` (no shell) with a deadline; raises UnitManagerError on timeout."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UnitManagerError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise UnitManagerError(f"cannot run {argv[0]}: {exc.strerror}") from None
    return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr)


def _file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def _write_unit_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)


def _scan_units(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {
        entry.name: _file_hash(entry)
        for entry in sorted(directory.iterdir())
        if entry.is_file() and not entry.name.startswith(".")
    }


def parse_systemctl_show(text: str, names: list[str]) -> dict[str, SystemdState]:
    """Parse ``systemctl show --property=...`` output for several units (blocks in order)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    states: dict[str, SystemdState] = {}
    by_id = {block.get("Id", ""): block for block in blocks}
    for index, name in enumerate(names):
        block = by_id.get(name) or (blocks[index] if index < len(blocks) else {})
        if not block:
            continue
        states[name] = SystemdState(
            block.get("LoadState", ""), block.get("ActiveState", ""), block.get("SubState", "")
        )
    return states


class SystemctlUnitManager:
    """Drives the real systemd with systemctl (system or ``--user`` manager)."""

    def __init__(
        self,
        units_directory: str,
        *,
        user: bool = False,
        runner: Runner = run_command,
        timeout: float = 90.0,
        runtime_directory: str | None = None,
    ) -> None:
        self.units_dir = Path(units_directory)
        self.user = user
        self.runner = runner
        self.timeout = timeout
        if runtime_directory is None:
            if user:
                base = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
                runtime_directory = f"{base}/systemd/user"
            else:
                runtime_directory = "/run/systemd/system"
        self.runtime_dir = Path(runtime_directory)

    def _systemctl(self, *args: str, check: bool = True) -> CommandResult:
        argv = ["systemctl", *(["--user"] if self.user else []), *args]
        result = self.runner(argv, self.timeout)
        if check and result.returncode != 0:
            raise UnitManagerError(
                f"{' '.join(argv)} failed with exit status {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def load(self, name: str, unit: UnitFile) -> None:
        path = self.units_dir / name
        _write_unit_file(path, unit.text)
        verb = "enable" if unit.has_section("Install") else "link"
        self._systemctl(verb, "--runtime", "--force", str(path))

    def unload(self, name: str) -> None:
        # As fleet's removeUnit (systemd/manager.go): disable, reset-failed, remove the
        # file. The stop fleet queued just before (--no-block) may still be running;
        # waiting for it first means a unit whose main process dies of the stop (a
        # `docker run` answering `docker stop` with 137) leaves no failed unit behind.
        self._wait_stopped(name)
        result = self._systemctl("disable", "--runtime", name, check=False)
        if result.returncode != 0:
            log.info("systemctl disable %s: %s", name, result.stderr.strip())
        self._systemctl("reset-failed", name, check=False)
        link = self.runtime_dir / name
        if link.is_symlink() and link.readlink().parent == self.units_dir:
            link.unlink()
        (self.units_dir / name).unlink(missing_ok=True)

    def _wait_stopped(self, name: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                state = self.states([name]).get(name)
            except UnitManagerError as error:
                log.info("cannot tell whether %s has stopped: %s", name, error)
                return
            if state is None or state.active_state not in ("deactivating", "activating"):
                return
            time.sleep(0.5)
        log.info("%s still stopping after %.0f s; unloading it anyway", name, self.timeout)

    def reload(self) -> None:
        self._systemctl("daemon-reload")

    def start(self, name: str) -> None:
        self._systemctl("start", "--no-block", name)

    def stop(self, name: str) -> None:
        self._systemctl("stop", "--no-block", name)

    def loaded_units(self) -> dict[str, str]:
        return _scan_units(self.units_dir)

    def states(self, names: list[str]) -> dict[str, SystemdState]:
        if not names:
            return {}
        result = self._systemctl(
            "show", "--property=Id,LoadState,ActiveState,SubState", "--", *names
        )
        return parse_systemctl_show(result.stdout, names)


class FakeUnitManager:
    """Test stand-in for systemd (``unit_manager=fake``); never used on real machines.

    Unit files land in the units directory exactly as with systemd; "systemd"
    state lives in ``.fake-systemd.json`` there and every operation is appended to
    ``.fake-systemd.log`` (``<epoch> <op> <unit>``). ``start`` makes a unit
    ``active/running`` at once, ``stop`` makes it ``inactive/dead``.
    """

    STATE_FILE = ".fake-systemd.json"
    LOG_FILE = ".fake-systemd.log"

    def __init__(self, units_directory: str) -> None:
        self.units_dir = Path(units_directory)
        self.units_dir.mkdir(parents=True, exist_ok=True)

    @property
    def state_path(self) -> Path:
        return self.units_dir / self.STATE_FILE

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): dict(v) for k, v in data.items()}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        tmp = self.state_path.with_name(self.STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(self.state_path)

    def _record(self, op: str, name: str) -> None:
        with (self.units_dir / self.LOG_FILE).open("a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.3f} {op} {name}\n")

    def _set(self, name: str, active: str, sub: str) -> None:
        data = self._read()
        data[name] = {"load": "loaded", "active": active, "sub": sub}
        self._write(data)

    def load(self, name: str, unit: UnitFile) -> None:
        _write_unit_file(self.units_dir / name, unit.text)
        if name not in self._read():
            self._set(name, "inactive", "dead")
        self._record("load", name)

    def unload(self, name: str) -> None:
        (self.units_dir / name).unlink(missing_ok=True)
        data = self._read()
        data.pop(name, None)
        self._write(data)
        self._record("unload", name)

    def reload(self) -> None:
        self._record("daemon-reload", "-")

    def start(self, name: str) -> None:
        if not (self.units_dir / name).exists():
            raise UnitManagerError(f"Failed to start {name}: Unit {name} not found.")
        self._set(name, "active", "running")
        self._record("start", name)

    def stop(self, name: str) -> None:
        if (self.units_dir / name).exists():
            self._set(name, "inactive", "dead")
        self._record("stop", name)

    def loaded_units(self) -> dict[str, str]:
        return _scan_units(self.units_dir)

    def states(self, names: list[str]) -> dict[str, SystemdState]:
        data = self._read()
        states: dict[str, SystemdState] = {}
        for name in names:
            entry = data.get(name)
            if entry is None or not (self.units_dir / name).exists():
                states[name] = NOT_FOUND
            else:
                states[name] = SystemdState(entry["load"], entry["active"], entry["sub"])
        return states


def make_unit_manager(kind: str, units_directory: str, *, user: bool = False) -> UnitManager:
    if kind == "fake":
        return FakeUnitManager(units_directory)
    return SystemctlUnitManager(units_directory, user=user)
