"""Boot a box image with plain qemu, no libvirt or Vagrant: for tests and scripts/bench_box.py.

Each guest gets a qcow2 overlay on the (read-only) box image, a ``config-2``
ISO with its cloud-config, user-mode networking that only forwards a loopback
port to its SSH (``restrict=on``: nothing leaves the host), a virtio RNG, a
fresh SMBIOS UUID (systemd derives the machine id from it, as under libvirt)
and its serial console in a log file. Waits have deadlines and name what they
waited for; the SSH banner is probed as ``lab up`` probes it
(:func:`provisioner.readiness.ssh_banner`). :func:`overlay` also makes the disks
of the benchmark's floor guests (:mod:`benchmarks.floor`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from provisioner.accel import AccelChoice, choose_accel
from provisioner.configdrive import build_config_drive
from provisioner.errors import HostError, NodeError, WaitTimeout
from provisioner.readiness import ssh_banner
from provisioner.remote.hostkeys import parse_host_key_fingerprints
from tests.loopback import free_port

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class GuestSpec:
    image: Path  # the box image (qcow2); never written
    workdir: Path  # overlay, config drive, console log and qemu log go here
    name: str = "guest"
    user_data: str | None = None  # cloud-config for the config drive; None: no drive
    meta_data: str | None = None  # openstack meta_data.json; default names the uuid only
    memory_mb: int = 768
    cpus: int = 1
    ssh_port: int | None = None  # None: a free loopback port


def accel_args(choice: AccelChoice) -> list[str]:
    if choice.accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "qemu64"]


def qemu_command(
    spec: GuestSpec,
    overlay: Path,
    config_drive: Path | None,
    console_log: Path,
    ssh_port: int,
    machine_uuid: str,
    choice: AccelChoice,
) -> list[str]:
    """The qemu command line for one guest (pure; see the module doc)."""
    command = [
        QEMU,
        "-name",
        spec.name,
        "-machine",
        "pc",
        *accel_args(choice),
        "-m",
        str(spec.memory_mb),
        "-smp",
        str(spec.cpus),
        "-uuid",
        machine_uuid,
        "-nodefaults",
        "-display",
        "none",
        "-no-user-config",
        "-drive",
        f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
        "-netdev",
        f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{console_log}",
    ]
    if config_drive is not None:
        command += ["-drive", f"file={config_drive},media=cdrom,if=ide,readonly=on"]
    return command


def overlay(base: Path, target: Path) -> None:
    """A qcow2 overlay at ``target`` backed by ``base`` (which is never written)."""
    result = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise HostError(f"qemu-img create {target} failed: {result.stderr.strip()}")


class QemuGuest:
    """One running guest. Use as a context manager so it is always stopped."""

    def __init__(self, spec: GuestSpec) -> None:
        self.spec = spec
        self.uuid = str(uuid.uuid4())
        self.ssh_port = spec.ssh_port or free_port()
        self.overlay = spec.workdir / f"{spec.name}.qcow2"
        self.console_log = spec.workdir / f"{spec.name}-console.log"
        self.qemu_log = spec.workdir / f"{spec.name}-qemu.log"
        self.config_drive = spec.workdir / f"{spec.name}-config-2.iso"
        self.started_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> QemuGuest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if shutil.which(QEMU) is None:
            raise HostError(f"{QEMU} is not installed", hint="apt-get install qemu-system-x86")
        self.spec.workdir.mkdir(parents=True, exist_ok=True)
        overlay(self.spec.image.resolve(), self.overlay)
        drive = None
        if self.spec.user_data is not None:
            meta = self.spec.meta_data or json.dumps({"uuid": self.uuid}) + "\n"
            drive = build_config_drive(self.spec.user_data, meta, self.config_drive)
        self.console_log.write_bytes(b"")
        command = qemu_command(
            self.spec,
            self.overlay,
            drive,
            self.console_log,
            self.ssh_port,
            self.uuid,
            choose_accel(),
        )
        with self.qemu_log.open("wb") as log:
            log.write((" ".join(command) + "\n").encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def _check_alive(self, waiting_for: str) -> None:
        if self._process is not None and self._process.poll() is not None:
            tail = self.qemu_log.read_text(errors="replace")[-2000:]
            raise NodeError(
                self.spec.name,
                f"qemu exited (status {self._process.returncode}) while waiting for {waiting_for}:"
                f"\n{tail}",
                hint=f"console log: {self.console_log}",
            )

    def wait_for_ssh_banner(self, timeout: float) -> float:
        """Wait until the guest's sshd sends its banner; returns seconds since qemu started."""
        deadline = time.monotonic() + timeout
        waiting_for = f"the SSH banner on 127.0.0.1:{self.ssh_port}"
        while time.monotonic() < deadline:
            self._check_alive(waiting_for)
            read_timeout = max(0.5, min(5.0, deadline - time.monotonic()))
            if ssh_banner("127.0.0.1", self.ssh_port, timeout=2, read_timeout=read_timeout):
                return time.monotonic() - self.started_at
            time.sleep(0.5)
        raise WaitTimeout(
            self.spec.name,
            f"no {waiting_for} within {timeout:.0f}s",
            hint=f"console log: {self.console_log}",
        )

    def wait_for_host_keys(self, timeout: float) -> dict[str, str]:
        """Wait for the host key fingerprints on the console (``{"ED25519": "SHA256:.."}``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pins = parse_host_key_fingerprints(self.console_text())
            if pins:
                return pins
            self._check_alive("the SSH host keys on the console")
            time.sleep(0.5)
        raise WaitTimeout(
            self.spec.name,
            f"no SSH host key block on the serial console within {timeout:.0f}s",
            hint=f"console log: {self.console_log}",
        )

    def stop(self, timeout: float = 20) -> None:
        """Stop qemu (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
