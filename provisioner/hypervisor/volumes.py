"""Files a lab's guests use, as volumes of a libvirt storage pool.

QEMU reads a node's config drive and writes its serial console on the host
that runs it, which need not be this one (a ``qemu+ssh://`` URI) and cannot be
expected to enter the lab directory (a home directory only its owner can
enter). So ``lab up`` puts both into the storage pool through libvirt: the
drive is uploaded by a libvirt stream, the console is an empty volume QEMU's
log writer appends to, read back by a libvirt stream. Names carry the domain's
name (``lab-<lab>_core-01-config.iso``, ``...-console.log``), so ``lab destroy``
removes them with the lab's other volumes.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from provisioner.errors import HostError
from provisioner.hypervisor.boxvolume import volume_xml

CONFIG_SUFFIX = "-config.iso"
CONSOLE_SUFFIX = "-console.log"
_CHUNK = 1 << 20


def config_volume(domain: str) -> str:
    return domain + CONFIG_SUFFIX


def console_volume(domain: str) -> str:
    return domain + CONSOLE_SUFFIX


def pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    """The active storage pool ``name``; HostError naming the fix otherwise."""
    try:
        found = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        raise HostError(f"storage pool {name!r} does not exist", hint="`lab doctor`") from exc
    if not found.isActive():
        raise HostError(f"storage pool {name!r} is not active", hint="`virsh pool-start {name}`")
    return found


def pool_dir(found: libvirt.virStoragePool) -> str:
    """Where a ``dir`` pool keeps its volumes, on the host that runs the guests."""
    path = ET.fromstring(found.XMLDesc(0)).findtext("target/path")  # noqa: S314 - from libvirtd
    if not path:
        raise HostError(f"storage pool {found.name()!r} has no target path")
    return path


def _lookup(found: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    for attempt in range(2):
        try:
            return found.storageVolLookupByName(name)
        except libvirt.libvirtError:
            if attempt == 0:  # made since the pool was last read
                with contextlib.suppress(libvirt.libvirtError):
                    found.refresh(0)
    return None


def upload(conn: libvirt.virConnect, found: libvirt.virStoragePool, name: str, source: Path) -> str:
    """``source``'s bytes as the raw volume ``name`` (made or overwritten); its path."""
    data = source.read_bytes()
    volume = _lookup(found, name)
    if volume is not None and volume.info()[1] != len(data):
        with contextlib.suppress(libvirt.libvirtError):
            volume.delete(0)
        volume = None
    try:
        if volume is None:
            volume = found.createXML(volume_xml(name, len(data), "raw"), 0)
        send(conn, volume, data)
    except libvirt.libvirtError as exc:
        raise HostError(f"cannot upload {source} into pool {found.name()}: {exc}") from exc
    return str(volume.path())


def send(conn: libvirt.virConnect, volume: libvirt.virStorageVol, data: bytes) -> None:
    """Write ``data`` over ``volume`` through a libvirt stream."""
    stream = conn.newStream(0)
    try:
        volume.upload(stream, 0, len(data), 0)
        for start in range(0, len(data), _CHUNK):
            chunk = data[start : start + _CHUNK]
            while chunk:
                sent = stream.send(chunk)
                chunk = chunk[sent:]
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def ensure_empty(found: libvirt.virStoragePool, name: str) -> str:
    """The raw volume ``name``, made empty if missing (an existing one is kept); its path."""
    volume = _lookup(found, name)
    if volume is None:
        try:
            volume = found.createXML(volume_xml(name, 0, "raw"), 0)
        except libvirt.libvirtError as exc:
            raise HostError(f"cannot create volume {name} in pool {found.name()}: {exc}") from exc
    return str(volume.path())


def download(conn: libvirt.virConnect, found: libvirt.virStoragePool, name: str) -> bytes | None:
    """The current bytes of the volume ``name`` (read through a libvirt stream), or None."""
    volume = _lookup(found, name)
    if volume is None:
        return None
    stream = conn.newStream(0)
    chunks: list[bytes] = []
    try:
        volume.download(stream, 0, 0, 0)
        while True:
            got = stream.recv(_CHUNK)
            if isinstance(got, int):  # -2: would block (not for a blocking stream)
                continue
            if not got:
                break
            chunks.append(got)
        stream.finish()
    except libvirt.libvirtError as exc:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise HostError(f"cannot read volume {name} of pool {found.name()}: {exc}") from exc
    return b"".join(chunks)
