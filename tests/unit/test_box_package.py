"""Vagrant packaging: metadata.json, box names, the .box tarball, Vagrant's box folder."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from provisioner.box import package
from provisioner.errors import BoxError

pytestmark = pytest.mark.unit


def test_metadata_json_is_vagrant_libvirts_format() -> None:
    assert json.loads(package.metadata_json(8 * 1024**3)) == {
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": 8,
    }
    assert package.metadata(8 * 1024**3 + 1)["virtual_size"] == 9  # rounded up


def test_box_names_carry_the_key() -> None:
    assert package.vagrant_box_name("default", "0123456789abcdef") == "lab/default-0123456789ab"


def test_vagrant_box_dir(tmp_path: Path) -> None:
    assert package.vagrant_home({"VAGRANT_HOME": str(tmp_path)}) == tmp_path
    assert package.vagrant_home({"HOME": "/home/u"}) == Path("/home/u/.vagrant.d")
    folder = package.vagrant_box_dir("lab/default-abc", home=tmp_path)
    assert folder == tmp_path / "boxes/lab-VAGRANTSLASH-default-abc/0/libvirt"
    assert not package.is_added("lab/default-abc", home=tmp_path)
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text("{}")
    (folder / "box.img").write_bytes(b"")
    assert package.is_added("lab/default-abc", home=tmp_path)


def test_pack_writes_an_uncompressed_tar_with_the_three_files(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text(package.metadata_json(2 * 1024**3))
    (tmp_path / "Vagrantfile").write_text(package.BOX_VAGRANTFILE)
    (tmp_path / "box.img").write_bytes(b"QFI\xfb" + bytes(1000))
    target = package.pack(tmp_path, tmp_path / "x.box")
    with tarfile.open(target, "r:") as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        image = tar.extractfile("box.img")
        assert image is not None
        assert image.read(4) == b"QFI\xfb"
    (tmp_path / "box.img").unlink()
    with pytest.raises(BoxError, match="missing"):
        package.pack(tmp_path, tmp_path / "y.box")
    assert not (tmp_path / "y.box").exists()


def test_box_vagrantfile_has_no_insecure_key_and_uses_core() -> None:
    text = package.BOX_VAGRANTFILE
    assert 'config.ssh.username = "core"' in text
    assert "config.ssh.insert_key = false" in text
    assert "insecure" not in text.replace("no Vagrant insecure key", "")
