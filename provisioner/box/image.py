"""Stage 2: a bootable, compressed qcow2 from an image tree.

The tree becomes an ext4 filesystem with ``mkfs.ext4 -d`` written straight at
the partition's offset of a sparse raw disk; GRUB's boot sector and core.img
go in front of it (:mod:`provisioner.box.disk`); ``qemu-img convert -c``
turns the raw disk into the box image. No loop device, no mount.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

from provisioner.box import disk
from provisioner.box.buildlog import BuildLog
from provisioner.box.recipe import Compression
from provisioner.box.rootfs import write_file
from provisioner.errors import BoxError, HostError

FS_LABEL = "lab-root"
MKFS_TIMEOUT = 900.0
CONVERT_TIMEOUT = 1800.0

# A fixed mke2fs configuration, so the filesystem does not depend on the host's
# /etc/mke2fs.conf (newer defaults such as metadata_csum_seed are unreadable to
# the GRUB in Debian 12).
MKE2FS_CONF = """\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""


def filesystem_uuid(box_key: str) -> str:
    """A stable filesystem UUID per box (every machine from one box shares it, as clones do)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lab-box:{box_key}"))


def disk_signature(box_key: str) -> int:
    return int(box_key[:8], 16) or 1


def grub_cfg(fs_uuid: str, cmdline: tuple[str, ...]) -> str:
    args = " ".join((f"root=UUID={fs_uuid}", *cmdline))
    return (
        "# Written by lab's box builder. GRUB's core.img sits in the MBR gap and reads\n"
        "# this file from partition 1; there is no menu and no timeout.\n"
        "set timeout=0\n"
        f"linux /vmlinuz {args}\n"
        "initrd /initrd.img\n"
        "boot\n"
    )


def fstab(fs_uuid: str) -> str:
    return (
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={fs_uuid} / ext4 rw,noatime,errors=remount-ro 0 0\n"
    )


def write_boot_config(root: Path, fs_uuid: str, cmdline: tuple[str, ...]) -> None:
    write_file(root, "/boot/grub/grub.cfg", grub_cfg(fs_uuid, cmdline).encode())
    write_file(root, "/etc/fstab", fstab(fs_uuid).encode())


def make_raw_disk(
    root: Path,
    raw: Path,
    size_gib: int,
    fs_uuid: str,
    signature: int,
    bootloader: Path,
    log: BuildLog,
) -> None:
    """A sparse raw disk: MBR + GRUB in the first MiB, ext4 (filled from ``root``) after it."""
    if shutil.which("mkfs.ext4") is None:
        raise HostError("mkfs.ext4 is not installed", hint="apt-get install e2fsprogs")
    total = size_gib * 1024**3
    offset = disk.partition_offset()
    with raw.open("wb") as handle:
        handle.truncate(total)
    conf = raw.with_name("mke2fs.conf")
    conf.write_text(MKE2FS_CONF)
    blocks = (total - offset) // 4096
    log.run(
        [
            "mkfs.ext4",
            "-F",
            "-q",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-L",
            FS_LABEL,
            "-U",
            fs_uuid,
            "-E",
            f"offset={offset},root_owner=0:0",
            "-d",
            str(root),
            str(raw),
            str(blocks),
        ],
        timeout=MKFS_TIMEOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MKE2FS_CONFIG": str(conf)},
        what="mkfs.ext4",
    )
    conf.unlink()
    if raw.stat().st_size != total:
        raise BoxError(f"mkfs.ext4 changed the disk size of {raw}", hint=f"log: {log.path}")
    disk.write_boot_area(
        raw,
        (bootloader / "boot.img").read_bytes(),
        (bootloader / "core.img").read_bytes(),
        signature,
    )


def compress(raw: Path, target: Path, compression: Compression, log: BuildLog) -> None:
    """``qemu-img convert`` to a compressed qcow2 (zstd needs qemu >= 5.1)."""
    if shutil.which("qemu-img") is None:
        raise HostError("qemu-img is not installed", hint="apt-get install qemu-utils")
    log.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-c",
            "-o",
            f"compression_type={compression}",
            "-m",
            "4",
            "-W",
            str(raw),
            str(target),
        ],
        timeout=CONVERT_TIMEOUT,
        what="qemu-img convert",
    )


def virtual_size(image: Path, timeout: float = 60) -> int:
    """The virtual size in bytes of a disk image, from ``qemu-img info``."""
    try:
        result = subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BoxError(f"qemu-img info {image} failed: {exc}") from exc
    if result.returncode != 0:
        raise BoxError(f"qemu-img info {image} failed: {result.stderr.strip()}")
    return int(json.loads(result.stdout)["virtual-size"])
