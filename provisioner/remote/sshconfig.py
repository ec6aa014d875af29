"""The lab's ssh_config: one ``Host`` block per node, trusting only the lab's known_hosts;
and the nodes' own system-wide known_hosts, with every node's pinned key.

``lab ssh-config`` prints :func:`render_ssh_config`'s text, ``lab verify`` writes it
to a file, and both OpenSSH (``ssh -F``) and the lab's SSH client read it
(:func:`ssh_options`, for :func:`provisioner.remote.ssh.runner_from_ssh_config`).
Host keys are pinned: ``StrictHostKeyChecking yes`` with the lab's own known_hosts,
so an unknown or changed key is refused, never added.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from provisioner.errors import ConfigError
from provisioner.state import atomic_write

DEFAULT_USER = "core"
CONNECT_TIMEOUT = 10
KEEPALIVE_INTERVAL = 15

_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9.:_-]+$")
# OpenSSH expands %-tokens and paramiko replaces every "~" in IdentityFile, so a
# path holding either would mean different files to the two; refuse them.
_UNSAFE_PATH_CHARS = ('"', "%", "~", "\\", "\n", "\r", "\t")
_YES = ("yes", "true")


@dataclass(frozen=True)
class HostSpec:
    """A node as SSH sees it: the alias checks and ``ssh`` use, and where it listens."""

    name: str
    address: str
    port: int = 22
    user: str = DEFAULT_USER


def _check_path(what: str, path: Path) -> str:
    text = str(path)
    if not path.is_absolute():
        raise ConfigError(f"{what} {text!r} must be an absolute path")
    bad = [char for char in _UNSAFE_PATH_CHARS if char in text]
    if bad:
        raise ConfigError(
            f"{what} {text!r} contains {bad[0]!r}, which ssh_config cannot carry unambiguously",
            hint="keep the lab in a directory whose path has no quotes, %, ~ or backslashes",
        )
    return f'"{text}"' if " " in text else text


def _check_host(host: HostSpec) -> None:
    if not _ALIAS_RE.match(host.name):
        raise ConfigError(f"node name {host.name!r} cannot be an ssh_config Host alias")
    if not _ADDRESS_RE.match(host.address):
        raise ConfigError(f"{host.name}: address {host.address!r} is not a host name or IP")
    if not _ALIAS_RE.match(host.user):
        raise ConfigError(f"{host.name}: user {host.user!r} is not a valid login name")
    if not 0 < host.port < 65536:
        raise ConfigError(f"{host.name}: port {host.port} is out of range")


def render_ssh_config(nodes: Sequence[HostSpec], key_path: Path, known_hosts_path: Path) -> str:
    """ssh_config text with one Host block per node, for ``ssh -F`` and ``lab verify``."""
    identity = _check_path("the lab's SSH key", key_path)
    known_hosts = _check_path("the lab's known_hosts", known_hosts_path)
    lines = [
        "# SSH settings for this lab's nodes: `ssh -F <this file> <node>`.",
        "# Host keys are the ones each node printed on its serial console; any other is refused.",
    ]
    seen: set[str] = set()
    for node in nodes:
        _check_host(node)
        if node.name in seen:
            raise ConfigError(f"node {node.name!r} is listed twice")
        seen.add(node.name)
        lines += [
            "",
            f"Host {node.name}",
            f"  HostName {node.address}",
            f"  Port {node.port}",
            f"  User {node.user}",
            f"  IdentityFile {identity}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            f"  ConnectTimeout {CONNECT_TIMEOUT}",
            f"  ServerAliveInterval {KEEPALIVE_INTERVAL}",
        ]
    return "\n".join(lines) + "\n"


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: ``host``, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def render_system_known_hosts(nodes: Sequence[HostSpec], lab_known_hosts: str) -> str:
    """``/etc/ssh/ssh_known_hosts`` for the nodes: each node's key from the lab's
    known_hosts (one line per address, keys verified against the pins), listed under
    the node's name and its address, so that node-to-node SSH (fleetctl to a
    machine's PublicIP) checks keys. Nodes without a pinned key are left out."""
    keys: dict[str, list[str]] = {}
    for line in lab_known_hosts.splitlines():
        host, _, key = line.strip().partition(" ")
        if host and not host.startswith("#") and key:
            keys.setdefault(host, []).append(key.strip())
    lines = ["# Every lab node's SSH host key, as the lab pinned it from the node's console."]
    for node in nodes:
        _check_host(node)
        names = (
            f"{known_hosts_name(node.name, node.port)},{known_hosts_name(node.address, node.port)}"
        )
        lines += [
            f"{names} {key}" for key in keys.get(known_hosts_name(node.address, node.port), [])
        ]
    return "\n".join(lines) + "\n"


def write_ssh_config(
    path: Path, nodes: Sequence[HostSpec], key_path: Path, known_hosts_path: Path
) -> Path:
    """Write the lab's ssh_config to ``path`` (atomically) and return ``path``."""
    atomic_write(path, render_ssh_config(nodes, key_path, known_hosts_path).encode(), mode=0o644)
    return path


# --- reading it back (the lab's SSH client) ---------------------------------


@dataclass(frozen=True)
class SSHOptions:
    """The settings for one Host alias that a pinned connection needs."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    connect_timeout: float
    keepalive: int


def ssh_options(config_text: str, alias: str, *, source: str = "ssh_config") -> SSHOptions:
    """The options ``alias`` resolves to, refusing any setup that would not pin host keys.

    Requires an IdentityFile, a UserKnownHostsFile and ``StrictHostKeyChecking yes``
    for the alias (the file ``render_ssh_config`` writes has all three). The
    known_hosts value is one path (quotes allowed), as rendered.
    """

    def fail(message: str) -> ConfigError:
        return ConfigError(
            f"Host {alias}: {message}",
            path=source,
            hint="regenerate it with `lab ssh-config`",
        )

    try:
        found = paramiko.SSHConfig.from_text(config_text).lookup(alias)
    except paramiko.ssh_exception.ConfigParseError as exc:
        raise ConfigError(f"cannot parse: {exc}", path=source) from exc
    identities = found.get("identityfile")
    if not identities:
        raise fail("no IdentityFile")
    known_hosts = found.get("userknownhostsfile")
    if not known_hosts:
        raise fail("no UserKnownHostsFile")
    strict = found.get("stricthostkeychecking", "")
    if strict.lower() not in _YES:
        raise fail(
            f"StrictHostKeyChecking is {strict or 'unset'!r}; checks only run with 'yes'"
            " so that unknown host keys are refused"
        )
    try:
        port = int(found.get("port", "22"))
        connect_timeout = float(found.get("connecttimeout", str(CONNECT_TIMEOUT)))
        keepalive = int(found.get("serveraliveinterval", str(KEEPALIVE_INTERVAL)))
    except ValueError as exc:
        raise fail(f"a number is malformed: {exc}") from exc
    return SSHOptions(
        alias=alias,
        hostname=found["hostname"],
        port=port,
        user=found.get("user", DEFAULT_USER),
        identity_file=Path(identities[0]),
        known_hosts=Path(known_hosts.strip('"')),
        connect_timeout=connect_timeout,
        keepalive=keepalive,
    )
