"""KVM where the host has hardware virtualisation, TCG (software emulation) otherwise.

``/dev/kvm`` existing is not enough: some hosts expose a KVM device whose
hypervisor cannot run ordinary guest kernels (e.g. a nested "PVM" module), so
hardware virtualisation means "``/dev/kvm`` usable AND ``vmx``/``svm`` in the CPU
flags". The decision is made here once; everything else asks this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from provisioner.errors import HostError

Accel = Literal["kvm", "tcg"]


@dataclass(frozen=True)
class AccelChoice:
    accel: Accel
    reason: str

    @property
    def driver(self) -> str:
        """vagrant-libvirt's ``driver`` and libvirt's ``<domain type=...>``."""
        return "kvm" if self.accel == "kvm" else "qemu"

    @property
    def cpu_model(self) -> str:
        return "host-passthrough" if self.accel == "kvm" else "qemu64"


def decide_accel(cpuinfo: str, kvm_usable: bool, requested: str = "auto") -> AccelChoice:
    """Pure decision from the CPU flags and whether /dev/kvm opens read-write."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    hardware = "vmx" in flags or "svm" in flags
    if requested == "tcg":
        return AccelChoice("tcg", "software emulation requested (--accel tcg)")
    if hardware and kvm_usable:
        return AccelChoice("kvm", "/dev/kvm is usable and the CPU has vmx/svm")
    if requested == "kvm":
        missing = "the CPU has no vmx/svm flag" if not hardware else "/dev/kvm is not usable"
        raise HostError(
            f"--accel kvm was asked for but {missing}",
            hint="use --accel auto (the default) to fall back to software emulation",
        )
    if not kvm_usable:
        return AccelChoice("tcg", "/dev/kvm is missing or not accessible; using software emulation")
    return AccelChoice(
        "tcg",
        "/dev/kvm exists but the CPU shows no vmx/svm flag (nested or paravirtual KVM "
        "cannot run ordinary guests); using software emulation",
    )


def kvm_usable(device: Path = Path("/dev/kvm")) -> bool:
    return device.exists() and os.access(device, os.R_OK | os.W_OK)


def choose_accel(requested: str = "auto") -> AccelChoice:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return decide_accel(cpuinfo, kvm_usable(), requested)
