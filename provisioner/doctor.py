"""``lab doctor``: can this host run a lab? Each check says how to fix what fails."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioner.accel import choose_accel
from provisioner.errors import LabError

MIN_FREE_GB = 4.0
APT = "apt-get install -y"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def check_command(name: str, command: str, package: str) -> CheckResult:
    path = shutil.which(command)
    if path:
        return CheckResult(name, True, path)
    return CheckResult(name, False, f"{command} not found", f"{APT} {package}")


def check_vagrant_libvirt() -> CheckResult:
    name = "vagrant-libvirt plugin"
    if not shutil.which("vagrant"):
        return CheckResult(name, False, "vagrant not found", f"{APT} vagrant vagrant-libvirt")
    try:
        out = subprocess.run(
            ["vagrant", "plugin", "list"], capture_output=True, text=True, timeout=120, check=False
        ).stdout
    except subprocess.TimeoutExpired:
        return CheckResult(name, False, "`vagrant plugin list` did not answer in 120 s")
    for line in out.splitlines():
        if line.startswith("vagrant-libvirt"):
            return CheckResult(name, True, line.strip())
    return CheckResult(name, False, "plugin not installed", f"{APT} vagrant-libvirt")


def check_disk(directory: Path) -> CheckResult:
    target = directory if directory.exists() else Path.cwd()
    free_gb = shutil.disk_usage(target).free / 2**30
    images = Path("/var/lib/libvirt/images")
    if images.exists():
        free_gb = min(free_gb, shutil.disk_usage(images).free / 2**30)
    ok = free_gb >= MIN_FREE_GB
    return CheckResult(
        "disk space",
        ok,
        f"{free_gb:.1f} GiB free (need {MIN_FREE_GB:.0f} GiB for the box and guest disks)",
        None if ok else "free space in the lab directory and /var/lib/libvirt/images",
    )


def check_accel() -> CheckResult:
    choice = choose_accel()
    detail = f"guests will use {choice.accel.upper()}: {choice.reason}"
    return CheckResult("acceleration", True, detail)


def check_libvirt(fix: bool) -> CheckResult:
    from provisioner.hypervisor.daemons import ensure_daemons

    try:
        detail = ensure_daemons(start=fix).summary
    except LabError as exc:
        return CheckResult("libvirt", False, exc.message, exc.hint)
    return CheckResult("libvirt", True, detail)


def check_pool(fix: bool) -> CheckResult:
    from provisioner.hypervisor.daemons import ensure_default_pool

    try:
        detail = ensure_default_pool(create=fix).summary
    except LabError as exc:
        return CheckResult("storage pool", False, exc.message, exc.hint)
    return CheckResult("storage pool", True, detail)


def check_registry(directory: Path) -> CheckResult:
    """The host's image registry: its tools, and running or free to start on its port."""
    from provisioner import background
    from provisioner.config import load_config
    from provisioner.registry.host import missing_tools, status
    from provisioner.registry.service import PORT_HINT

    name = "image registry"
    missing = missing_tools()
    if missing:
        return CheckResult(
            name, False, f"{', '.join(missing)} not found", f"{APT} docker-registry skopeo socat"
        )
    try:
        settings = load_config(directory).registry
    except LabError as exc:
        return CheckResult(name, False, exc.message, exc.hint)
    if not settings.enabled:
        return CheckResult(name, True, "off in lab.yaml (registry.enabled: false)")
    found = status()
    images = f"{found.disk_bytes / 1e6:.0f} MB of images in {found.root / 'local' / 'data'}"
    if found.local is not None:
        return CheckResult(name, True, f"running at {found.local.url}; {images}")
    problem = background.bind_error("127.0.0.1", settings.port)
    if problem is not None:
        return CheckResult(
            name,
            False,
            f"not running, and 127.0.0.1:{settings.port} is taken: {problem.strerror}",
            PORT_HINT,
        )
    return CheckResult(
        name, True, f"not running; `lab up` starts it on 127.0.0.1:{settings.port}; {images}"
    )


def run_checks(directory: Path, *, fix: bool) -> list[CheckResult]:
    checks: list[Callable[[], CheckResult]] = [
        lambda: check_command("qemu", "qemu-system-x86_64", "qemu-system-x86"),
        lambda: check_command("qemu-img", "qemu-img", "qemu-utils"),
        lambda: check_command("config drives", "genisoimage", "genisoimage"),
        lambda: check_command("box builder", "debootstrap", "debootstrap"),
        lambda: check_command("discovery service", "etcd", "etcd-server"),
        lambda: check_libvirt(fix),
        lambda: check_pool(fix),
        lambda: check_command("vagrant", "vagrant", "vagrant"),
        check_vagrant_libvirt,
        lambda: check_disk(directory),
        lambda: check_registry(directory),
        check_accel,
    ]
    return [check() for check in checks]
