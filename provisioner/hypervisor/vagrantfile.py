"""What Vagrantfile.j2 is rendered from: one frozen, validated context.

:func:`render_vagrantfile` renders it with the caller's Jinja environment, which
must load ``Vagrantfile.j2`` and provide the ``ruby_str`` filter (Ruby string
literals; see :mod:`provisioner.render`). Paths may be relative: the Vagrantfile
resolves them against its own directory, so the rendered directory can move.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import jinja2

from provisioner.errors import ConfigError
from provisioner.hypervisor.libvirt import SYSTEM_URI
from provisioner.hypervisor.naming import check_lab_name, object_prefix

TEMPLATE_NAME = "Vagrantfile.j2"
Driver = Literal["kvm", "qemu"]
# cpu_model values that are really vagrant-libvirt cpu_mode values.
CPU_MODES = ("host-passthrough", "host-model")
MIN_MEMORY_MIB = 128
_MAC = re.compile(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")
_ONE_CONSTRAINT = r"(?:[<>=~!]{1,2}\s*)?\d+(?:\.\d+)*"
_VERSION_CONSTRAINT = re.compile(rf"{_ONE_CONSTRAINT}(?:\s*,\s*{_ONE_CONSTRAINT})*")


@dataclass(frozen=True)
class VagrantNode:
    """One machine of the Vagrantfile."""

    name: str
    ip: str  # the DHCP reservation's address (documentation in the Vagrantfile)
    mac: str  # management NIC; the network's DHCP reservation matches it
    memory: int  # MiB
    cpus: int
    config_drive_path: Path | None  # config-2 ISO attached as a cdrom
    user_data_path: Path | None  # also copied like coreos-vagrant does


@dataclass(frozen=True)
class VagrantContext:
    """Everything Vagrantfile.j2 needs for one lab."""

    lab_name: str
    box_name: str
    box_version: str | None  # a Vagrant version constraint, or None for any
    driver: Driver  # "kvm" with hardware virtualisation, "qemu" for TCG
    cpu_model: str | None  # "qemu64" under TCG; "host-passthrough"/"host-model" are modes
    network_name: str  # an existing isolated libvirt network
    network_address: str  # its subnet, e.g. "192.168.150.0/24"
    ssh_private_key_path: Path
    serial_log_dir: Path
    nodes: tuple[VagrantNode, ...]
    # where `lab up` put each node's config drive and console in the storage pool
    libvirt_paths_file: Path | None = None
    ssh_username: str = "core"
    instance_name_prefix: str = "core"
    libvirt_uri: str = SYSTEM_URI
    storage_pool: str = "default"
    boot_timeout: int = 900  # seconds Vagrant waits for SSH (TCG boots are slow)
    # The lab directory (lab.yaml, .lab/) and its state; None: the Vagrantfile's own
    lab_dir: Path | None = None
    state_dir: Path | None = None
    # the command the Vagrantfile's hooks run as `lab` (the one that rendered it)
    lab_command: tuple[str, ...] = ("lab",)
    update_channels: tuple[str, ...] = ("stable", "beta", "alpha")  # accepted, not used
    min_memory: int = 384  # MiB: lab.yaml's vm_memory minimum, for config.rb's $vm_memory

    def __post_init__(self) -> None:
        check_lab_name(self.lab_name)
        if self.driver not in ("kvm", "qemu"):
            raise ConfigError(f"driver must be 'kvm' or 'qemu', not {self.driver!r}")
        if self.box_version is not None and not _VERSION_CONSTRAINT.fullmatch(self.box_version):
            raise ConfigError(
                f"box version {self.box_version!r} is not a Vagrant version constraint",
                hint="use e.g. '1.2.0' or '>= 1.0', or leave it unset",
            )
        try:
            ipaddress.IPv4Network(self.network_address)
        except ValueError as exc:
            raise ConfigError(f"invalid network address {self.network_address!r}: {exc}") from exc
        if not self.nodes:
            raise ConfigError("a Vagrantfile needs at least one node", key="nodes")
        if not self.lab_command or not self.lab_command[0]:
            raise ConfigError("the Vagrantfile needs a command to run lab with")
        for index, node in enumerate(self.nodes, start=1):
            self._check_node(index, node)

    def _check_node(self, index: int, node: VagrantNode) -> None:
        # coreos-vagrant names machines "<prefix>-NN"; config.rb may change the
        # prefix, so the rendered names must follow the same rule.
        expected = machine_name(self.instance_name_prefix, index)
        if node.name != expected:
            raise ConfigError(
                f"node {index} is named {node.name!r}, want {expected!r}",
                key="nodes",
                hint="node names are <instance_name_prefix>-NN, numbered from 01",
            )
        if not _MAC.fullmatch(node.mac):
            raise ConfigError(f"{node.name}: invalid MAC {node.mac!r}", key="nodes")
        if node.memory < MIN_MEMORY_MIB or node.cpus < 1:
            raise ConfigError(
                f"{node.name}: needs at least {MIN_MEMORY_MIB} MiB and one CPU"
                f" (got {node.memory} MiB, {node.cpus} CPUs)",
                key="vm_memory",
            )

    @property
    def domain_prefix(self) -> str:
        """vagrant-libvirt's ``default_prefix``: domains are ``<prefix><machine>``."""
        return object_prefix(self.lab_name)

    @property
    def cpu_mode(self) -> str | None:
        """vagrant-libvirt ``cpu_mode``: custom for a named model, else the mode itself."""
        if self.cpu_model is None:
            return None
        return self.cpu_model if self.cpu_model in CPU_MODES else "custom"

    def template_vars(self) -> dict[str, object]:
        """The template's variables: every field plus the derived ones."""
        values: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        values["domain_prefix"] = self.domain_prefix
        values["cpu_mode"] = self.cpu_mode
        values["state_dir"] = self.state_dir or Path(".lab")
        values["lab_dir"] = self.lab_dir or Path()
        return values


def machine_name(prefix: str, index: int) -> str:
    """coreos-vagrant's machine name: ``core-01``."""
    return f"{prefix}-{index:02d}"


def render_vagrantfile(context: VagrantContext, env: jinja2.Environment) -> str:
    """The Vagrantfile text for ``context``."""
    return env.get_template(TEMPLATE_NAME).render(**context.template_vars())
