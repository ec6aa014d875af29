"""What an archive holds and under which names it goes in; the disk check; the registry's
configuration. No processes: the copies themselves are in tests/integration/test_registry.py."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from provisioner.box import dockerimage
from provisioner.errors import RegistryError
from provisioner.registry.images import check_space, import_plan, inspect_archive
from provisioner.registry.reference import ImageName
from provisioner.registry.service import registry_config


def tar_of(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def docker_archive(tmp_path: Path, *references: str) -> Path:
    data = dockerimage.image_archive(
        [dockerimage.files_layer({"etc/x": b"x"})], references[0], "test"
    )
    path = tmp_path / "image.tar"
    path.write_bytes(data)
    if len(references) > 1:  # more tags of the same image
        with tarfile.open(path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        manifest = json.loads(files["manifest.json"])
        manifest[0]["RepoTags"] = list(references)
        files["manifest.json"] = json.dumps(manifest).encode()
        tar_of(path, files)
    return path


def test_a_docker_save_archive_goes_in_under_each_of_its_names(tmp_path: Path) -> None:
    path = docker_archive(tmp_path, "mongo:7", "myorg/app:1")
    archive = inspect_archive(path)
    assert archive.kind == "docker-archive"
    assert import_plan(archive, None) == [
        (f"docker-archive:{path}", ImageName("library/mongo", "7")),
        (f"docker-archive:{path}", ImageName("myorg/app", "1")),
    ]
    assert import_plan(archive, "other:2") == [
        (f"docker-archive:{path}", ImageName("library/other", "2"))
    ]


def test_an_oci_layout_is_read_by_its_ref_name(tmp_path: Path) -> None:
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "digest": "sha256:" + "1" * 64,
                "annotations": {"org.opencontainers.image.ref.name": "app:1"},
            },
            {
                "digest": "sha256:" + "2" * 64,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            },
        ],
    }
    path = tar_of(
        tmp_path / "oci.tar",
        {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()},
    )
    archive = inspect_archive(path)
    assert archive.kind == "oci-archive"
    assert archive.images[0].source == f"oci-archive:{path}:app:1"
    assert archive.images[0].names == ("app:1",)
    assert archive.images[1].names == ()  # a bare tag is no name
    with pytest.raises(RegistryError, match=r"image 2 of 2 carries no name") as caught:
        import_plan(archive, None)
    assert "--name" in (caught.value.hint or "")
    with pytest.raises(RegistryError, match=r"holds 2 images; --name names one"):
        import_plan(archive, "x:1")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"notes.txt": b"hi"}, "not an image archive (neither a docker save archive"),
        ({"manifest.json": b"{oops"}, "manifest.json in the archive is not JSON"),
        ({"manifest.json": b"[]"}, "manifest.json lists no image"),
        ({"oci-layout": b"{}", "index.json": b'{"manifests": []}'}, "index.json lists no image"),
    ],
)
def test_what_is_not_an_image_is_named(
    tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    path = tar_of(tmp_path / "thing.tar", files)
    with pytest.raises(RegistryError) as caught:
        inspect_archive(path)
    assert caught.value.message.startswith(f"{path}: ")
    assert message in caught.value.message


def test_a_file_that_is_no_tar_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(RegistryError, match=rf"^{path}: not an image archive: not a tar file"):
        inspect_archive(path)


def test_a_disk_too_full_is_an_error_naming_the_place_and_the_fix(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    check_space(tmp_path, 1000, "small.tar")  # fits
    with pytest.raises(RegistryError) as caught:
        check_space(tmp_path / "data", free + 10**9, "big.tar")
    assert caught.value.message.startswith("big.tar: not enough disk space for the lab registry")
    assert str(tmp_path / "data") in caught.value.message
    assert "lab image rm" in (caught.value.hint or "")


def test_the_registry_listens_on_loopback_only_with_deletes_on(tmp_path: Path) -> None:
    config = yaml.safe_load(registry_config(5000, tmp_path / "data"))
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["storage"]["delete"] == {"enabled": True}
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "data")
    assert config["storage"]["maintenance"]["readonly"] == {"enabled": False}
    assert "proxy" not in config
    readonly = yaml.safe_load(registry_config(5000, tmp_path, readonly=True))
    assert readonly["storage"]["maintenance"]["readonly"] == {"enabled": True}
    cache = yaml.safe_load(registry_config(5001, tmp_path, upstream="https://registry-1.docker.io"))
    assert cache["proxy"] == {"remoteurl": "https://registry-1.docker.io"}
    assert cache["http"]["addr"] == "127.0.0.1:5001"


def test_a_compressed_archive_says_how_to_decompress_it(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "image.tar.gz"
    path.write_bytes(gzip.compress(docker_archive(tmp_path, "app:1").read_bytes()))
    with pytest.raises(RegistryError) as caught:
        inspect_archive(path)
    assert caught.value.message == (
        f"{path}: a gzip-compressed archive; skopeo reads plain tar archives only"
    )
    assert f"gzip -dk {path}" in (caught.value.hint or "")
