"""A bootable raw disk without loop devices or mounts.

Layout (MBR, like any BIOS-booting vagrant-libvirt box)::

    sector 0            GRUB's boot.img code + the partition table
    sectors 1..2047     GRUB's core.img (biosdisk, part_msdos, ext2, normal, linux)
    sector 2048..end    partition 1: ext4 root filesystem, made by ``mkfs.ext4 -d``

This is what ``grub-install`` does on an MBR disk ("embedding"): boot.img loads
the first sector of core.img from sector 1 (its ``kernel_sector`` default) and
that sector's block list (start sector 2, length filled in by grub-mkimage)
loads the rest. The pure functions here build the bytes; :func:`write_boot_area`
puts them on a disk file.
"""

from __future__ import annotations

import struct
from pathlib import Path

SECTOR = 512
PART_START = 2048  # 1 MiB, the usual alignment; leaves room for core.img
CORE_MAX = (PART_START - 1) * SECTOR
MBR_CODE_SIZE = 440  # boot code; the disk signature starts here
_KERNEL_SECTOR_OFFSET = 0x5C  # boot.img: where core.img's first sector is (LBA, 8 bytes)
_BLOCKLIST_START_OFFSET = SECTOR - 12  # diskboot.img: first block list entry's start (8 bytes)
_LINUX_PARTITION = 0x83


def chs(lba: int) -> bytes:
    """CHS triple for an MBR entry; disks this size use the 'beyond CHS' marker."""
    heads, sectors = 255, 63
    cylinder, rest = divmod(lba, heads * sectors)
    if cylinder > 1023:
        return bytes((0xFE, 0xFF, 0xFF))
    head, sector = divmod(rest, sectors)
    sector += 1
    return bytes((head, ((cylinder >> 2) & 0xC0) | sector, cylinder & 0xFF))


def partition_table(disk_bytes: int, disk_signature: int) -> bytes:
    """A 512-byte MBR (no boot code) with one bootable Linux partition from 1 MiB to the end."""
    total = disk_bytes // SECTOR
    if disk_bytes % SECTOR or total <= PART_START:
        raise ValueError(f"disk size {disk_bytes} is not a sector multiple above 1 MiB")
    count = total - PART_START
    if count > 0xFFFFFFFF:
        raise ValueError("MBR partitions end at 2 TiB")
    entry = (
        b"\x80"
        + chs(PART_START)
        + bytes((_LINUX_PARTITION,))
        + chs(total - 1)
        + struct.pack("<II", PART_START, count)
    )
    sector = bytearray(SECTOR)
    struct.pack_into("<I", sector, MBR_CODE_SIZE, disk_signature & 0xFFFFFFFF)
    sector[446 : 446 + 16] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def boot_sector(boot_img: bytes, table: bytes) -> bytes:
    """GRUB's boot.img code with the disk signature and partition table of ``table``."""
    if len(boot_img) != SECTOR or len(table) != SECTOR:
        raise ValueError("boot.img and the partition table must be one sector each")
    sector = bytearray(boot_img[:MBR_CODE_SIZE] + table[MBR_CODE_SIZE:])
    struct.pack_into("<Q", sector, _KERNEL_SECTOR_OFFSET, 1)
    return bytes(sector)


def embedded_core(core_img: bytes) -> bytes:
    """core.img with its block list pointing at sector 2 onwards (it sits at sector 1)."""
    if len(core_img) > CORE_MAX:
        raise ValueError(f"core.img is {len(core_img)} bytes; at most {CORE_MAX} fit before 1 MiB")
    if len(core_img) < SECTOR:
        raise ValueError("core.img is shorter than one sector")
    core = bytearray(core_img)
    struct.pack_into("<Q", core, _BLOCKLIST_START_OFFSET, 2)
    (length,) = struct.unpack_from("<H", core, _BLOCKLIST_START_OFFSET + 8)
    needed = -(-len(core_img) // SECTOR) - 1
    if length != needed:
        raise ValueError(f"core.img's block list covers {length} sectors, the image has {needed}")
    return bytes(core)


def write_boot_area(disk: Path, boot_img: bytes, core_img: bytes, disk_signature: int) -> None:
    """Write the MBR and the embedded core.img onto the first MiB of a disk file."""
    size = disk.stat().st_size
    sector0 = boot_sector(boot_img, partition_table(size, disk_signature))
    core = embedded_core(core_img)
    with disk.open("r+b") as handle:
        handle.write(sector0)
        handle.write(core)


def partition_offset() -> int:
    return PART_START * SECTOR
