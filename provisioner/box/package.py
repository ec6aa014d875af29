"""The Vagrant side of a box: ``metadata.json``, the box's Vagrantfile, the ``.box``
tarball, and adding it to Vagrant.

Naming: a built box is added as ``lab/<recipe>-<key12>`` (version 0), where
``key12`` is the start of its cache key. Every different build has its own
name, so vagrant-libvirt never reuses a stale copy of an older image from its
storage pool (it names pool volumes after box name and version); the
Vagrantfile of a lab names the exact box it was rendered for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from provisioner.errors import BoxError, HostError

BOX_PREFIX = "lab"
VAGRANT_TIMEOUT = 900.0

BOX_VAGRANTFILE = """\
# Defaults that come with lab's box; a lab's own Vagrantfile overrides them.
# The box has no Vagrant insecure key: SSH keys arrive by cloud-config (config drive).
Vagrant.configure("2") do |config|
  config.ssh.username = "core"
  config.ssh.insert_key = false
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
    libvirt.random :model => "random"
  end
end
"""


def vagrant_box_name(recipe_name: str, key: str, length: int = 12) -> str:
    return f"{BOX_PREFIX}/{recipe_name}-{key[:length]}"


def metadata(virtual_size_bytes: int) -> dict[str, object]:
    """vagrant-libvirt's box metadata (format v1): provider, format, size in GiB (rounded up)."""
    gib = -(-virtual_size_bytes // 1024**3)
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": gib}


def metadata_json(virtual_size_bytes: int) -> str:
    return json.dumps(metadata(virtual_size_bytes), indent=2, sort_keys=True) + "\n"


def pack(folder: Path, target: Path) -> Path:
    """Write ``target`` (.box): an uncompressed tar of metadata.json, Vagrantfile, box.img."""
    tmp = target.with_name(f".{target.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("metadata.json", "Vagrantfile", "box.img"):
            path = folder / name
            if not path.is_file():
                raise BoxError(f"cannot pack {target.name}: {path} is missing")
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    tmp.replace(target)
    return target


def vagrant_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("VAGRANT_HOME"):
        return Path(env["VAGRANT_HOME"])
    return Path(env.get("HOME", str(Path.home()))) / ".vagrant.d"


def vagrant_box_dir(name: str, version: str = "0", home: Path | None = None) -> Path:
    """Where Vagrant keeps an added box: ``boxes/<name, / as -VAGRANTSLASH->/<ver>/libvirt``."""
    base = home or vagrant_home()
    return base / "boxes" / name.replace("/", "-VAGRANTSLASH-") / version / "libvirt"


def is_added(name: str, home: Path | None = None) -> bool:
    """Cheap check (no Vagrant start-up) whether Vagrant has the box for libvirt."""
    box = vagrant_box_dir(name, home=home)
    return (box / "metadata.json").is_file() and (box / "box.img").is_file()


def _vagrant() -> str:
    path = shutil.which("vagrant")
    if path is None:
        raise HostError("vagrant is not installed", hint="apt-get install vagrant vagrant-libvirt")
    return path


def add(name: str, box_file: Path, log_file: Path, timeout: float = VAGRANT_TIMEOUT) -> None:
    """``vagrant box add --name NAME FILE`` (replacing a same-named box); output to ``log_file``."""
    command = [_vagrant(), "box", "add", "--force", "--name", name, str(box_file)]
    with log_file.open("a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        try:
            result = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BoxError(
                f"vagrant box add {name} did not finish within {timeout:.0f}s",
                hint=f"see {log_file}",
            ) from None
    if result.returncode != 0 or not is_added(name):
        raise BoxError(
            f"vagrant box add {name} failed (exit status {result.returncode})",
            hint=f"see {log_file}",
        )


def remove(name: str, timeout: float = 300.0) -> bool:
    """``vagrant box remove`` without force (a box in use by a machine stays); True if gone."""
    if not is_added(name):
        return True
    result = subprocess.run(
        [_vagrant(), "box", "remove", "--provider", "libvirt", "--all", name],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return result.returncode == 0 and not is_added(name)
