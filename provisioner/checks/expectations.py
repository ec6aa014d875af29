"""What ``lab verify`` expects of a lab, as a JSON file the checks read.

The lab writes it from its config (:func:`expectations_for_lab`); the checks get
its path from the pytest option ``--lab-expectations``. Format (version 1)::

    {
      "format": 1,
      "lab": "demo-1a2b3c",
      "etcd": {"members": 3},
      "flannel": {"network": "10.1.0.0/16", "backend": "vxlan"},   # or null when off
      "nodes": [
        {
          "name": "core-01",                      # the node's Host alias in the ssh_config
          "ip": "192.168.150.101",                # the IP fleet reports for it
          "role": "core",                         # "core" runs an etcd member, "worker" its proxies
          "metadata": {"role": "core"},           # fleet metadata, exactly
          "etcd_endpoints": ["http://127.0.0.1:2379"],   # what etcdctl on the node talks to
          "units": ["etcd2.service", "fleet.service", "ssh.service", "docker.socket"]
        }
      ]
    }

Every key is required; unknown keys are refused, so a typo cannot switch a check off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from provisioner.config import ETCD_CLIENT_PORT, ETCD_LEGACY_PORT, ROLES, LabConfig, Role
from provisioner.errors import ConfigError

FORMAT = 1
CORE_UNITS = ("etcd2.service",)  # the member
WORKER_UNITS = ("etcd2.service", "etcd-gateway.service")  # the v2 proxy and the gateway
COMMON_UNITS = ("fleet.service", "ssh.service", "docker.socket")  # docker starts on first use
FLANNEL_UNITS = ("flanneld.service",)


@dataclass(frozen=True)
class NodeExpectation:
    """What one node should look like."""

    name: str
    ip: str
    role: Role
    metadata: dict[str, str] = field(default_factory=dict)
    etcd_endpoints: tuple[str, ...] = ()
    units: tuple[str, ...] = ()

    @property
    def is_member(self) -> bool:
        return self.role == "core"

    @property
    def v2_endpoints(self) -> tuple[str, ...]:
        """Where the v2 API answers on the node: its etcd endpoints, and beside one on
        etcd's client port the same host on the legacy port 4001 (a core node's member
        listens on both; a worker's v2 proxy serves 4001, its gateway 2379)."""
        client, legacy = f":{ETCD_CLIENT_PORT}", f":{ETCD_LEGACY_PORT}"
        return tuple(
            url
            for endpoint in self.etcd_endpoints
            for url in (
                (endpoint, endpoint.removesuffix(client) + legacy)
                if endpoint.endswith(client)
                else (endpoint,)
            )
        )


@dataclass(frozen=True)
class FlannelExpectation:
    """The overlay: a subnet of ``network`` per node, carried by ``backend``."""

    network: str
    backend: str


@dataclass(frozen=True)
class Expectations:
    """What the whole lab should look like."""

    lab: str
    etcd_members: int
    nodes: tuple[NodeExpectation, ...]
    flannel: FlannelExpectation | None = None

    def node(self, name: str) -> NodeExpectation:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(node.name for node in self.nodes)
        raise ConfigError(
            f"no node named {name!r} in the lab's expectations",
            hint=f"they list: {known}; run checks against those hosts",
        )


# --- building and writing -----------------------------------------------------


def expectations_for_lab(config: LabConfig) -> Expectations:
    """The expectations a lab's config implies.

    Every node talks to etcd on loopback: a core node to its member, a worker to
    its etcd gateway. Every node runs fleet and sshd and listens on docker's socket
    (docker itself starts on first use, as on CoreOS); core nodes also run etcd2 (a
    member), workers etcd2 (the v2 proxy) and etcd-gateway, and flanneld runs
    everywhere when flannel is enabled.
    """
    extra_units = FLANNEL_UNITS if config.flannel.enabled else ()
    nodes = []
    for node in config.nodes:
        nodes.append(
            NodeExpectation(
                name=node.name,
                ip=node.ip,
                role=node.role,
                metadata=dict(node.metadata),
                etcd_endpoints=(f"http://127.0.0.1:{ETCD_CLIENT_PORT}",),
                units=(CORE_UNITS if node.is_member else WORKER_UNITS) + COMMON_UNITS + extra_units,
            )
        )
    flannel = (
        FlannelExpectation(config.flannel.network, config.flannel.backend)
        if config.flannel.enabled
        else None
    )
    return Expectations(
        lab=config.name, etcd_members=len(config.members), nodes=tuple(nodes), flannel=flannel
    )


