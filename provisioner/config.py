"""Typed lab configuration, loaded once and validated on load.

Layers, lowest first: built-in defaults < ``lab.yaml`` in the lab directory (or
``--config FILE``) < command-line flags. Knobs keep coreos-vagrant's names where
they exist (``num_instances``, ``instance_name_prefix``, ``vm_memory``,
``vm_cpus``, ``update_channel``, ``forwarded_ports``, ``enable_serial_logging``).

Everything downstream takes :class:`LabConfig`; nothing reads raw dicts.

Longer than most modules on purpose: the schema, the defaults and every check
with its message live together, so a new key is added, defaulted and validated
in one place.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from provisioner.errors import ConfigError

CONFIG_FILE = "lab.yaml"
STATE_DIR = ".lab"
DEFAULT_LIBVIRT_URI = "qemu:///system"  # libvirt on this host

ETCD_CLIENT_PORT = 2379  # a core node's member; a worker's etcd gateway (v2 and v3)
ETCD_LEGACY_PORT = 4001  # etcd's old client port, kept by CoreOS: a member; a worker's v2 proxy
MIN_MEMORY_MB = 384
MAX_NODES = 200
FIRST_HOST = 101  # nodes sit at .101 upward, as in coreos-vagrant
DISCOVERY_MODES = ("local", "public", "static")
ROLES = ("core", "worker")
UPDATE_CHANNELS = ("stable", "beta", "alpha")
FLANNEL_BACKENDS = ("vxlan", "host-gw", "udp")  # what the box's flanneld carries
REGISTRY_PORT = 5000  # the image registry on 127.0.0.1 and on each lab's gateway
DISCOVERY_PORT = 8087  # the discovery service on the gateway (discovery_modes.LOCAL_PORT)

Role = Literal["core", "worker"]
ETCDCTL_APIS = (2, 3)
ROLE_METADATA_KEY = "role"  # fleet metadata each node gets from its role, unless the user sets it
# Beyond this many nodes the default core (etcd members) is odd and smaller than the lab:
# CORE_SIZES gives the core for the smallest lab sizes it applies to, largest first.
ALL_CORE_UP_TO = 5
CORE_SIZES = ((10, 5), (ALL_CORE_UP_TO + 1, 3))

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_META_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class FlannelConfig:
    """``coreos.flannel``: the overlay network written to etcd at first boot, and flanneld."""

    enabled: bool = True
    network: str = "10.1.0.0/16"
    backend: str = "vxlan"


@dataclass(frozen=True)
class RegistryConfig:
    """``registry``: the host's image registry as the guests see it on the lab's gateway.

    ``port`` is where the guests reach it (``GATEWAY:port``); with ``upstream`` a
    pull-through cache of that registry answers at ``GATEWAY:port+1``, docker's
    second mirror."""

    enabled: bool = True
    port: int = REGISTRY_PORT
    upstream: str | None = None

    @property
    def cache_port(self) -> int:
        return self.port + 1


@dataclass(frozen=True)
class NodeSpec:
    """One node as configured: its name, role, address and fleet metadata."""

    index: int  # 1-based
    name: str
    role: Role
    ip: str
    mac: str
    metadata: tuple[tuple[str, str], ...]
    cloud_config: tuple[Path, ...]  # per-node extra cloud-config fragments

    @property
    def metadata_string(self) -> str:
        """fleet's ``key=value,key=value`` form."""
        return ",".join(f"{key}={value}" for key, value in self.metadata)

    @property
    def is_member(self) -> bool:
        """A core node: it runs an etcd member (a worker runs etcd's proxies instead)."""
        return self.role == "core"


