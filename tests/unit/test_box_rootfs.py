"""Writing into an image tree: symlinks stay inside it; image hygiene checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.box import rootfs

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(os.geteuid() != 0, reason="image files are chowned to root"),
]


def tree(root: Path) -> Path:
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    (root / "run").mkdir()
    (root / "etc" / "resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    (root / "etc" / "evil").symlink_to("/etc")
    return root


def test_inside_resolves_symlinks_within_the_image(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    assert rootfs.inside(root, "/lib/systemd/system/x.service") == (
        root / "usr/lib/systemd/system/x.service"
    )
    # an absolute link in the image points into the image, never to the host
    assert rootfs.inside(root, "/etc/evil/passwd") == root / "etc/passwd"
    assert rootfs.inside(root, "/../../etc/passwd") == root / "etc/passwd"
    # the last component is not followed
    assert rootfs.inside(root, "/etc/resolv.conf") == root / "etc/resolv.conf"


def test_symlink_loops_are_refused(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(Exception, match="too many symlinks"):
        rootfs.inside(root, "/a/file")


def test_write_file_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    written = rootfs.write_file(root, "/etc/resolv.conf", b"nameserver 10.0.2.3\n", 0o600)
    assert written == root / "etc/resolv.conf"
    assert not written.is_symlink()
    assert written.read_bytes() == b"nameserver 10.0.2.3\n"
    assert written.stat().st_mode & 0o777 == 0o600
    rootfs.write_file(root, "/etc/evil/hostname", b"x\n")
    assert (root / "etc/hostname").read_bytes() == b"x\n"


def test_copy_overlay_keeps_links_and_exec_bits(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    overlay = tmp_path / "overlay"
    (overlay / "usr/lib/systemd/system").mkdir(parents=True)
    (overlay / "usr/lib/systemd/system/etcd2.service").write_text("[Service]\n")
    (overlay / "usr/lib/systemd/system/etcd-member.service").symlink_to("etcd2.service")
    (overlay / "usr/lib/lab").mkdir(parents=True)
    (overlay / "usr/lib/lab/tool").write_text("#!/bin/sh\n")
    (overlay / "usr/lib/lab/tool").chmod(0o700)
    written = rootfs.copy_overlay(overlay, root)
    assert sorted(written) == [
        "/usr/lib/lab/tool",
        "/usr/lib/systemd/system/etcd-member.service",
        "/usr/lib/systemd/system/etcd2.service",
    ]
    assert (root / "usr/lib/systemd/system/etcd-member.service").readlink() == Path("etcd2.service")
    assert (root / "usr/lib/lab/tool").stat().st_mode & 0o777 == 0o755
    assert (root / "usr/lib/systemd/system/etcd2.service").stat().st_mode & 0o777 == 0o644


def dirty_tree(root: Path) -> Path:
    tree(root)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus").mkdir(parents=True)
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/ssh").mkdir()
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/ssh/sshd_config").write_text("# keep\n")
    (root / "var/cache/apt/archives").mkdir(parents=True)
    (root / "var/cache/apt/archives/x.deb").write_bytes(b"deb")
    (root / "var/cache/apt/pkgcache.bin").write_bytes(b"bin")
    (root / "var/lib/apt/lists").mkdir(parents=True)
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_text("Package: x\n")
    (root / "var/log/apt").mkdir(parents=True)
    (root / "var/log/apt/history.log").write_text("log\n")
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/policy-rc.d").write_text("exit 101\n")
    (root / "home/core/.ssh").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "tmp/build-leftover").write_text("x")
    return root


def test_clean_makes_the_tree_pass_the_hygiene_check(tmp_path: Path) -> None:
    root = dirty_tree(tmp_path / "root")
    problems = rootfs.hygiene_problems(root)
    assert len(problems) == 6
    rootfs.clean(root)
    assert rootfs.hygiene_problems(root) == []
    assert (root / "etc/machine-id").read_bytes() == b""
    assert (root / "etc/ssh/sshd_config").exists()
    assert (root / "var/log/apt").is_dir()
    assert not (root / "var/log/apt/history.log").exists()
    assert (root / "var/lib/apt/lists/partial").is_dir()
    assert list((root / "tmp").iterdir()) == []


def test_hygiene_refuses_baked_in_authorized_keys(tmp_path: Path) -> None:
    root = dirty_tree(tmp_path / "root")
    rootfs.clean(root)
    (root / "home/core/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA vagrant\n")
    assert rootfs.hygiene_problems(root) == [
        "core/.ssh/authorized_keys exists (keys come from cloud-config)"
    ]


def test_masked_generators_are_links_to_dev_null(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system-generators").mkdir(parents=True)
    stale = root / "etc" / "systemd" / "system-generators" / "systemd-run-generator"
    stale.write_text("#!/bin/sh\n")
    rootfs.mask_generators(root, ["systemd-sysv-generator", "systemd-run-generator"])
    for name in ("systemd-sysv-generator", "systemd-run-generator"):
        link = root / "etc" / "systemd" / "system-generators" / name
        assert link.is_symlink()
        assert str(link.readlink()) == "/dev/null"
    rootfs.mask_generators(root, [])  # nothing to do
