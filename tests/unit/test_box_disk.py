"""The boot area of the raw disk: MBR partition table, GRUB boot sector, embedded core.img."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from provisioner.box import disk

pytestmark = pytest.mark.unit

GIB = 1024**3


def fake_core(sectors: int) -> bytes:
    core = bytearray(sectors * disk.SECTOR)
    struct.pack_into("<QHH", core, disk.SECTOR - 12, 2, sectors - 1, 0x820)
    return bytes(core)


def test_partition_table_has_one_bootable_linux_partition_from_1mib() -> None:
    table = disk.partition_table(8 * GIB, 0xDEADBEEF)
    assert len(table) == 512
    assert table[510:] == b"\x55\xaa"
    assert struct.unpack_from("<I", table, 440) == (0xDEADBEEF,)
    entry = table[446:462]
    assert entry[0] == 0x80
    assert entry[4] == 0x83
    start, count = struct.unpack_from("<II", entry, 8)
    assert start == 2048
    assert count == 8 * GIB // 512 - 2048
    assert table[462:510] == bytes(48)  # no other partitions
    assert table[:440] == bytes(440)


def test_chs() -> None:
    assert disk.chs(2048) == bytes((32, 33, 0))
    assert disk.chs(10**9) == b"\xfe\xff\xff"


@pytest.mark.parametrize("size", [1024 * 1024, 8 * GIB + 1, 3 * 1024**4])
def test_partition_table_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        disk.partition_table(size, 1)


def test_boot_sector_keeps_grub_code_and_the_table() -> None:
    boot_img = bytes(range(256)) * 2
    table = disk.partition_table(2 * GIB, 7)
    sector = disk.boot_sector(boot_img, table)
    assert sector[:0x5C] == boot_img[:0x5C]
    assert struct.unpack_from("<Q", sector, 0x5C) == (1,)  # core.img at sector 1
    assert sector[0x64:440] == boot_img[0x64:440]
    assert sector[440:] == table[440:]
    with pytest.raises(ValueError):
        disk.boot_sector(boot_img[:100], table)


def test_embedded_core_checks_its_block_list() -> None:
    core = fake_core(10)
    assert disk.embedded_core(core)[disk.SECTOR - 12 : disk.SECTOR - 4] == struct.pack("<Q", 2)
    with pytest.raises(ValueError, match="block list"):
        disk.embedded_core(core + bytes(disk.SECTOR))
    with pytest.raises(ValueError, match="before 1 MiB"):
        disk.embedded_core(fake_core(2048))


def test_write_boot_area_touches_only_the_first_mib(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as handle:
        handle.truncate(2 * GIB)
        handle.seek(disk.partition_offset())
        handle.write(b"FILESYSTEM")
    boot_img = b"\xeb\x63" + bytes(510)
    disk.write_boot_area(raw, boot_img, fake_core(4), 0x1234)
    with raw.open("rb") as handle:
        head = handle.read(5 * disk.SECTOR)
        handle.seek(disk.partition_offset())
        assert handle.read(10) == b"FILESYSTEM"
    assert head[:2] == b"\xeb\x63"
    assert head[510:512] == b"\x55\xaa"
    assert struct.unpack_from("<I", head, 440) == (0x1234,)
    assert raw.stat().st_size == 2 * GIB