@dataclass(frozen=True)
class LabConfig:
    """The whole lab, validated."""

    directory: Path
    name: str
    num_instances: int
    instance_name_prefix: str
    vm_memory: int
    vm_cpus: int
    update_channel: str
    box: str
    subnet: str
    discovery: str  # local | public | static | an explicit URL
    enable_serial_logging: bool
    forwarded_ports: tuple[tuple[int, int], ...]  # (guest, host)
    etcd_members: int
    agent_ttl: str
    flannel: FlannelConfig
    etcdctl_api: int  # ETCDCTL_API on the guests and for `lab etcdctl`: 2 or 3
    cloud_config: tuple[Path, ...]  # extra fragments merged into every node
    nodes: tuple[NodeSpec, ...] = field(default=())
    # the user's own keys, authorized for core on every node beside (or instead of) lab's
    ssh_authorized_keys: tuple[str, ...] = ()
    libvirt_uri: str = DEFAULT_LIBVIRT_URI  # the hypervisor: this host or another one
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    source: Path | None = None  # the lab.yaml this came from, if any

    @property
    def state_dir(self) -> Path:
        return self.directory / STATE_DIR

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The host's address on the lab network."""
        return str(self.network.network_address + 1)

    @property
    def registry_address(self) -> str:
        """``GATEWAY:PORT``: the lab registry as the guests name it."""
        return f"{self.gateway}:{self.registry.port}"

    @property
    def members(self) -> tuple[NodeSpec, ...]:
        """The core nodes: etcd's members."""
        return tuple(node for node in self.nodes if node.is_member)

    @property
    def workers(self) -> tuple[NodeSpec, ...]:
        return tuple(node for node in self.nodes if not node.is_member)

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(node.name for node in self.nodes)
        raise ConfigError(f"no node named {name!r}", hint=f"this lab has: {known}")


@dataclass(frozen=True)
class Overrides:
    """Command-line flags; ``None`` means "not given"."""

    num_instances: int | None = None
    workers: int | None = None
    discovery: str | None = None
    vm_memory: int | None = None
    vm_cpus: int | None = None


# --- quorum -----------------------------------------------------------------


@dataclass(frozen=True)
class QuorumRow:
    size: int
    majority: int
    tolerated: int


def quorum_row(size: int) -> QuorumRow:
    majority = size // 2 + 1
    return QuorumRow(size=size, majority=majority, tolerated=size - majority)


def quorum_table(sizes: tuple[int, ...] = (1, 3, 4, 5)) -> str:
    lines = ["size  majority  failures tolerated"]
    for size in sizes:
        row = quorum_row(size)
        lines.append(f"{row.size:>4}  {row.majority:>8}  {row.tolerated:>18}")
    return "\n".join(lines)


def config_warnings(config: LabConfig) -> list[str]:
    """Things that are allowed but probably not what the user wants."""
    warnings = []
    members = len(config.members)
    if members > 1 and members % 2 == 0:
        row = quorum_row(members)
        smaller = quorum_row(members - 1)
        warnings.append(
            f"{members} etcd members tolerate {row.tolerated} failure(s), the same as "
            f"{members - 1} members ({smaller.tolerated}); an odd member count is "
            "recommended.\n" + quorum_table()
        )
    return warnings


def topology_line(config: LabConfig) -> str:
    """One line for ``lab up``'s summary: how many core nodes and workers, and why."""
    core, workers = len(config.members), len(config.workers)
    line = f"topology: {core} core node(s) run etcd members, {workers} worker(s) run etcd's proxies"
    if (
        workers
        and config.num_instances > ALL_CORE_UP_TO
        and core == default_core_size(config.num_instances)
    ):
        line += (
            f" (the default beyond {ALL_CORE_UP_TO} nodes: an odd core of 3 up to 9 nodes, "
            "5 from 10; set workers or etcd_members to choose)"
        )
    return line


# --- naming -----------------------------------------------------------------


def default_lab_name(directory: Path) -> str:
    """A libvirt-safe name unique to the lab directory: ``<dirname>-<hash6>``."""
    resolved = directory.resolve()
    stem = re.sub(r"[^a-z0-9-]+", "-", resolved.name.lower()).strip("-")[:16] or "lab"
    if not stem[0].isalpha():
        stem = f"lab-{stem}"[:16]
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:6]
    return f"{stem}-{digest}"


# /24s of 192.168 that other tools on a libvirt host take by default: vagrant-libvirt's
# management network (121) and libvirt's own network "default" (122)
TAKEN_BY_DEFAULT = frozenset({121, 122})


