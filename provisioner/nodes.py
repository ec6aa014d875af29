"""Reaching a lab's nodes: pinned host keys, SSH runners, known_hosts and ssh_config."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import HostKeyError, LabError, NodeError
from provisioner.hypervisor.naming import domain_name
from provisioner.remote.hostkeys import (
    CHANGED_KEY_FIX,
    console_shows_keys_authorized,
    parse_host_key_fingerprints,
)
from provisioner.remote.runner import Runner
from provisioner.remote.ssh import SSHRunner
from provisioner.state import KEY_FILE, LIBVIRT_PATHS_FILE, LabState

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost

KNOWN_HOSTS = "known_hosts"
# On every node: each node's pinned host key, for SSH between nodes (fleetctl).
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# sh -c SCRIPT PATH: PATH (mode 0644) becomes stdin, replaced in one rename.
_REPLACE_FILE = 'umask 022 && cat > "$0.lab-new" && mv -f "$0.lab-new" "$0"'
SSH_CONFIG = "ssh_config"
LOG_DIR = "logs"


@dataclass(frozen=True)
class NodePaths:
    """Where a node's console log and saved diagnostics live."""

    console: Path
    journal: Path


def log_dir(config: LabConfig) -> Path:
    return config.state_dir / LOG_DIR


def node_paths(config: LabConfig, node: NodeSpec) -> NodePaths:
    logs = log_dir(config)
    return NodePaths(console=logs / f"{node.name}.log", journal=logs / f"{node.name}.journal")


def domain_of(config: LabConfig, node: NodeSpec) -> str:
    return domain_name(config.name, node.name)


