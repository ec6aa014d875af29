"""Real Vagrant: adding a packed box, and the `url` recipe kind end to end (file:// only)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from provisioner.box import package
from provisioner.box.build import build_box, list_boxes
from provisioner.errors import BoxError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed"),
]


@pytest.fixture
def vagrant_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "vagrant.d"
    monkeypatch.setenv("VAGRANT_HOME", str(home))
    return home


def tiny_box(folder: Path) -> Path:
    """A libvirt .box around a 64 MiB empty qcow2 (enough for Vagrant, never booted)."""
    folder.mkdir(parents=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "box.img"), "64M"],
        check=True,
        timeout=60,
    )
    (folder / "metadata.json").write_text(package.metadata_json(64 * 1024**2))
    (folder / "Vagrantfile").write_text(package.BOX_VAGRANTFILE)
    return package.pack(folder, folder / "tiny.box")


def test_add_and_remove_a_box(tmp_path: Path, vagrant_home: Path) -> None:
    box = tiny_box(tmp_path / "tiny")
    name = "lab/inttest-0123456789ab"
    package.add(name, box, tmp_path / "vagrant.log")
    assert package.is_added(name, home=vagrant_home)
    listed = subprocess.run(
        ["vagrant", "box", "list"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert name in listed
    assert "libvirt" in listed
    assert package.remove(name)
    assert not package.is_added(name, home=vagrant_home)


def write_url_recipe(boxes: Path, url: str, sha: str) -> None:
    folder = boxes / "fetched"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"kind": "url", "url": url, "sha256": sha}))


def test_url_recipe_fetches_checks_caches_and_adds(tmp_path: Path, vagrant_home: Path) -> None:
    box = tiny_box(tmp_path / "tiny")
    sha = hashlib.sha256(box.read_bytes()).hexdigest()
    boxes, cache = tmp_path / "boxes", tmp_path / "cache"

    write_url_recipe(boxes, box.as_uri(), "0" * 64)
    with pytest.raises(BoxError, match="sha256 is"):
        build_box("fetched", cache=cache, boxes_dir=boxes)
    assert list((cache / "boxes").iterdir()) == []
    assert list((cache / "tmp").iterdir()) == []
    assert len(list((cache / "logs").iterdir())) == 1  # the failed build's log stays

    write_url_recipe(boxes, box.as_uri(), sha)
    built = build_box("fetched", cache=cache, boxes_dir=boxes)
    assert not built.cached
    assert built.vagrant_name.startswith("lab/fetched-")
    assert package.is_added(built.vagrant_name, home=vagrant_home)
    assert built.image.read_bytes() == (tmp_path / "tiny" / "box.img").read_bytes()
    assert built.virtual_size == 64 * 1024**2
    assert [b.directory for b in list_boxes(cache)] == [built.directory]

    again = build_box("fetched", cache=cache, boxes_dir=boxes)
    assert again.cached
    assert again.directory == built.directory
    assert package.remove(built.vagrant_name)


def test_url_recipe_refuses_a_box_for_another_provider(tmp_path: Path, vagrant_home: Path) -> None:
    folder = tmp_path / "vbox"
    box = tiny_box(folder)
    (folder / "metadata.json").write_text('{"provider": "virtualbox"}')
    package.pack(folder, box)
    boxes = tmp_path / "boxes"
    write_url_recipe(boxes, box.as_uri(), hashlib.sha256(box.read_bytes()).hexdigest())
    with pytest.raises(BoxError, match="lab needs 'libvirt'"):
        build_box("fetched", cache=tmp_path / "cache", boxes_dir=boxes, add_to_vagrant=False)
    assert not package.is_added("lab/fetched", home=vagrant_home)
