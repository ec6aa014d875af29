"""Config drives: a ``config-2`` ISO per node carrying its cloud-config.

The layout is OpenStack's, which coreos-cloudinit reads with
``--from-configdrive``: ``openstack/latest/user_data`` plus a
``meta_data.json`` naming the node, its address and the lab's SSH key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from provisioner.errors import HostError
from provisioner.state import atomic_write

LABEL = "config-2"
ISO_TOOLS = ("genisoimage", "xorrisofs", "mkisofs")


def meta_data(hostname: str, ip: str, public_keys: dict[str, str]) -> str:
    data = {
        "uuid": hostname,
        "hostname": hostname,
        "name": hostname,
        "public_keys": public_keys,
        "local-ipv4": ip,
        "public-ipv4": ip,
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _iso_tool() -> str:
    for tool in ISO_TOOLS:
        path = shutil.which(tool)
        if path:
            return path
    raise HostError(
        "no ISO tool found (genisoimage, xorrisofs or mkisofs)", hint="apt-get install genisoimage"
    )


def build_config_drive(user_data: str, meta: str, target: Path, timeout: float = 60) -> Path:
    """Write ``target`` (an ISO labelled config-2) atomically; returns its path."""
    with tempfile.TemporaryDirectory(prefix="lab-configdrive-") as tmp:
        root = Path(tmp) / "root"
        latest = root / "openstack" / "latest"
        latest.mkdir(parents=True)
        (latest / "user_data").write_text(user_data)
        (latest / "meta_data.json").write_text(meta)
        iso = Path(tmp) / "drive.iso"
        command = [_iso_tool(), "-quiet", "-V", LABEL, "-J", "-R", "-o", str(iso), str(root)]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise HostError(f"{command[0]} did not finish within {timeout:g}s") from exc
        if result.returncode != 0:
            raise HostError(f"{command[0]} failed building {target}: {result.stderr.strip()}")
        atomic_write(target, iso.read_bytes())
    return target
