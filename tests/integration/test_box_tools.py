"""Box building blocks against the real tools: mkfs.ext4, qemu-img, ssh-keygen, subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from provisioner.box import disk, image
from provisioner.box.buildlog import BuildLog
from provisioner.errors import BoxError
from provisioner.progress import ProgressEvent

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the image tree is owned by root")


def fake_bootloader(folder: Path) -> Path:
    """A boot.img/core.img pair with GRUB's layout (the real ones come from the image)."""
    folder.mkdir()
    (folder / "boot.img").write_bytes(b"\xeb\x63\x90" + bytes(509))
    core = bytearray(4 * disk.SECTOR)
    struct.pack_into("<QHH", core, disk.SECTOR - 12, 2, 3, 0x820)
    (folder / "core.img").write_bytes(bytes(core))
    return folder


@needs_root
@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="e2fsprogs missing")
def test_raw_disk_holds_the_tree_at_the_partition_offset_and_compresses(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    log = BuildLog(tmp_path / "build.log", events.append)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("from the box\n")
    (root / "bin").mkdir()
    (root / "bin" / "sh").symlink_to("dash")
    fs_uuid = image.filesystem_uuid("ab" * 32)
    raw = tmp_path / "disk.raw"
    image.make_raw_disk(root, raw, 2, fs_uuid, 0xCAFE, fake_bootloader(tmp_path / "bl"), log)

    assert raw.stat().st_size == 2 * 1024**3
    head = raw.read_bytes()[:1024]
    assert head[510:512] == b"\x55\xaa"
    assert struct.unpack_from("<II", head, 446 + 8) == (2048, 2 * 1024**3 // 512 - 2048)
    probe = subprocess.run(
        ["blkid", "-p", "-O", str(disk.partition_offset()), "-o", "export", str(raw)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert f"UUID={fs_uuid}" in probe
    assert f"LABEL={image.FS_LABEL}" in probe
    assert "TYPE=ext4" in probe

    part = tmp_path / "part.img"
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "--image-opts",
            f"driver=raw,offset={disk.partition_offset()},file.filename={raw}",
            "-O",
            "raw",
            str(part),
        ],
        check=True,
        timeout=300,
    )
    fsck = subprocess.run(
        ["e2fsck", "-fn", str(part)], capture_output=True, text=True, timeout=120, check=False
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    cat = subprocess.run(
        ["debugfs", "-R", "cat /etc/hello", str(part)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert cat.stdout == "from the box\n"
    features = subprocess.run(
        ["dumpe2fs", "-h", str(part)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "metadata_csum_seed" not in features  # GRUB 2.06 cannot read it
    assert "orphan_file" not in features

    qcow = tmp_path / "box.img"
    image.compress(raw, qcow, "zstd", log)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(qcow)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["format-specific"]["data"]["compression-type"] == "zstd"
    assert image.virtual_size(qcow) == 2 * 1024**3
    assert qcow.stat().st_size < 50 * 1024**2
    assert "mkfs.ext4" in (tmp_path / "build.log").read_text()


def test_build_log_names_itself_when_a_command_fails(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    log = BuildLog(tmp_path / "b.log", events.append)
    with log.step("demo", "run things"):
        assert log.run(["sh", "-c", "echo one; echo two >&2"], timeout=30) == "one\ntwo\n"
    with pytest.raises(BoxError) as info:
        log.run(["sh", "-c", "echo broken; exit 3"], timeout=30, what="the demo")
    assert "exit status 3" in str(info.value)
    assert "broken" in str(info.value)
    assert str(tmp_path / "b.log") in (info.value.hint or "")
    with pytest.raises(BoxError, match="did not finish within 1s"):
        log.run(["sleep", "30"], timeout=1)
    log.close()
    text = (tmp_path / "b.log").read_text()
    assert "$ sh -c echo one; echo two >&2" in text
    assert [(e.status, e.phase) for e in events] == [("running", "demo"), ("ok", "demo")]