def default_subnet(name: str) -> str:
    """A /24 in 192.168.100-199 chosen from the lab name, so labs rarely collide, and never
    one of :data:`TAKEN_BY_DEFAULT` (a name landing there moves two up)."""
    third = 100 + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100
    while third in TAKEN_BY_DEFAULT:
        third += 2
    return f"192.168.{third}.0/24"


def node_mac(lab_name: str, index: int) -> str:
    """A stable MAC in qemu's 52:54:00 range: two bytes from the lab name, then the node index.

    The index as the last byte keeps a lab's MACs distinct (at most MAX_NODES < 256).
    """
    digest = hashlib.sha256(lab_name.encode()).digest()
    return f"52:54:00:{digest[0]:02x}:{digest[1]:02x}:{index:02x}"


# --- loading ----------------------------------------------------------------

_TOP_KEYS: dict[str, str] = {
    "name": "str",
    "num_instances": "int",
    "instance_name_prefix": "str",
    "vm_memory": "int",
    "vm_cpus": "int",
    "update_channel": "str",
    "box": "str",
    "subnet": "str",
    "discovery": "str",
    "enable_serial_logging": "bool",
    "forwarded_ports": "mapping",
    "etcd_members": "int",
    "workers": "int",
    "etcdctl_api": "int",
    "agent_ttl": "str",
    "flannel": "mapping",
    "registry": "mapping",
    "cloud_config": "list",
    "libvirt_uri": "str",
    "metadata": "metadata",
    "nodes": "mapping",
    "ssh_authorized_keys": "list",
}
_NODE_KEYS: dict[str, str] = {
    "role": "str",
    "metadata": "metadata",
    "cloud_config": "list",
    "ip": "str",
}
_FLANNEL_KEYS: dict[str, str] = {"enabled": "bool", "network": "str", "backend": "str"}
_REGISTRY_KEYS: dict[str, str] = {"enabled": "bool", "port": "int", "upstream": "str?"}

_DEFAULTS: dict[str, Any] = {
    "num_instances": 3,
    "instance_name_prefix": "core",
    "vm_memory": 768,
    "vm_cpus": 1,
    "update_channel": "stable",
    "box": "default",
    "discovery": "local",
    "enable_serial_logging": True,
    "agent_ttl": "30s",
    "etcdctl_api": 3,
}


class _Loader:
    """Validates one raw mapping; every error names the file and key path."""

    def __init__(self, source: Path | None) -> None:
        self.source = source

    def fail(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, path=str(self.source) if self.source else None, key=key, hint=hint
        )

    def check_keys(self, raw: Mapping[str, Any], allowed: Mapping[str, str], prefix: str) -> None:
        for key in raw:
            if not isinstance(key, str) or key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
                )
                raise self.fail(f"{prefix}{key}", "unknown key", hint)
            self.check_type(f"{prefix}{key}", raw[key], allowed[key])

    def check_type(self, key: str, value: Any, kind: str) -> None:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "mapping": isinstance(value, dict),
            "list": isinstance(value, list),
            "metadata": isinstance(value, dict | str),
            "str?": value is None or isinstance(value, str),
        }[kind]
        if not ok:
            want = {
                "metadata": "a mapping or a 'key=value,key=value' string",
                "str?": "a string or null",
            }.get(kind, kind)
            raise self.fail(key, f"wrong type: expected {want}, got {type(value).__name__}")

    def metadata(self, key: str, value: Any) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        if isinstance(value, str):
            for item in filter(None, (part.strip() for part in value.split(","))):
                name, sep, val = item.partition("=")
                if not sep:
                    raise self.fail(key, f"metadata entry {item!r} is not key=value")
                pairs.append((name.strip(), val.strip()))
        else:
            pairs = [(str(k), str(v)) for k, v in value.items()]
        for name, val in pairs:
            if not _META_KEY_RE.match(name) or not val or "," in val or "=" in val:
                raise self.fail(
                    key,
                    f"invalid metadata {name}={val!r}",
                    "keys and values are non-empty and contain no ',' or '='",
                )
        return tuple(sorted(pairs))

    def paths(self, key: str, value: list[Any], base: Path) -> tuple[Path, ...]:
        out = []
        for position, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{key}[{position}]", "expected a file path")
            path = (base / item).resolve()
            if not path.is_file():
                raise self.fail(f"{key}[{position}]", f"file not found: {path}")
            out.append(path)
        return tuple(out)