def render_expectations(expectations: Expectations) -> str:
    """The JSON text of an expectations file."""
    payload = {
        "format": FORMAT,
        "lab": expectations.lab,
        "etcd": {"members": expectations.etcd_members},
        "flannel": (
            {"network": expectations.flannel.network, "backend": expectations.flannel.backend}
            if expectations.flannel
            else None
        ),
        "nodes": [
            {
                "name": node.name,
                "ip": node.ip,
                "role": node.role,
                "metadata": dict(sorted(node.metadata.items())),
                "etcd_endpoints": list(node.etcd_endpoints),
                "units": list(node.units),
            }
            for node in expectations.nodes
        ],
    }
    return json.dumps(payload, indent=2) + "\n"


# --- reading ------------------------------------------------------------------

_TOP_KEYS = ("format", "lab", "etcd", "flannel", "nodes")
_ETCD_KEYS = ("members",)
_FLANNEL_KEYS = ("network", "backend")
_NODE_KEYS = ("name", "ip", "role", "metadata", "etcd_endpoints", "units")


class _Reader:
    """Checks raw JSON values, naming the file and key path in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(
            message,
            path=self.source,
            key=key or None,
            hint="the lab rewrites this file on `lab verify`; edit lab.yaml instead",
        )

    def mapping(self, key: str, value: Any, keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object, got {type(value).__name__}")
        prefix = f"{key}." if key else ""
        for name in value:
            if name not in keys:
                raise self.fail(f"{prefix}{name}", f"unknown key (expected one of {list(keys)})")
        for name in keys:
            if name not in value:
                raise self.fail(f"{prefix}{name}", "missing")
        return cast(Mapping[str, Any], value)

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def strings(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(key, "expected a list of strings")
        return tuple(self.string(f"{key}[{i}]", item) for i, item in enumerate(value))

    def count(self, key: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(key, "expected a whole number >= 0")
        return value

    def node(self, key: str, value: Any) -> NodeExpectation:
        raw = self.mapping(key, value, _NODE_KEYS)
        role = self.string(f"{key}.role", raw["role"])
        if role not in ROLES:
            raise self.fail(f"{key}.role", f"{role!r} is not one of {list(ROLES)}")
        metadata = raw["metadata"]
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise self.fail(f"{key}.metadata", "expected an object of strings")
        return NodeExpectation(
            name=self.string(f"{key}.name", raw["name"]),
            ip=self.string(f"{key}.ip", raw["ip"]),
            role=cast(Role, role),
            metadata=dict(metadata),
            etcd_endpoints=self.strings(f"{key}.etcd_endpoints", raw["etcd_endpoints"]),
            units=self.strings(f"{key}.units", raw["units"]),
        )


def parse_expectations(text: str, source: str = "<expectations>") -> Expectations:
    """Expectations from JSON text; ConfigError names ``source`` and the key path."""
    reader = _Reader(source)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise reader.fail("", f"not valid JSON: {exc}") from exc
    raw = reader.mapping("", data, _TOP_KEYS)
    if type(raw["format"]) is not int or raw["format"] != FORMAT:
        raise reader.fail("format", f"format {raw['format']!r} is not supported (want {FORMAT})")
    etcd = reader.mapping("etcd", raw["etcd"], _ETCD_KEYS)
    if not isinstance(raw["nodes"], list) or not raw["nodes"]:
        raise reader.fail("nodes", "expected a non-empty list of nodes")
    nodes = tuple(reader.node(f"nodes[{i}]", node) for i, node in enumerate(raw["nodes"]))
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if node.name in seen:
            raise reader.fail(f"nodes[{i}].name", f"node {node.name!r} is listed twice")
        seen.add(node.name)
    flannel = None
    if raw["flannel"] is not None:
        overlay = reader.mapping("flannel", raw["flannel"], _FLANNEL_KEYS)
        flannel = FlannelExpectation(
            network=reader.string("flannel.network", overlay["network"]),
            backend=reader.string("flannel.backend", overlay["backend"]),
        )
    return Expectations(
        lab=reader.string("lab", raw["lab"]),
        etcd_members=reader.count("etcd.members", etcd["members"]),
        nodes=nodes,
        flannel=flannel,
    )


def load_expectations(path: Path) -> Expectations:
    """Read and check an expectations file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the expectations file: {exc.strerror}",
            path=str(path),
            hint="`lab verify` writes it; pass its path with --lab-expectations",
        ) from exc
    return parse_expectations(text, str(path))
