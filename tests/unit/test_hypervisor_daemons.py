"""Deciding which libvirt daemons to start, and how."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.hypervisor.daemons import (
    DaemonStatus,
    PoolStatus,
    is_systemd_booted,
    kvm_device_needs_access,
    render_dir_pool_xml,
    running_programs,
    start_commands,
)

pytestmark = pytest.mark.unit


def test_start_commands_without_systemd() -> None:
    assert start_commands(("virtlogd", "libvirtd"), systemd=False) == [
        ["virtlogd", "-d"],
        ["libvirtd", "-d"],
    ]


def test_start_commands_with_systemd() -> None:
    assert start_commands(("libvirtd",), systemd=True) == [
        ["systemctl", "start", "libvirtd.service"]
    ]


def test_nothing_to_start() -> None:
    assert start_commands((), systemd=False) == []


def test_systemd_detection(tmp_path: Path) -> None:
    assert not is_systemd_booted(tmp_path / "missing")
    (tmp_path / "system").mkdir()
    assert is_systemd_booted(tmp_path / "system")


def test_running_programs_reads_comm(tmp_path: Path) -> None:
    for pid, comm in ((1, "init"), (42, "libvirtd"), (43, "virtlogd")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    (tmp_path / "self").mkdir()
    assert running_programs(tmp_path) == {"init", "libvirtd", "virtlogd"}


def test_dir_pool_xml_escapes() -> None:
    xml = render_dir_pool_xml("p&q", Path("/var/lib/x<y"))
    assert "<name>p&amp;q</name>" in xml
    assert "<path>/var/lib/x&lt;y</path>" in xml
    assert xml.startswith("<pool type='dir'>")


def test_summaries() -> None:
    assert DaemonStatus((), ("virtlogd",), "qemu:///system").summary == (
        "qemu:///system answers; started virtlogd"
    )
    assert DaemonStatus(("libvirtd",), (), "qemu:///system").summary == "qemu:///system answers"
    pool = PoolStatus("default", Path("/var/lib/libvirt/images"), created=False, started=True)
    assert pool.changed
    assert pool.summary == "pool 'default' at /var/lib/libvirt/images: started"
    assert not PoolStatus("p", Path("/x"), created=False, started=False).changed


@pytest.mark.parametrize(
    ("mode", "gid", "needs"),
    [
        (0o600, 0, True),
        (0o600, 108, True),
        (0o640, 108, True),
        (0o660, 0, True),
        (0o660, 108, False),
        (0o666, 108, False),
    ],
)
def test_kvm_device_access_decision(mode: int, gid: int, needs: bool) -> None:
    assert kvm_device_needs_access(0o20000 | mode, gid, kvm_gid=108) is needs


def test_summary_mentions_the_kvm_fix() -> None:
    status = DaemonStatus(("virtlogd", "libvirtd"), (), "qemu:///system", kvm_device_fixed=True)
    assert status.summary == "qemu:///system answers; gave group kvm access to /dev/kvm"
