"""The qemu command line of a test guest and the boot configuration it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.accel import AccelChoice
from provisioner.box import image
from tests.qemu_support import GuestSpec, accel_args, qemu_command

pytestmark = pytest.mark.unit


def command(choice: AccelChoice, drive: Path | None) -> list[str]:
    spec = GuestSpec(image=Path("/c/box.img"), workdir=Path("/w"), name="g1", memory_mb=640)
    return qemu_command(
        spec, Path("/w/g1.qcow2"), drive, Path("/w/console.log"), 40022, "uuid-1", choice
    )


def test_network_is_restricted_and_forwards_only_loopback_ssh() -> None:
    cmd = command(AccelChoice("tcg", "test"), Path("/w/cd.iso"))
    netdev = cmd[cmd.index("-netdev") + 1]
    assert netdev == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert cmd[cmd.index("-serial") + 1] == "file:/w/console.log"
    assert cmd[cmd.index("-uuid") + 1] == "uuid-1"
    assert "file=/w/cd.iso,media=cdrom,if=ide,readonly=on" in cmd
    assert "file=/w/g1.qcow2,if=virtio,format=qcow2,cache=unsafe" in cmd
    assert cmd[cmd.index("-m") + 1] == "640"
    assert "virtio-rng-pci" in cmd
    assert "/c/box.img" not in " ".join(cmd)  # only the overlay is attached


def test_accel_arguments() -> None:
    assert accel_args(AccelChoice("tcg", "x")) == ["-accel", "tcg", "-cpu", "qemu64"]
    assert accel_args(AccelChoice("kvm", "x")) == ["-accel", "kvm", "-cpu", "host"]
    assert "media=cdrom" not in " ".join(command(AccelChoice("kvm", "x"), None))


def test_boot_configuration() -> None:
    cfg = image.grub_cfg("1234-abcd", ("console=ttyS0,115200n8", "quiet"))
    assert "set timeout=0" in cfg
    assert "linux /vmlinuz root=UUID=1234-abcd console=ttyS0,115200n8 quiet\n" in cfg
    assert "initrd /initrd.img" in cfg
    assert cfg.rstrip().endswith("boot")
    assert image.fstab("1234-abcd").splitlines()[-1].startswith("UUID=1234-abcd / ext4 ")
    assert image.filesystem_uuid("ab" * 32) == image.filesystem_uuid("ab" * 32)
    assert image.filesystem_uuid("ab" * 32) != image.filesystem_uuid("cd" * 32)
    assert image.disk_signature("00000000ff") == 1
    assert image.disk_signature("deadbeef00") == 0xDEADBEEF
