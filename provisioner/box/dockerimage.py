"""Offline docker images in ``docker save`` format, made from a busybox binary.

No registry is reachable, so the box carries its ``busybox`` image as a tarball
that ``docker load`` accepts: one layer (``/bin/busybox``, a symlink per applet,
a minimal ``/etc``), an image config and ``manifest.json`` + ``repositories``.
Everything is deterministic: fixed timestamps and owners, sorted entries, so
the same busybox gives the same image id.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_APPLET_RE = re.compile(r"^[\w.+\[\]-]+(/[\w.+\[\]-]+)*$")
EPOCH = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DIRS = {
    "bin": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "root": 0o700,
    "sbin": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}
_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
}


@dataclass(frozen=True)
class DockerImageTar:
    """The tarball's bytes plus the ids ``docker load`` will report."""

    data: bytes
    image_id: str  # sha256 of the config JSON ("sha256:...")
    layer_diff_id: str  # sha256 of the uncompressed layer tar ("sha256:...")
    reference: str


def parse_applets(listing: str) -> tuple[str, ...]:
    """Parse ``busybox --list-full`` output into relative paths (``bin/ls``)."""
    paths = set()
    for line in listing.splitlines():
        entry = line.strip().lstrip("/")
        if not entry:
            continue
        path = PurePosixPath(entry)
        if ".." in path.parts or not _APPLET_RE.match(entry):
            raise ValueError(f"unexpected applet path {line!r} in busybox --list-full")
        paths.add(str(path))
    return tuple(sorted(paths))


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer_tar(busybox: bytes, applets: Iterable[str]) -> bytes:
    """The image's only layer: busybox at ``bin/busybox`` and one symlink per applet."""
    applet_paths = sorted(set(applets) - {"bin/busybox"})
    dirs = dict(_DIRS)
    for path in applet_paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) != ".":
                dirs.setdefault(str(parent), 0o755)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = dirs[name]
            _add(tar, info)
        info = tarfile.TarInfo("bin/busybox")
        info.mode = 0o755
        info.size = len(busybox)
        _add(tar, info, busybox)
        for name, text in sorted(_ETC.items()):
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            info.size = len(text.encode())
            _add(tar, info, text.encode())
        for path in applet_paths:
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE
            info.linkname = "/bin/busybox"
            info.mode = 0o777
            _add(tar, info)
    return buffer.getvalue()


def image_config(diff_id: str, description: str) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": description}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def busybox_image(
    busybox: bytes, applets: Iterable[str], name: str = "busybox", tag: str = "latest"
) -> DockerImageTar:
    """A ``docker save``-format tarball holding ``name:tag`` built from ``busybox``."""
    layer = layer_tar(busybox, applets)
    layer_sha = hashlib.sha256(layer).hexdigest()
    diff_id = f"sha256:{layer_sha}"
    config = image_config(diff_id, "lab box build: busybox from Debian's busybox-static")
    config_sha = hashlib.sha256(config).hexdigest()
    layer_id = layer_sha  # a single layer without parent: its v1 id may be its digest
    reference = f"{name}:{tag}"
    manifest = [
        {
            "Config": f"{config_sha}.json",
            "RepoTags": [reference],
            "Layers": [f"{layer_id}/layer.tar"],
        }
    ]
    legacy = {"id": layer_id, "created": EPOCH, "os": "linux", "config": {"Cmd": ["sh"]}}
    files = {
        f"{config_sha}.json": config,
        f"{layer_id}/VERSION": b"1.0",
        f"{layer_id}/json": json.dumps(legacy, sort_keys=True).encode(),
        f"{layer_id}/layer.tar": layer,
        "manifest.json": json.dumps(manifest, sort_keys=True).encode(),
        "repositories": json.dumps({name: {tag: layer_id}}, sort_keys=True).encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(layer_id)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        _add(tar, info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.mode = 0o644
            info.size = len(files[path])
            _add(tar, info, files[path])
    return DockerImageTar(
        data=buffer.getvalue(),
        image_id=f"sha256:{config_sha}",
        layer_diff_id=diff_id,
        reference=reference,
    )


def files_layer(files: Mapping[str, bytes], mode: int = 0o644) -> bytes:
    """A layer of regular files (and their parent directories) at the given paths."""
    dirs = sorted({str(p) for path in files for p in PurePosixPath(path).parents if str(p) != "."})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            _add(tar, info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.size = len(files[name])
            _add(tar, info, files[name])
    return buffer.getvalue()


def image_archive(
    layers: Sequence[bytes], reference: str, description: str, cmd: Sequence[str] = ("sh",)
) -> bytes:
    """A ``docker save`` archive of one image of several layers (bottom first), tagged
    ``reference``: what ``docker load``, ``podman load`` and ``skopeo`` read. For images
    made by tests and benchmarks from the busybox layer plus layers of their own."""
    diff_ids = [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": [PATH_ENV], "Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": EPOCH, "created_by": description} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    paths = [f"{diff_id.removeprefix('sha256:')}/layer.tar" for diff_id in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": paths}]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, layer in zip(paths, layers, strict=True):
            info = tarfile.TarInfo(path.split("/")[0])
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            _add(tar, info)
            info = tarfile.TarInfo(path)
            info.mode = 0o644
            info.size = len(layer)
            _add(tar, info, layer)
        for name, data in (
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest, sort_keys=True).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            info.size = len(data)
            _add(tar, info, data)
    return buffer.getvalue()


def host_busybox_layer(busybox: str = "/bin/busybox") -> bytes:
    """The box's busybox layer made from this host's busybox (Debian's busybox-static)."""
    listing = subprocess.run(
        [busybox, "--list-full"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return layer_tar(Path(busybox).read_bytes(), parse_applets(listing))


def tar_file_name(name: str, tag: str) -> str:
    """File stem under /usr/share/lab/docker-images/ for ``name:tag``."""
    return f"{name.replace('/', '_')}_{tag}"
