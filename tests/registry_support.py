"""Images the registry tests build themselves, and a registry of their own on loopback."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.box import dockerimage
from provisioner.registry import host, service
from provisioner.registry.images import MANIFEST_TYPES, Images
from tests.loopback import free_port

BUSYBOX = Path("/bin/busybox")
MARKER_PATH = "etc/lab-marker"
NEEDS = (service.REGISTRY_BIN, "skopeo", service.RELAY_BIN)


def missing() -> str | None:
    """Why the registry tests cannot run here, or None."""
    absent = [tool for tool in NEEDS if shutil.which(tool) is None]
    if not BUSYBOX.is_file():
        absent.append("busybox (busybox-static)")
    if absent:
        return f"needs {', '.join(absent)} (scripts/install.sh installs them)"
    return None


def two_layer_archive(reference: str, marker: str) -> bytes:
    """A ``docker save`` archive of busybox plus a layer holding ``/etc/lab-marker``."""
    return dockerimage.image_archive(
        [
            dockerimage.host_busybox_layer(str(BUSYBOX)),
            dockerimage.files_layer({MARKER_PATH: marker.encode()}),
        ],
        reference,
        "lab registry test",
    )


def broken_archive(reference: str) -> bytes:
    """An archive whose second layer is listed in manifest.json but missing."""
    good = two_layer_archive(reference, "broken")
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(good)) as source,
        tarfile.open(fileobj=out, mode="w") as target,
    ):
        manifest = json.loads(_read(source, "manifest.json"))
        dropped = manifest[0]["Layers"][1]
        for member in source.getmembers():
            if member.name != dropped:
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None
    return member.read()


def get_json(url: str, accept: tuple[str, ...] = MANIFEST_TYPES) -> tuple[int, Any]:
    """The status and JSON body of a GET (404s included)."""
    request = urllib.request.Request(url, headers={"Accept": ", ".join(accept)})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def marker_in_image(url: str, repository: str, tag: str) -> str | None:
    """The text of ``/etc/lab-marker`` in the image's top layer, read from the registry."""
    status, manifest = get_json(f"{url}/v2/{repository}/manifests/{tag}")
    if status != 200:
        return None
    digest = manifest["layers"][-1]["digest"]
    with urllib.request.urlopen(f"{url}/v2/{repository}/blobs/{digest}", timeout=10) as reply:
        blob = reply.read()
    data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return _read(tar, MARKER_PATH).decode()


@dataclass
class LoopRegistry:
    """A host registry of the test's own: its directory and loopback port."""

    root: Path
    port: int

    @property
    def images(self) -> Images:
        return Images(self.root, self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def loop_registry(root: Path) -> Iterator[LoopRegistry]:
    """Everything the test starts under ``root`` is stopped afterwards, relays too."""
    registry = LoopRegistry(root, free_port())
    try:
        yield registry
    finally:
        host.stop(root)
        for relay, _ in service.relays(root):
            relay.stop()
