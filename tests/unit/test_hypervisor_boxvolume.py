"""The name and shape of the box's volume in the pool, as vagrant-libvirt 0.11 expects."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provisioner.hypervisor import boxvolume
from provisioner.hypervisor.boxvolume import BoxVolume

pytestmark = pytest.mark.unit


def test_unversioned_boxes_are_named_by_the_image_mtime() -> None:
    # as vagrant-libvirt named the volume of a box this project built
    assert boxvolume.volume_name("lab/default-211a4431c1f7", "0", 1796153480) == (
        "lab-VAGRANTSLASH-default-211a4431c1f7_vagrant_box_image_0_1796153480_box.img"
    )
    assert (
        boxvolume.volume_name("lab/x", "", 7) == "lab-VAGRANTSLASH-x_vagrant_box_image_0_7_box.img"
    )


def test_versioned_boxes_are_named_by_the_version() -> None:
    assert boxvolume.volume_name("lab/x", "1.2.0", 7) == (
        "lab-VAGRANTSLASH-x_vagrant_box_image_1.2.0_box.img"
    )
    assert boxvolume.volume_name("lab/x", "1.2.0", 7).startswith(boxvolume.volume_prefix("lab/x"))


def test_the_box_is_found_where_vagrant_unpacked_it(tmp_path: Path) -> None:
    home = tmp_path / "vagrant.d"
    directory = home / "boxes" / "lab-VAGRANTSLASH-default-abc" / "0" / "libvirt"
    directory.mkdir(parents=True)
    image = directory / "box.img"
    image.write_bytes(b"q" * 1000)
    os.utime(image, (1700000000, 1700000000))
    found = boxvolume.box_volume("lab/default-abc", 8 << 30, home=home)
    assert found == BoxVolume(
        name="lab-VAGRANTSLASH-default-abc_vagrant_box_image_0_1700000000_box.img",
        source=image,
        capacity=8 << 30,
        size=1000,
    )
    with pytest.raises(FileNotFoundError):
        boxvolume.box_volume("lab/missing", 1, home=home)


def test_the_volume_is_readable_and_not_preallocated() -> None:
    root = ET.fromstring(boxvolume.volume_xml("a_box.img", 123))
    assert root.findtext("name") == "a_box.img"
    assert root.findtext("capacity") == "123"
    assert root.findtext("allocation") == "0"
    target = root.find("target")
    assert target is not None
    fmt = target.find("format")
    assert fmt is not None
    assert fmt.get("type") == "qcow2"
    assert target.findtext("permissions/mode") == "0644"


def test_a_copy_shorter_than_the_image_is_incomplete() -> None:
    volume = BoxVolume("v", Path("/x"), capacity=10, size=100)
    assert boxvolume.is_complete(100, volume)
    assert not boxvolume.is_complete(99, volume)


def test_only_lab_boxes_the_cache_let_go_and_nothing_uses_are_unused() -> None:
    old = boxvolume.volume_name("lab/default-aaaaaaaaaaaa", "0", 1)
    in_use = boxvolume.volume_name("lab/default-bbbbbbbbbbbb", "0", 2)
    kept = boxvolume.volume_name("lab/default-cccccccccccc", "0", 3)
    volumes = {
        old: "/pool/old.img",
        in_use: "/pool/in-use.img",
        kept: "/pool/kept.img",
        "lab-vm-1_core-01.img": "/pool/overlay.img",  # a lab's disk, not a box
        "someone-VAGRANTSLASH-box_vagrant_box_image_0_1_box.img": "/pool/theirs.img",
    }
    unused = boxvolume.unused_box_volumes(
        volumes, ["lab/default-cccccccccccc"], {"/pool/in-use.img", "/pool/overlay.img"}
    )
    assert unused == [old]
