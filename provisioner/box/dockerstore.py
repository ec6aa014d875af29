"""Pre-seed docker's image store (overlay2) in an image tree, without running docker.

Loading an image when docker starts races the first client: with socket
activation, dockerd answers ``docker run`` before an ``ExecStartPost`` load
has finished. So the box ships the image already in docker's store, in the
on-disk layout of Debian 12's docker.io (20.10, overlay2 driver)::

    /var/lib/docker/image/overlay2/repositories.json
    /var/lib/docker/image/overlay2/imagedb/content/sha256/<image id>      (config JSON)
    /var/lib/docker/image/overlay2/layerdb/sha256/<chain id>/{diff,size,cache-id}
    /var/lib/docker/overlay2/<cache id>/{diff/,link}
    /var/lib/docker/overlay2/l/<short id> -> ../<cache id>/diff

Only single-layer images are supported (the chain id of one layer is its diff id).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provisioner.box.dockerimage import DockerImageTar

DOCKER_ROOT = "var/lib/docker"


@dataclass(frozen=True)
class SeededImage:
    reference: str
    image_id: str
    cache_id: str
    short_id: str


def cache_id(diff_id: str) -> str:
    """The overlay2 directory of a layer (docker makes a random one; ours is derived)."""
    return hashlib.sha256(f"lab-box-layer:{diff_id}".encode()).hexdigest()


def short_id(diff_id: str) -> str:
    """overlay2's 26-character link name (base32 like docker's)."""
    raw = hashlib.sha256(f"lab-box-link:{diff_id}".encode()).digest()[:16]
    return base64.b32encode(raw).decode()[:26]


def repositories_json(existing: str | None, reference: str, image_id: str) -> str:
    """Add ``name:tag -> image id`` to docker's reference store."""
    data = json.loads(existing) if existing else {"Repositories": {}}
    name = reference.rpartition(":")[0]
    data.setdefault("Repositories", {}).setdefault(name, {})[reference] = image_id
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _layer_and_config(image: DockerImageTar) -> tuple[bytes, bytes]:
    with tarfile.open(fileobj=io.BytesIO(image.data)) as tar:
        manifest = json.loads(_read(tar, "manifest.json"))
        if len(manifest) != 1 or len(manifest[0]["Layers"]) != 1:
            raise ValueError("only single-image, single-layer tarballs can be pre-seeded")
        return _read(tar, manifest[0]["Layers"][0]), _read(tar, manifest[0]["Config"])


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file in the image tarball")
    return member.read()


def extract_layer(layer: bytes, target: Path) -> int:
    """Unpack a layer tar (dirs, files, symlinks only) below ``target``; returns content bytes."""
    size = 0
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        for member in tar.getmembers():
            rel = PurePosixPath(member.name)
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"unsafe path {member.name!r} in layer")
            path = target.joinpath(*rel.parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                path.write_bytes(source.read())
                size += member.size
            elif member.issym():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.symlink_to(member.linkname)
                os.lchown(path, member.uid, member.gid)
                continue
            else:
                raise ValueError(f"unsupported entry type for {member.name!r} in layer")
            os.chown(path, member.uid, member.gid)
            path.chmod(member.mode)
    return size


def seed(root: Path, image: DockerImageTar) -> SeededImage:
    """Put ``image`` into docker's overlay2 store inside the tree ``root``."""
    layer, config = _layer_and_config(image)
    diff_hex = image.layer_diff_id.removeprefix("sha256:")
    image_hex = image.image_id.removeprefix("sha256:")
    if hashlib.sha256(layer).hexdigest() != diff_hex:
        raise ValueError("layer digest does not match the image's diff id")
    docker = root / DOCKER_ROOT
    meta = docker / "image" / "overlay2"
    overlay = docker / "overlay2"
    for folder, mode in (
        (docker, 0o710),
        (docker / "image", 0o700),
        (meta, 0o700),
        (meta / "imagedb" / "content" / "sha256", 0o700),
        (meta / "imagedb" / "metadata" / "sha256", 0o700),
        (meta / "layerdb" / "sha256", 0o700),
        (overlay, 0o710),  # docker's own modes
        (overlay / "l", 0o700),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)
    (meta / "imagedb" / "content" / "sha256" / image_hex).write_bytes(config)
    cid = cache_id(image.layer_diff_id)
    link = short_id(image.layer_diff_id)
    layer_dir = overlay / cid
    if layer_dir.exists():
        raise ValueError(f"layer {cid} is already in {overlay}")
    (layer_dir / "diff").mkdir(parents=True)
    layer_dir.chmod(0o710)
    content_size = extract_layer(layer, layer_dir / "diff")
    (layer_dir / "diff").chmod(0o755)
    (layer_dir / "link").write_text(link)
    (overlay / "l" / link).symlink_to(f"../{cid}/diff")
    layerdb = meta / "layerdb" / "sha256" / diff_hex
    layerdb.mkdir(mode=0o755)
    (layerdb / "diff").write_text(image.layer_diff_id)
    (layerdb / "size").write_text(str(content_size))
    (layerdb / "cache-id").write_text(cid)
    repos = meta / "repositories.json"
    existing = repos.read_text() if repos.exists() else None
    repos.write_text(repositories_json(existing, image.reference, image.image_id))
    for dirpath, dirnames, filenames in os.walk(meta):
        for name in dirnames + filenames:
            os.lchown(Path(dirpath) / name, 0, 0)
    return SeededImage(image.reference, image.image_id, cid, link)