def read_yaml_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", path=str(path), key=where) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings at the top level", path=str(path))
    return data


def load_config(
    directory: Path,
    overrides: Overrides | None = None,
    config_file: Path | None = None,
) -> LabConfig:
    """Load ``lab.yaml`` (or ``config_file``) from ``directory`` and apply flags."""
    directory = directory.resolve()
    source = config_file.resolve() if config_file else directory / CONFIG_FILE
    if config_file is not None and not source.is_file():
        raise ConfigError("config file not found", path=str(source))
    raw = read_yaml_file(source) if source.is_file() else {}
    return build_config(raw, directory, overrides or Overrides(), source if raw else None)


def build_config(
    raw: Mapping[str, Any],
    directory: Path,
    overrides: Overrides,
    source: Path | None = None,
) -> LabConfig:
    loader = _Loader(source)
    loader.check_keys(raw, _TOP_KEYS, "")
    base = source.parent if source else directory
    merged: dict[str, Any] = {**_DEFAULTS, **raw}
    for key in ("num_instances", "workers", "discovery", "vm_memory", "vm_cpus"):
        value = getattr(overrides, key)
        if value is not None:
            merged[key] = value

    name = merged.get("name") or default_lab_name(directory)
    if not _NAME_RE.match(name):
        raise loader.fail(
            "name", f"invalid lab name {name!r}", "use lowercase letters, digits, '-'"
        )

    count = merged["num_instances"]
    if not 1 <= count <= MAX_NODES:
        raise loader.fail(
            "num_instances",
            f"number of nodes must be between 1 and {MAX_NODES}, got {count}",
            "use --nodes 1 or more (3 or 5 for a fault-tolerant etcd)",
        )
    if merged["vm_memory"] < MIN_MEMORY_MB:
        raise loader.fail(
            "vm_memory",
            f"{merged['vm_memory']} MiB is below the minimum of {MIN_MEMORY_MB} MiB",
            "etcd, fleet and docker need at least 384 MiB; 768 is the default",
        )
    if merged["vm_cpus"] < 1:
        raise loader.fail("vm_cpus", "must be at least 1")
    if not merged["enable_serial_logging"]:
        raise loader.fail(
            "enable_serial_logging",
            "lab reads each node's serial console to pin its SSH host keys and to save "
            "logs on failure, so it cannot be turned off",
            "remove the key (the consoles go to .lab/logs/<node>.log)",
        )
    prefix = merged["instance_name_prefix"]
    if not re.match(r"^[a-z][a-z0-9-]{0,20}$", prefix):
        raise loader.fail(
            "instance_name_prefix", f"invalid prefix {prefix!r}", "lowercase letters, digits, '-'"
        )
    if merged["update_channel"] not in UPDATE_CHANNELS:
        raise loader.fail(
            "update_channel",
            f"unknown channel {merged['update_channel']!r}",
            f"one of: {', '.join(UPDATE_CHANNELS)}",
        )

    subnet = _subnet(loader, merged.get("subnet") or default_subnet(name))
    discovery = _discovery(loader, merged["discovery"])
    ports = _forwarded_ports(loader, merged.get("forwarded_ports") or {})
    members = _core_size(loader, raw, overrides, merged, count)
    if merged["etcdctl_api"] not in ETCDCTL_APIS:
        raise loader.fail(
            "etcdctl_api",
            f"etcdctl has no API version {merged['etcdctl_api']}",
            "2 (etcdctl set/get/ls/mk/rm/watch on the v2 keyspace, as in CoreOS tutorials) "
            "or 3 (etcdctl put/get/del/watch on the v3 keyspace; the default)",
        )
    if not re.match(r"^\d+(ms|s|m)$", merged["agent_ttl"]):
        raise loader.fail("agent_ttl", f"invalid duration {merged['agent_ttl']!r}", "e.g. 30s")

    flannel = _flannel(loader, merged.get("flannel") or {}, subnet)
    registry = _registry(loader, merged.get("registry") or {})

    common_fragments = loader.paths("cloud_config", merged.get("cloud_config") or [], base)
    default_meta = loader.metadata("metadata", merged.get("metadata") or {})
    nodes = _nodes(loader, merged, name, prefix, count, members, subnet, default_meta, base)
    authorized = _authorized_keys(loader, merged.get("ssh_authorized_keys") or [])

    return LabConfig(
        directory=directory,
        name=name,
        num_instances=count,
        instance_name_prefix=prefix,
        vm_memory=merged["vm_memory"],
        vm_cpus=merged["vm_cpus"],
        update_channel=merged["update_channel"],
        box=merged["box"],
        subnet=str(subnet),
        discovery=discovery,
        enable_serial_logging=merged["enable_serial_logging"],
        forwarded_ports=ports,
        etcd_members=sum(1 for node in nodes if node.is_member),
        agent_ttl=merged["agent_ttl"],
        flannel=flannel,
        etcdctl_api=merged["etcdctl_api"],
        cloud_config=common_fragments,
        nodes=nodes,
        libvirt_uri=_libvirt_uri(loader, merged.get("libvirt_uri")),
        registry=registry,
        source=source,
        ssh_authorized_keys=authorized,
    )


