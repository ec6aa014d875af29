"""The offline busybox image: `docker save` tarball layout and docker's overlay2 store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from provisioner.box import dockerimage, dockerstore

pytestmark = pytest.mark.unit

BUSYBOX = b"\x7fELF fake busybox for layout tests"
LISTING = "/bin/sh\n/bin/echo\n/usr/bin/[\n/usr/bin/[[\nlinuxrc\n/sbin/ifconfig\n/bin/busybox\n"


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def test_parse_applets() -> None:
    applets = dockerimage.parse_applets(LISTING)
    assert applets == (
        "bin/busybox",
        "bin/echo",
        "bin/sh",
        "linuxrc",
        "sbin/ifconfig",
        "usr/bin/[",
        "usr/bin/[[",
    )
    with pytest.raises(ValueError, match="unexpected applet"):
        dockerimage.parse_applets("/bin/../etc/passwd\n")
    with pytest.raises(ValueError, match="unexpected applet"):
        dockerimage.parse_applets("W: some warning\n")


def test_save_tarball_layout_is_what_docker_load_reads() -> None:
    image = dockerimage.busybox_image(BUSYBOX, dockerimage.parse_applets(LISTING))
    files = members(image.data)
    manifest = json.loads(read(image.data, "manifest.json"))
    assert len(manifest) == 1
    entry = manifest[0]
    assert entry["RepoTags"] == ["busybox:latest"]
    config_name = entry["Config"]
    config_bytes = read(image.data, config_name)
    assert config_name == hashlib.sha256(config_bytes).hexdigest() + ".json"
    assert image.image_id == "sha256:" + config_name.removesuffix(".json")
    (layer_name,) = entry["Layers"]
    layer = read(image.data, layer_name)
    assert image.layer_diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.loads(config_bytes)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [image.layer_diff_id]}
    assert config["os"] == "linux"
    assert config["architecture"] == "amd64"
    assert config["config"]["Cmd"] == ["sh"]
    layer_id = layer_name.split("/")[0]
    assert json.loads(read(image.data, "repositories")) == {"busybox": {"latest": layer_id}}
    assert read(image.data, f"{layer_id}/VERSION") == b"1.0"
    assert files[layer_id].isdir()


def test_layer_holds_busybox_and_applet_links() -> None:
    layer = dockerimage.layer_tar(BUSYBOX, dockerimage.parse_applets(LISTING))
    files = members(layer)
    assert read(layer, "bin/busybox") == BUSYBOX
    assert files["bin/busybox"].mode == 0o755
    for applet in ("bin/sh", "bin/echo", "usr/bin/[", "sbin/ifconfig", "linuxrc"):
        assert files[applet].issym()
        assert files[applet].linkname == "/bin/busybox"
    assert files["tmp"].mode == 0o1777
    assert b"root:x:0:0" in read(layer, "etc/passwd")
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in files.values())


def test_image_is_deterministic_and_follows_the_binary() -> None:
    applets = dockerimage.parse_applets(LISTING)
    one = dockerimage.busybox_image(BUSYBOX, applets)
    assert dockerimage.busybox_image(BUSYBOX, applets) == one
    other = dockerimage.busybox_image(BUSYBOX + b"!", applets)
    assert other.image_id != one.image_id
    tagged = dockerimage.busybox_image(BUSYBOX, applets, name="lab/busybox", tag="1")
    assert tagged.reference == "lab/busybox:1"
    assert dockerimage.tar_file_name("lab/busybox", "1") == "lab_busybox_1"


def test_repositories_json_merges() -> None:
    first = dockerstore.repositories_json(None, "busybox:latest", "sha256:aa")
    both = dockerstore.repositories_json(first, "alpine:3", "sha256:bb")
    assert json.loads(both) == {
        "Repositories": {
            "busybox": {"busybox:latest": "sha256:aa"},
            "alpine": {"alpine:3": "sha256:bb"},
        }
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="seeding sets root ownership")
def test_seed_writes_dockers_overlay2_layout(tmp_path: Path) -> None:
    image = dockerimage.busybox_image(BUSYBOX, dockerimage.parse_applets(LISTING))
    seeded = dockerstore.seed(tmp_path, image)
    docker = tmp_path / "var/lib/docker"
    meta = docker / "image/overlay2"
    image_hex = image.image_id.removeprefix("sha256:")
    diff_hex = image.layer_diff_id.removeprefix("sha256:")
    config = (meta / "imagedb/content/sha256" / image_hex).read_bytes()
    assert hashlib.sha256(config).hexdigest() == image_hex
    layerdb = meta / "layerdb/sha256" / diff_hex
    assert (layerdb / "diff").read_text() == image.layer_diff_id
    assert (layerdb / "cache-id").read_text() == seeded.cache_id
    assert int((layerdb / "size").read_text()) >= len(BUSYBOX)
    layer_dir = docker / "overlay2" / seeded.cache_id
    assert (layer_dir / "diff/bin/busybox").read_bytes() == BUSYBOX
    assert (layer_dir / "diff/bin/sh").readlink() == Path("/bin/busybox")
    assert (layer_dir / "link").read_text() == seeded.short_id
    assert len(seeded.short_id) == 26
    assert (docker / "overlay2/l" / seeded.short_id).readlink() == Path(
        f"../{seeded.cache_id}/diff"
    )
    repos = json.loads((meta / "repositories.json").read_text())
    assert repos["Repositories"]["busybox"]["busybox:latest"] == image.image_id
    assert (docker.stat().st_mode & 0o777) == 0o710
    with pytest.raises(ValueError, match="already"):
        dockerstore.seed(tmp_path, image)