def libvirt_paths(config: LabConfig) -> dict[str, dict[str, str]]:
    """Where ``lab up`` put the nodes' config drives and consoles in the storage pool
    (``{"pool": {"name": ...}, "drives": {node: path}, "consoles": {node: path}}``);
    empty for a lab that plain ``vagrant up`` booted with the files under ``.lab/``."""
    try:
        found = json.loads((config.state_dir / LIBVIRT_PATHS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def sync_console(config: LabConfig, node: NodeSpec, host: LibvirtHost) -> bool:
    """Copy the node's console, read through libvirt, to its log under ``.lab/logs``
    (where every reader of the console looks); False when the node's console is a
    file QEMU writes there itself (a plain ``vagrant up``) or does not exist yet."""
    from provisioner.hypervisor.volumes import console_volume

    paths = libvirt_paths(config)
    if node.name not in paths.get("consoles", {}):
        return False
    data = host.read_volume(paths["pool"]["name"], console_volume(domain_of(config, node)))
    if data is None:
        return False
    target = node_paths(config, node).console
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        unchanged = target.read_bytes() == data
    except OSError:
        unchanged = False
    if not unchanged:
        target.write_bytes(data)
    return True


def key_path(config: LabConfig) -> Path:
    return config.state_dir / KEY_FILE


def console_fingerprints(config: LabConfig, node: NodeSpec) -> dict[str, str]:
    """The host-key fingerprints the node printed on its serial console, if any yet."""
    path = node_paths(config, node).console
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    except PermissionError as exc:
        raise NodeError(
            node.name,
            f"cannot read the serial console log {path}",
            hint="run lab as root or as a member of the libvirt group",
        ) from exc
    return parse_host_key_fingerprints(text)


def console_keys_authorized(config: LabConfig, node: NodeSpec, user: str) -> bool:
    """True once the node's console shows its agent authorizing ``user``'s keys."""
    try:
        text = node_paths(config, node).console.read_text(errors="replace")
    except OSError:
        return False  # console_fingerprints, read first, reports an unreadable log
    return console_shows_keys_authorized(text, user)


def check_pins(node: str, pinned: Mapping[str, str], printed: Mapping[str, str]) -> None:
    """A key the console now shows must match what was pinned at first boot."""
    for kind, fingerprint in printed.items():
        if kind in pinned and pinned[kind] != fingerprint:
            raise HostKeyError(
                f"{node}: the {kind} host key changed: pinned {pinned[kind]}, "
                f"the console now shows {fingerprint}",
                hint=CHANGED_KEY_FIX,
            )


def runner(
    config: LabConfig,
    state: LabState,
    node: NodeSpec,
    *,
    command_timeout: float = 120.0,
) -> SSHRunner:
    pinned = state.host_keys.get(node.name)
    if not pinned:
        raise NodeError(
            node.name,
            "no pinned host key yet (the node has not finished booting under lab)",
            hint="run `lab up` first",
        )
    return SSHRunner(
        node.name,
        node.ip,
        private_key=key_path(config),
        pinned_host_keys=dict(pinned_pairs(pinned)),
        command_timeout=command_timeout,
    )


def pinned_pairs(stored: Sequence[str]) -> list[tuple[str, str]]:
    """Host keys are stored as ``"TYPE SHA256:..."`` strings in lab state."""
    pairs = []
    for item in stored:
        kind, _, fingerprint = item.partition(" ")
        pairs.append((kind, fingerprint))
    return pairs


def stored_pins(fingerprints: Mapping[str, str]) -> list[str]:
    return [f"{kind} {fp}" for kind, fp in sorted(fingerprints.items())]


def resolve_nodes(config: LabConfig, names: Sequence[str]) -> list[NodeSpec]:
    if not names:
        return list(config.nodes)
    return [config.node(name) for name in names]


def write_known_hosts(config: LabConfig, lines: Mapping[str, str]) -> Path:
    """known_hosts for OpenSSH (`lab ssh`), from keys verified against the pins."""
    from provisioner.state import atomic_write

    path = config.state_dir / KNOWN_HOSTS
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            host, _, rest = line.partition(" ")
            if host:
                existing[host] = rest
    for line in lines.values():
        host, _, rest = line.partition(" ")
        existing[host] = rest
    text = "".join(f"{host} {rest}\n" for host, rest in sorted(existing.items()))
    atomic_write(path, text.encode(), mode=0o600)
    return path


def forget_known_hosts(config: LabConfig, node: NodeSpec) -> None:
    """Drop ``node``'s lines (by name or address) from the lab's known_hosts."""
    from provisioner.state import atomic_write

    path = config.state_dir / KNOWN_HOSTS
    if not path.exists():
        return
    names = {node.name, node.ip, f"[{node.ip}]:22"}
    kept = [
        line
        for line in path.read_text().splitlines()
        if not set(line.partition(" ")[0].split(",")) & names
    ]
    atomic_write(path, "".join(f"{line}\n" for line in kept).encode(), mode=0o600)


def replace_file_argv(path: str) -> list[str]:
    """The command that replaces the file ``path`` (mode 0644) with its stdin atomically."""
    return ["sh", "-c", _REPLACE_FILE, path]


def system_known_hosts_text(config: LabConfig) -> str:
    """The nodes' ``/etc/ssh/ssh_known_hosts``: every pinned node's key, from the lab's."""
    from provisioner.remote.sshconfig import HostSpec, render_system_known_hosts

    path = config.state_dir / KNOWN_HOSTS
    lab_known_hosts = path.read_text() if path.exists() else ""
    hosts = [HostSpec(node.name, node.ip) for node in config.nodes]
    return render_system_known_hosts(hosts, lab_known_hosts)


def share_host_keys(config: LabConfig, runners: Mapping[str, Runner]) -> None:
    """Write every pinned node's host key to ``/etc/ssh/ssh_known_hosts`` on each of
    ``runners``' nodes, so that SSH from node to node checks host keys. Run whenever
    keys are pinned (each ``lab up``), it also tells older nodes about newer ones.
    Raises RemoteError naming every node that could not be written."""
    from provisioner.remote.fanout import raise_for_failures, run_all

    argv = ["sudo", *replace_file_argv(SYSTEM_KNOWN_HOSTS)]
    text = system_known_hosts_text(config)
    raise_for_failures(argv, run_all(list(runners.values()), argv, timeout=60, stdin=text))


def ssh_config_text(config: LabConfig) -> str:
    from provisioner.remote.sshconfig import HostSpec, render_ssh_config

    hosts = [HostSpec(node.name, node.ip) for node in config.nodes]
    return render_ssh_config(hosts, key_path(config), config.state_dir / KNOWN_HOSTS)


def require_known_hosts(config: LabConfig) -> Path:
    path = config.state_dir / KNOWN_HOSTS
    if not path.exists():
        raise LabError(
            f"{path} does not exist yet",
            hint="run `lab up` first; it pins every node's host key",
        )
    return path
