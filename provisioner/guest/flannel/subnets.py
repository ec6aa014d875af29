"""Subnet leases as data: keys, values, the choice of a subnet and the files written from one.

Pure functions only (flannel's pkg/subnet/subnet.go and the allocation in
pkg/subnet/etcd/local_manager.go): the etcd side lives in :mod:`.registry`.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.guest.flannel.config import NetworkConfig
from provisioner.guest.flannel.errors import LeaseError

KEY_RE = re.compile(r"^(\d+\.\d+\.\d+\.\d+)-(\d+)$")
#: flannel collects at most this many free subnets and picks one at random.
CANDIDATES = 100


@dataclass(frozen=True)
class Lease:
    subnet: ipaddress.IPv4Network
    public_ip: str
    backend_type: str = ""
    backend_data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def vtep_mac(self) -> str:
        return str(self.backend_data.get("VtepMAC", "")).lower()


def subnet_key(subnet: ipaddress.IPv4Network) -> str:
    """``10.1.19.0-24``: the last part of a lease's key (flannel's MakeSubnetKey)."""
    return f"{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key(name: str) -> ipaddress.IPv4Network | None:
    match = KEY_RE.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    try:
        return ipaddress.IPv4Network(f"{match[1]}/{match[2]}")
    except ValueError:
        return None


def lease_value(public_ip: str, backend_type: str, backend_data: Mapping[str, Any]) -> str:
    """The JSON LeaseAttrs flannel stores (fields in flannel's order)."""
    attrs: dict[str, Any] = {"PublicIP": public_ip, "BackendType": backend_type}
    if backend_data:
        attrs["BackendData"] = dict(backend_data)
    return json.dumps(attrs, separators=(",", ":"))


def parse_lease(key: str, value: str) -> Lease | None:
    """A lease from one key-value under ``<prefix>/subnets/``; None if it is not one."""
    subnet = parse_subnet_key(key)
    if subnet is None:
        return None
    try:
        attrs = json.loads(value)
    except ValueError:
        return None
    if not isinstance(attrs, dict):
        return None
    data = attrs.get("BackendData")
    return Lease(
        subnet=subnet,
        public_ip=str(attrs.get("PublicIP", "")),
        backend_type=str(attrs.get("BackendType", "")),
        backend_data=data if isinstance(data, dict) else {},
    )


def compatible(config: NetworkConfig, subnet: ipaddress.IPv4Network) -> bool:
    """flannel's isSubnetConfigCompat: inside [SubnetMin, SubnetMax] with the configured length."""
    return (
        subnet.prefixlen == config.subnet_len
        and subnet.subnet_of(config.network)
        and config.subnet_min <= subnet.network_address <= config.subnet_max
    )


def free_subnets(
    config: NetworkConfig, taken: Iterable[ipaddress.IPv4Network], limit: int = CANDIDATES
) -> list[ipaddress.IPv4Network]:
    """Up to ``limit`` subnets from SubnetMin upwards that overlap no taken one."""
    used = sorted(taken, key=lambda net: int(net.network_address))
    size = config.subnet_size
    out: list[ipaddress.IPv4Network] = []
    address = int(config.subnet_min)
    while address <= int(config.subnet_max) and len(out) < limit:
        candidate = ipaddress.IPv4Network((address, config.subnet_len))
        if not any(candidate.overlaps(net) for net in used):
            out.append(candidate)
        address += size
    return out


def choose_subnet(
    config: NetworkConfig,
    leases: Iterable[Lease],
    previous: ipaddress.IPv4Network | None = None,
    rng: random.Random | None = None,
) -> ipaddress.IPv4Network:
    """The subnet to try: the previous one if still free and compatible, else a random free one."""
    taken = [lease.subnet for lease in leases]
    if (
        previous is not None
        and compatible(config, previous)
        and not any(previous.overlaps(net) for net in taken)
    ):
        return previous
    free = free_subnets(config, taken)
    if not free:
        raise LeaseError(
            f"out of subnets: every /{config.subnet_len} between {config.subnet_min} and "
            f"{config.subnet_max} in {config.network} is leased",
            hint="widen Network or SubnetMin/SubnetMax, or remove stale leases",
        )
    return (rng or random.Random()).choice(free)  # noqa: S311 - spreading, not secrecy


def own_lease(leases: Iterable[Lease], public_ip: str) -> Lease | None:
    """The lease this node already holds (flannel's findLeaseByIP)."""
    for lease in leases:
        if lease.public_ip == public_ip:
            return lease
    return None


def first_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Interface:
    """``10.1.19.1/24``: the first usable address, as FLANNEL_SUBNET carries it."""
    return ipaddress.IPv4Interface((int(subnet.network_address) + 1, subnet.prefixlen))


def subnet_env(
    config: NetworkConfig, subnet: ipaddress.IPv4Network, mtu: int, ip_masq: bool
) -> str:
    """The text of ``subnet.env`` exactly as flannel's WriteSubnetFile writes it."""
    return (
        f"FLANNEL_NETWORK={config.network}\n"
        f"FLANNEL_SUBNET={first_address(subnet)}\n"
        f"FLANNEL_MTU={mtu}\n"
        f"FLANNEL_IPMASQ={'true' if ip_masq else 'false'}\n"
    )


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines (quotes around a value removed)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip('"')
    return out


def previous_subnet(env_text: str) -> ipaddress.IPv4Network | None:
    """The lease named by an existing subnet file's FLANNEL_SUBNET, if it parses."""
    value = parse_env(env_text).get("FLANNEL_SUBNET", "")
    try:
        return ipaddress.IPv4Interface(value).network if value else None
    except ValueError:
        return None


def docker_opts(subnet_env_text: str) -> str:
    """mk-docker-opts.sh ``-i``: one DOCKER_OPT_* variable per option, from subnet.env."""
    env = parse_env(subnet_env_text)
    masq = "false" if env.get("FLANNEL_IPMASQ") == "true" else "true"
    return (
        f'DOCKER_OPT_BIP="--bip={env["FLANNEL_SUBNET"]}"\n'
        f'DOCKER_OPT_IPMASQ="--ip-masq={masq}"\n'
        f'DOCKER_OPT_MTU="--mtu={env["FLANNEL_MTU"]}"\n'
    )


def renew_delay(ttl: int, margin_minutes: int) -> float:
    """Seconds from a grant or renewal to the next renewal: ``margin`` before expiry.

    With a TTL shorter than the margin (only in tests) renew at a third of the TTL.
    """
    delay = ttl - margin_minutes * 60
    return float(delay) if delay > 0 else ttl / 3
