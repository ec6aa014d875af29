"""Real fleetd processes on loopback, for fleet's tests and benchmark.

Each fleetd is a separate ``/usr/bin/python3`` process (the interpreter the
guests have) with its own machine-id file, metadata, units directory and the
test stand-in unit manager (``FLEET_UNIT_MANAGER=fake``), since no systemd runs
as PID 1 here. ``fleetctl`` is the real command, run the same way. Everything
started is stopped by ``close()``; every wait has a deadline and says what it
waited for, with the fleetd logs, when it gives up.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from provisioner.guest.fleet.etcd import EtcdClient
from provisioner.guest.fleet.registry import Registry, Snapshot
from tests.loopback import wait_for

ROOT = Path(__file__).resolve().parent.parent
GUEST_PYTHON = Path("/usr/bin/python3")
ACTIVATE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_FDS'] = '1'\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

T = TypeVar("T")


def guest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for guest-side processes run from the checkout."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def machine_id_for(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


@dataclass
class Machine:
    """One fleetd process standing for one machine."""

    name: str
    machine_id: str
    public_ip: str
    directory: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    socket_path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def units_dir(self) -> Path:
        return self.directory / "units"

    @property
    def legend(self) -> str:
        return f"{self.machine_id[:8]}.../{self.public_ip}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def fake_systemd(self) -> dict[str, dict[str, str]]:
        """The stand-in unit manager's recorded states (name -> load/active/sub)."""
        try:
            data = json.loads((self.units_dir / ".fake-systemd.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): dict(v) for k, v in data.items()}

    def running(self) -> set[str]:
        return {n for n, s in self.fake_systemd().items() if s.get("active") == "active"}

    def operations(self) -> list[tuple[float, str, str]]:
        """(time, op, unit) recorded by the stand-in unit manager."""
        try:
            text = (self.units_dir / ".fake-systemd.log").read_text()
        except OSError:
            return []
        ops: list[tuple[float, str, str]] = []
        for line in text.splitlines():
            stamp, op, unit = line.split(" ", 2)
            ops.append((float(stamp), op, unit))
        return ops


class FleetCluster:
    """Starts fleetd machines against one etcd and runs the real fleetctl."""

    def __init__(
        self,
        root: Path,
        etcd_endpoint: str,
        *,
        agent_ttl: str = "3s",
        reconcile_interval: float = 0.5,
    ) -> None:
        self.root = root
        self.endpoint = etcd_endpoint
        self.agent_ttl = agent_ttl
        self.reconcile_interval = reconcile_interval
        self.machines: dict[str, Machine] = {}
        self.registry = Registry(EtcdClient([etcd_endpoint], timeout=5.0))
        self._next_ip = 1

    def start_machine(
        self,
        name: str,
        *,
        metadata: Mapping[str, str] | None = None,
        machine_id: str | None = None,
        api_socket: bool = False,
        wait: bool = True,
        agent_ttl: str | None = None,
    ) -> Machine:
        """Start one fleetd; with ``wait`` return once it is registered."""
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        machine_id = machine_id or machine_id_for(name)
        (directory / "machine-id").write_text(machine_id + "\n")
        (directory / "fleet.conf").write_text("# settings come from FLEET_* variables\n")
        public_ip = f"10.10.0.{self._next_ip}"
        self._next_ip += 1
        meta = dict(metadata or {})
        env = guest_env(
            {
                "FLEET_ETCD_SERVERS": self.endpoint,
                "FLEET_MACHINE_ID_FILE": str(directory / "machine-id"),
                "FLEET_UNIT_MANAGER": "fake",
                "FLEET_UNITS_DIRECTORY": str(directory / "units"),
                "FLEET_AGENT_TTL": agent_ttl or self.agent_ttl,
                "FLEET_ENGINE_RECONCILE_INTERVAL": str(self.reconcile_interval),
                "FLEET_PUBLIC_IP": public_ip,
            }
        )
        if metadata is not None:
            env["FLEET_METADATA"] = ",".join(f"{k}={v}" for k, v in meta.items())
        argv = [
            str(GUEST_PYTHON),
            "-m",
            "provisioner.guest.fleet.fleetd",
            "--config",
            str(directory / "fleet.conf"),
        ]
        socket_path: Path | None = None
        pass_fds: tuple[int, ...] = ()
        listener: socket.socket | None = None
        if api_socket:
            socket_path = directory / "fleet.sock"
            socket_path.unlink(missing_ok=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(socket_path))
            listener.listen(64)
            pass_fds = (listener.fileno(),)
            argv = [str(GUEST_PYTHON), "-c", ACTIVATE, str(listener.fileno()), *argv]
        log_path = directory / "fleetd.log"
        runs = 1
        while log_path.exists():
            runs += 1
            log_path = directory / f"fleetd.{runs}.log"
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    argv, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=pass_fds
                )
        finally:
            if listener is not None:
                listener.close()
        machine = Machine(
            name, machine_id, public_ip, directory, process, log_path, socket_path, meta
        )
        self.machines[name] = machine
        if wait:
            self.wait_registered(machine)
        return machine

    def wait_registered(self, machine: Machine, timeout: float = 20.0) -> None:
        def registered() -> bool:
            if not machine.alive():
                raise RuntimeError(f"fleetd {machine.name} exited:\n{machine.log()}")
            log = machine.log()
            registered = "Registered machine" in log
            serving = machine.socket_path is None or "The fleet API is available" in log
            return registered and serving and machine.machine_id in self.snapshot().machines

        wait_for(registered, timeout, f"fleetd {machine.name} to register")

    def kill(self, machine: Machine) -> None:
        """Hard death: SIGKILL, no clean-up."""
        machine.process.kill()
        machine.process.wait(timeout=10)

    def terminate(self, machine: Machine, timeout: float = 30.0) -> int:
        """Clean stop: SIGTERM and wait for the exit status."""
        machine.process.terminate()
        return machine.process.wait(timeout=timeout)

    def fleetctl(
        self, *args: str, timeout: float = 60.0, driver_args: tuple[str, ...] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real fleetctl (etcd driver against this cluster's etcd by default)."""
        prefix = driver_args if driver_args is not None else ("--driver=etcd",)
        endpoint = () if driver_args is not None else (f"--endpoint={self.endpoint}",)
        argv = [
            str(GUEST_PYTHON),
            "-m",
            "provisioner.guest.fleet.fleetctl",
            *prefix,
            *endpoint,
            *args,
        ]
        return subprocess.run(
            argv,
            env=guest_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )

    def snapshot(self) -> Snapshot:
        return self.registry.snapshot()

    def active_on(self, unit: str) -> list[str]:
        """Machine IDs whose published state says ``unit`` is active."""
        return sorted(
            state.machine_id
            for (name, _), state in self.snapshot().unit_states.items()
            if name == unit and state.active_state == "active"
        )

    def target_of(self, unit: str) -> str | None:
        record = self.snapshot().jobs.get(unit)
        return record.target if record is not None else None

    def logs(self) -> str:
        return "\n".join(f"--- {m.name} ---\n{m.log()[-3000:]}" for m in self.machines.values())

    def wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        try:
            return wait_for(check, timeout, what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.logs()}") from None

    def close(self) -> None:
        for machine in self.machines.values():
            if machine.alive():
                machine.process.terminate()
        for machine in self.machines.values():
            try:
                machine.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                machine.process.kill()
                machine.process.wait(timeout=10)


def write_unit(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path