def default_core_size(count: int) -> int:
    """How many of ``count`` nodes are core (etcd members) when neither ``workers`` nor
    ``etcd_members`` says: all of them up to five nodes (so ``--nodes 3`` is three core
    nodes, as before); beyond five an odd core, three up to nine nodes and five from
    ten, as etcd advises (an odd size, at most seven), the rest workers."""
    for smallest, core in CORE_SIZES:
        if count >= smallest:
            return core
    return count


def _core_size(
    loader: _Loader,
    raw: Mapping[str, Any],
    overrides: Overrides,
    merged: Mapping[str, Any],
    count: int,
) -> int:
    """The number of core nodes: from ``--workers`` / ``workers`` (nodes minus workers),
    else ``etcd_members``, else :func:`default_core_size`."""
    workers: int | None = merged.get("workers")
    members: int | None = raw.get("etcd_members")
    if workers is not None:
        given = "--workers" if overrides.workers is not None else "workers"
        fix = f"with {count} nodes use at most {count - 1} workers, or more nodes (--nodes)"
        if workers < 0:
            raise loader.fail("workers", f"{given} must be 0 or more, got {workers}", fix)
        if workers >= count:
            raise loader.fail(
                "workers",
                f"{given} {workers} on {count} node(s) leaves no core node to run etcd",
                fix,
            )
        core = count - workers
        if members is not None and overrides.workers is None and members != core:
            raise loader.fail(
                "etcd_members",
                f"{members} etcd members disagree with workers: {workers} on {count} nodes "
                f"({core} core nodes)",
                "set only one of etcd_members and workers",
            )
        return core
    if members is None:
        return default_core_size(count)
    if not 1 <= members <= count:
        raise loader.fail(
            "etcd_members",
            f"must be between 1 and the number of nodes ({count}), got {members}",
            f"use etcd_members: {min(max(members, 1), count)}, or more nodes (--nodes)",
        )
    return members


def _flannel(
    loader: _Loader, flannel_raw: Mapping[str, Any], subnet: ipaddress.IPv4Network
) -> FlannelConfig:
    """lab.yaml's ``flannel``: a private network with room for a subnet per node, away
    from the lab network, and a backend the box's flanneld carries."""
    loader.check_keys(flannel_raw, _FLANNEL_KEYS, "flannel.")
    flannel = FlannelConfig(**flannel_raw)
    try:
        overlay = ipaddress.IPv4Network(flannel.network)
    except ValueError as exc:
        raise loader.fail("flannel.network", str(exc), "e.g. 10.1.0.0/16") from exc
    if overlay.prefixlen > 28:
        raise loader.fail(
            "flannel.network", f"{overlay} is too small for a subnet per node", "e.g. 10.1.0.0/16"
        )
    if overlay.overlaps(subnet):
        raise loader.fail(
            "flannel.network",
            f"{overlay} overlaps the lab network {subnet}",
            "pick another private range, e.g. 10.1.0.0/16",
        )
    if flannel.backend not in FLANNEL_BACKENDS:
        raise loader.fail(
            "flannel.backend",
            f"unknown backend {flannel.backend!r}",
            f"one of: {', '.join(FLANNEL_BACKENDS)}",
        )
    return flannel


