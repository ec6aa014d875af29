"""Shared helpers for the hypervisor tests: a sample Vagrant context and its rendering."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import jinja2

from provisioner.hypervisor.vagrantfile import VagrantContext, VagrantNode, render_vagrantfile
from provisioner.render import ruby_str
from provisioner.resources import vagrantfile_template


def sample_context(lab: str = "sample", *, count: int = 3, **changes: Any) -> VagrantContext:
    """A TCG lab of ``count`` nodes on 192.168.150.0/24 with relative paths."""
    context = VagrantContext(
        lab_name=lab,
        box_name="lab/default",
        box_version=None,
        driver="qemu",
        cpu_model="qemu64",
        network_name=f"lab-{lab}",
        network_address="192.168.150.0/24",
        ssh_private_key_path=Path(".lab/id_ed25519"),
        serial_log_dir=Path(".lab/logs"),
        nodes=tuple(
            VagrantNode(
                name=f"core-{i:02d}",
                ip=f"192.168.150.{100 + i}",
                mac=f"52:54:00:aa:bb:{i:02x}",
                memory=768,
                cpus=1,
                config_drive_path=Path(f".lab/config-drives/core-{i:02d}.iso"),
                user_data_path=Path(f"nodes/core-{i:02d}/user-data"),
            )
            for i in range(1, count + 1)
        ),
    )
    return dataclasses.replace(context, **changes)


def render(context: VagrantContext) -> str:
    """Render Vagrantfile.j2 the way `lab render` does (StrictUndefined, ruby_str)."""
    template = vagrantfile_template()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["ruby_str"] = ruby_str
    return render_vagrantfile(context, env)


def write_lab_dir(directory: Path, context: VagrantContext) -> Path:
    """A rendered lab directory: Vagrantfile plus the lab key Vagrant checks for."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Vagrantfile").write_text(render(context))
    key = directory / context.ssh_private_key_path
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
            check=True,
            timeout=30,
        )
    return directory
