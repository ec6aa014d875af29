"""The box's copy in the libvirt storage pool, uploaded once per host under a lock.

vagrant-libvirt copies a box into the storage pool on the first ``vagrant up``
that needs it, and every node's disk is a qcow2 overlay on that copy. It guards
the upload with a lock inside its own Ruby process only, so two labs booting at
once on a fresh host would both upload, and an upload cut short leaves a volume
that a later ``vagrant up`` takes for complete. ``lab up`` therefore uploads the
box itself, under the host lock, to the very name vagrant-libvirt 0.11 looks
for (``handle_box_image.rb``), and vagrant finds it there.

The name (``get_volume_name``): the box name with ``/`` as ``-VAGRANTSLASH-``,
``_vagrant_box_image_``, the box version (for version ``0`` or none: ``0_`` and
the mtime of the box image Vagrant unpacked), then ``_box.img``.

When the box changes (new guest software, a new recipe), the copy of the old one
stays in the pool while any overlay still backs onto it; ``lab up`` removes it,
under the same lock, once the box cache has let the box go and nothing uses it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class BoxVolume:
    """What to upload where: the image Vagrant unpacked and its volume's name."""

    name: str
    source: Path
    capacity: int  # bytes: the image's virtual size
    size: int  # bytes of the file to upload


IMAGE_INFIX = "_vagrant_box_image_"


def escaped_box_name(vagrant_name: str) -> str:
    """A box name as vagrant-libvirt writes it into volume names."""
    return vagrant_name.replace("/", "-VAGRANTSLASH-")


def volume_prefix(vagrant_name: str) -> str:
    """What the names of a box's pool volumes start with (any version, any disk)."""
    return escaped_box_name(vagrant_name) + IMAGE_INFIX


def volume_name(vagrant_name: str, version: str, image_mtime: int) -> str:
    """The pool volume vagrant-libvirt 0.11 uses for a box's (single) disk."""
    tag = version if version not in ("", "0") else f"0_{image_mtime}"
    return f"{volume_prefix(vagrant_name)}{tag}_box.img"


def box_volume(
    vagrant_name: str, virtual_size: int, version: str = "0", home: Path | None = None
) -> BoxVolume:
    from provisioner.box.build import BOX_IMAGE
    from provisioner.box.package import vagrant_box_dir

    source = vagrant_box_dir(vagrant_name, version, home=home) / BOX_IMAGE
    stat = source.stat()
    return BoxVolume(
        name=volume_name(vagrant_name, version, int(stat.st_mtime)),
        source=source,
        capacity=virtual_size,
        size=stat.st_size,
    )


def volume_xml(name: str, capacity: int, fmt: str = "qcow2") -> str:
    """A file volume as vagrant-libvirt creates it (root-owned, readable), not preallocated:
    a copy cut short is then shorter than the image, which is how it is recognised."""
    return (
        "<volume>\n"
        f"  <name>{escape(name)}</name>\n"
        f"  <capacity unit='B'>{capacity}</capacity>\n"
        "  <allocation unit='B'>0</allocation>\n"
        "  <target>\n"
        f"    <format type='{escape(fmt)}'/>\n"
        "    <permissions><owner>0</owner><group>0</group><mode>0644</mode></permissions>\n"
        "  </target>\n"
        "</volume>\n"
    )


def is_complete(physical_size: int, volume: BoxVolume) -> bool:
    """An uploaded copy is byte for byte the image, so as long as it."""
    return physical_size >= volume.size


BOX_NAMESPACE = "lab/"  # the Vagrant box names lab builds: lab/<recipe>-<key12>


def unused_box_volumes(
    volumes: Mapping[str, str], kept_boxes: Collection[str], used: Collection[str]
) -> list[str]:
    """The pool volumes of lab's boxes that may go: boxes the cache no longer keeps
    (``kept_boxes``: their Vagrant names) whose path (``volumes``: name -> path) is
    not ``used`` (a domain's disk, or a backing file of any volume or domain)."""
    own = escaped_box_name(BOX_NAMESPACE)
    kept = tuple(volume_prefix(name) for name in kept_boxes)
    return sorted(
        name
        for name, path in volumes.items()
        if name.startswith(own)
        and IMAGE_INFIX in name
        and not name.startswith(kept)
        and path not in used
    )