def _registry(loader: _Loader, raw: Mapping[str, Any]) -> RegistryConfig:
    """lab.yaml's ``registry``: a port (and the cache's, one above) that is not the
    discovery service's on the same gateway, and an upstream that is an http(s) URL."""
    loader.check_keys(raw, _REGISTRY_KEYS, "registry.")
    registry = RegistryConfig(**raw)
    last = registry.cache_port if registry.upstream else registry.port
    if registry.port < 1024 or last > 65535:
        raise loader.fail(
            "registry.port",
            f"port {registry.port} is out of range",
            f"a port from 1024 to {65535 if not registry.upstream else 65534} "
            f"(default {REGISTRY_PORT})",
        )
    if registry.port <= DISCOVERY_PORT <= last:
        raise loader.fail(
            "registry.port",
            f"port {DISCOVERY_PORT} is the discovery service's on the lab's gateway",
            f"choose another port, e.g. {REGISTRY_PORT}",
        )
    if registry.upstream is not None and not re.match(
        r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$", registry.upstream
    ):
        raise loader.fail(
            "registry.upstream",
            f"{registry.upstream!r} is not a registry URL",
            "e.g. https://registry-1.docker.io (Docker Hub), or null for no pull-through cache",
        )
    return registry


def _libvirt_uri(loader: _Loader, value: str | None) -> str:
    """lab.yaml's ``libvirt_uri``, else libvirt's own ``LIBVIRT_DEFAULT_URI``, else this host."""
    uri = value or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_LIBVIRT_URI
    if re.match(r"^[a-z][a-z0-9+]*://[^\s]*/[^\s]*$", uri):
        return uri
    hint = "e.g. qemu:///system, or qemu+ssh://root@host/system for another host"
    if value:
        raise loader.fail("libvirt_uri", f"{uri!r} is not a libvirt URI", hint)
    raise ConfigError(f"LIBVIRT_DEFAULT_URI: {uri!r} is not a libvirt URI", hint=hint)


def _subnet(loader: _Loader, value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise loader.fail(
            "subnet", f"invalid subnet {value!r}: {exc}", "e.g. 192.168.58.0/24"
        ) from exc
    if not network.is_private:
        raise loader.fail("subnet", f"{network} is not a private range", "use an RFC 1918 range")
    return network


_KEY_TYPES = ("ssh-", "ecdsa-", "sk-")


def _authorized_keys(loader: _Loader, value: list[Any]) -> tuple[str, ...]:
    """lab.yaml's ``ssh_authorized_keys``: OpenSSH public key lines (``ssh-ed25519 AAAA... me``)."""
    keys = []
    for position, item in enumerate(value):
        key = f"ssh_authorized_keys[{position}]"
        if not isinstance(item, str):
            raise loader.fail(key, f"expected a public key line, got {type(item).__name__}")
        words = item.strip().split()
        if len(words) < 2 or not words[0].startswith(_KEY_TYPES) or "\n" in item.strip():
            raise loader.fail(
                key,
                f"not an OpenSSH public key: {item[:40]!r}",
                "one line as in ~/.ssh/id_ed25519.pub: 'ssh-ed25519 AAAA... comment'",
            )
        keys.append(item.strip())
    return tuple(keys)


def _node_ip(
    loader: _Loader,
    name: str,
    own: Mapping[str, Any],
    index: int,
    subnet: ipaddress.IPv4Network,
) -> str:
    """A node's address: ``nodes.<name>.ip`` when given, else .101 upward by index.

    Either way one of the subnet's guest addresses: not the network or broadcast
    address, not the gateway (.1, the host's on a lab network)."""
    gateway = subnet.network_address + 1
    if "ip" not in own:
        address = subnet.network_address + FIRST_HOST + index - 1
        if address >= subnet.broadcast_address:
            raise loader.fail(
                "subnet",
                f"{subnet} is too small for {name} at .{FIRST_HOST + index - 1} "
                f"(nodes sit at .{FIRST_HOST} upward unless nodes.<name>.ip says otherwise)",
                "use a /24 or larger for up to 154 nodes, a /23 beyond that, "
                "or give each node its ip",
            )
        return str(address)
    key = f"nodes.{name}.ip"
    try:
        address = ipaddress.IPv4Address(own["ip"])
    except ValueError as exc:
        raise loader.fail(key, f"invalid address {own['ip']!r}", "e.g. 10.0.0.11") from exc
    if address not in subnet:
        raise loader.fail(
            key,
            f"{address} is outside the lab's subnet {subnet}",
            "set subnet to the network the nodes are on, e.g. subnet: 10.0.0.0/24",
        )
    if address in (subnet.network_address, subnet.broadcast_address, gateway):
        what = "the gateway (the host's address)" if address == gateway else "not a host address"
        raise loader.fail(key, f"{address} is {what} of {subnet}", "pick another address")
    return str(address)


def _discovery(loader: _Loader, value: str) -> str:
    if value in DISCOVERY_MODES:
        return value
    if re.match(r"^https?://[^\s/]+/\S+$", value):
        return value
    raise loader.fail(
        "discovery",
        f"unknown discovery mode {value!r}",
        "use local, public, static, or a discovery URL (http://host/path/TOKEN)",
    )


def _forwarded_ports(loader: _Loader, raw: Mapping[Any, Any]) -> tuple[tuple[int, int], ...]:
    out = []
    for guest, host in raw.items():
        if not (isinstance(guest, int) and isinstance(host, int)) or not (
            0 < guest < 65536 and 0 < host < 65536
        ):
            raise loader.fail(
                f"forwarded_ports.{guest}",
                "expected guest_port: host_port with port numbers",
                "e.g. forwarded_ports: {80: 8080}",
            )
        out.append((guest, host))
    return tuple(sorted(out))


def _nodes(
    loader: _Loader,
    merged: Mapping[str, Any],
    lab_name: str,
    prefix: str,
    count: int,
    members: int,
    subnet: ipaddress.IPv4Network,
    default_meta: tuple[tuple[str, str], ...],
    base: Path,
) -> tuple[NodeSpec, ...]:
    names = [f"{prefix}-{index:02d}" for index in range(1, count + 1)]
    per_node: Mapping[str, Any] = merged.get("nodes") or {}
    for key, value in per_node.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"nodes are {names[0]}..{names[-1]}"
            raise loader.fail(f"nodes.{key}", "no such node in this lab", hint)
        loader.check_type(f"nodes.{key}", value, "mapping")
        loader.check_keys(value, _NODE_KEYS, f"nodes.{key}.")

    nodes = []
    taken: dict[str, str] = {}  # address -> node
    for index, name in enumerate(names, start=1):
        own = per_node.get(name) or {}
        role = own.get("role", "core" if index <= members else "worker")
        if role not in ROLES:
            raise loader.fail(
                f"nodes.{name}.role",
                f"unknown role {role!r}",
                "core (runs an etcd member) or worker (runs etcd's proxies)",
            )
        meta = (
            loader.metadata(f"nodes.{name}.metadata", own["metadata"]) if "metadata" in own else ()
        )
        # the role as fleet metadata, unless the user's metadata sets a role of its own
        merged_meta = {ROLE_METADATA_KEY: role} | dict(default_meta) | dict(meta)
        ip = _node_ip(loader, name, own, index, subnet)
        if ip in taken:
            raise loader.fail(
                f"nodes.{name}.ip",
                f"{ip} is {taken[ip]}'s address too",
                "every node needs its own address",
            )
        taken[ip] = name
        nodes.append(
            NodeSpec(
                index=index,
                name=name,
                role=role,
                ip=ip,
                mac=node_mac(lab_name, index),
                metadata=tuple(sorted(merged_meta.items())),
                cloud_config=loader.paths(
                    f"nodes.{name}.cloud_config", own.get("cloud_config") or [], base
                ),
            )
        )
    if not any(node.is_member for node in nodes):
        raise loader.fail(
            "nodes",
            "every node is a worker: at least one must be core (run an etcd member)",
            "set role: core on one node, or remove the roles",
        )
    return tuple(nodes)
