"""flanneld's two configurations, parsed and validated before anything is touched.

* The network config, JSON at ``<etcd-prefix>/config`` (flannel's
  pkg/subnet/config.go ``ParseConfig`` and ``CheckNetworkConfig``): ``Network``,
  ``SubnetLen`` (24, or the Network's prefix + 2 when the Network is smaller than
  /22), ``SubnetMin``/``SubnetMax`` (the second and the last subnet by default)
  and ``Backend`` (``Type`` vxlan by default, as in flannel's current docs).
* flanneld's options: command-line flags, each also readable as ``FLANNELD_<NAME>``
  (flannel's ``flagutil.SetFlagsFromEnv(..., "FLANNELD")``); a flag given on the
  command line wins over its variable.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.guest.flannel.errors import ConfigError

DEFAULT_BACKEND = "vxlan"
BACKENDS = ("vxlan", "host-gw", "udp")
VXLAN_DEFAULT_PORT = 8472  # the kernel's default when flannel's Port is 0
UDP_DEFAULT_PORT = 8285
SUBNET_TTL = 24 * 60 * 60  # flannel's subnetTTL


@dataclass(frozen=True)
class NetworkConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Address
    subnet_max: ipaddress.IPv4Address
    backend_type: str
    vni: int = 1
    port: int = 0  # vxlan: 0 = the kernel's default (8472); udp: 8285 by default
    direct_routing: bool = False
    backend: Mapping[str, Any] = field(default_factory=dict)

    @property
    def subnet_size(self) -> int:
        return 1 << (32 - self.subnet_len)


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    return value


def _address(value: object, name: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ConfigError(f"{name} is not an IPv4 address: {value!r}") from None


def parse_network(text: str) -> ipaddress.IPv4Network:
    """A CIDR as flannel reads one: host bits are dropped (10.1.2.3/16 is 10.1.0.0/16)."""
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ConfigError(
            f"Network is not an IPv4 CIDR: {text!r}", hint='example: "Network": "10.1.0.0/16"'
        ) from None


def parse_config(text: str) -> NetworkConfig:
    """Parse and check the network config JSON; raises :class:`ConfigError` saying why."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the network config is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("the network config must be a JSON object")
    if raw.get("EnableIPv6") or raw.get("IPv6Network"):
        raise ConfigError("IPv6 networks are not supported by this flanneld")
    if raw.get("EnableIPv4", True) is False:
        raise ConfigError("EnableIPv4 is false: this flanneld only runs IPv4 networks")
    if not raw.get("Network"):
        raise ConfigError("please define a correct Network parameter in the flannel config")
    network = parse_network(str(raw["Network"]))
    subnet_len = _subnet_len(raw, network)
    subnet_min, subnet_max = _bounds(raw, network, subnet_len)
    return NetworkConfig(network, subnet_len, subnet_min, subnet_max, **_backend(raw))


def _subnet_len(raw: Mapping[str, Any], network: ipaddress.IPv4Network) -> int:
    subnet_len = _int(raw.get("SubnetLen", 0), "SubnetLen")
    if subnet_len > 0:
        if subnet_len > 30:
            raise ConfigError("SubnetLen must be less than /31")
        if subnet_len < network.prefixlen + 2:
            raise ConfigError(
                f"network {network} must be able to accommodate at least four subnets "
                f"(SubnetLen {subnet_len} is less than {network.prefixlen + 2})"
            )
        return subnet_len
    if network.prefixlen > 28:
        raise ConfigError("network is too small. Minimum useful network prefix is /28")
    return 24 if network.prefixlen <= 22 else network.prefixlen + 2


def _bounds(
    raw: Mapping[str, Any], network: ipaddress.IPv4Network, subnet_len: int
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """SubnetMin and SubnetMax: by default the second and the last subnet of the Network."""
    size = 1 << (32 - subnet_len)
    mask = (0xFFFFFFFF << (32 - subnet_len)) & 0xFFFFFFFF
    bounds = {
        "SubnetMin": ipaddress.IPv4Address(int(network.network_address) + size),
        "SubnetMax": ipaddress.IPv4Address(int(network.broadcast_address) + 1 - size),
    }
    for name in bounds:
        if raw.get(name):
            value = _address(raw[name], name)
            if value not in network:
                raise ConfigError(f"{name} is not in the range of the Network ({network})")
            if int(value) & mask != int(value):
                raise ConfigError(f"{name} is not on a SubnetLen boundary: {value}")
            bounds[name] = value
    if bounds["SubnetMin"] > bounds["SubnetMax"]:
        raise ConfigError(
            f"SubnetMin {bounds['SubnetMin']} is above SubnetMax {bounds['SubnetMax']}"
        )
    return bounds["SubnetMin"], bounds["SubnetMax"]


def _backend(raw: Mapping[str, Any]) -> dict[str, Any]:
    backend = raw.get("Backend") or {}
    if not isinstance(backend, dict):
        raise ConfigError('Backend must be a JSON object, e.g. {"Type": "vxlan"}')
    kind = backend.get("Type") or DEFAULT_BACKEND
    if kind not in BACKENDS:
        raise ConfigError(
            f"unknown backend type: {kind!r}", hint=f"supported: {', '.join(BACKENDS)}"
        )
    default_port = UDP_DEFAULT_PORT if kind == "udp" else 0
    port = _int(backend.get("Port", default_port), "Backend.Port")
    if not 0 <= port <= 65535:
        raise ConfigError(f"Backend.Port {port} is not a UDP port")
    vni = _int(backend.get("VNI", 1), "Backend.VNI")
    if not 0 <= vni < 1 << 24:
        raise ConfigError(f"Backend.VNI {vni} does not fit in 24 bits")
    direct = backend.get("DirectRouting", False)
    if not isinstance(direct, bool):
        raise ConfigError("Backend.DirectRouting must be true or false")
    return {
        "backend_type": kind,
        "vni": vni,
        "port": port,
        "direct_routing": direct,
        "backend": dict(backend),
    }


# -- flanneld's options ------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    etcd_endpoints: tuple[str, ...] = ("http://127.0.0.1:4001", "http://127.0.0.1:2379")
    etcd_prefix: str = "/coreos.com/network"
    etcd_keyfile: str = ""
    etcd_certfile: str = ""
    etcd_cafile: str = ""
    etcd_username: str = ""
    etcd_password: str = ""
    ifaces: tuple[str, ...] = ()
    public_ip: str = ""
    ip_masq: bool = False
    iptables_forward_rules: bool = True
    subnet_file: str = "/run/flannel/subnet.env"
    renew_margin: int = 60  # minutes, as flannel's --subnet-lease-renew-margin
    lease_ttl: int = SUBNET_TTL  # seconds; hidden, for tests
    docker_opts_file: str = "/run/flannel/flannel_docker_opts.env"
    verbosity: int = 0
    version: bool = False


# (flag, Options field, kind, help); every flag is also FLANNELD_<FLAG upper, - as _>.
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("etcd-endpoints", "etcd_endpoints", "list", "a comma-delimited list of etcd endpoints"),
    ("etcd-prefix", "etcd_prefix", "str", "etcd prefix"),
    ("etcd-keyfile", "etcd_keyfile", "str", "SSL key file used to secure etcd communication"),
    ("etcd-certfile", "etcd_certfile", "str", "SSL certification file for etcd"),
    ("etcd-cafile", "etcd_cafile", "str", "SSL Certificate Authority file for etcd"),
    ("etcd-username", "etcd_username", "str", "username for BasicAuth to etcd"),
    ("etcd-password", "etcd_password", "str", "password for BasicAuth to etcd"),
    ("iface", "ifaces", "ifaces", "interface to use (IP or name) for inter-host communication"),
    ("public-ip", "public_ip", "str", "IP accessible by other nodes for inter-host communication"),
    ("ip-masq", "ip_masq", "bool", "setup IP masquerade rule for traffic destined outside"),
    (
        "iptables-forward-rules",
        "iptables_forward_rules",
        "bool",
        "add default accept rules to FORWARD chain in iptables",
    ),
    ("subnet-file", "subnet_file", "str", "filename where env variables will be written to"),
    ("subnet-lease-renew-margin", "renew_margin", "int", "subnet lease renewal margin, minutes"),
    ("subnet-lease-ttl", "lease_ttl", "int", argparse.SUPPRESS),
    ("docker-opts-file", "docker_opts_file", "str", argparse.SUPPRESS),
    ("v", "verbosity", "int", "log level for V logs"),
)


def parse_bool(text: str, name: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ConfigError(f"invalid boolean value {text!r} for {name}")


def _convert(kind: str, text: str, name: str, current: object) -> object:
    if kind == "list":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == "ifaces":  # repeatable on the command line; comma-separated in the variable
        previous = current if isinstance(current, tuple) else ()
        return (*previous, *(part.strip() for part in text.split(",") if part.strip()))
    if kind == "bool":
        return parse_bool(text, name)
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"invalid value {text!r} for {name}: not an integer") from None
    return text


def parse_options(argv: list[str], environ: Mapping[str, str]) -> Options:
    """Flags as Go's flag package takes them (``-name``, ``--name``, ``--name=value``)."""
    parser = argparse.ArgumentParser(prog="flanneld", allow_abbrev=False, add_help=True)
    for flag, dest, kind, text in FLAGS:
        names = [f"-{flag}", f"--{flag}"]
        if kind == "bool":
            parser.add_argument(*names, dest=dest, nargs="?", const="true", help=text)
        else:
            action = "append" if kind == "ifaces" else "store"
            parser.add_argument(*names, dest=dest, action=action, help=text)
    parser.add_argument("-version", "--version", dest="version", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:
            raise
        raise ConfigError("invalid command line (see flanneld --help)") from None
    values: dict[str, object] = {"version": bool(args.version)}
    defaults = Options()
    for flag, dest, kind, _ in FLAGS:
        given = getattr(args, dest)
        env_name = "FLANNELD_" + flag.upper().replace("-", "_")
        if given is None and environ.get(env_name, "") != "":
            given = [environ[env_name]] if kind == "ifaces" else environ[env_name]
        if given is None:
            continue
        if kind == "ifaces":
            result: object = ()
            for item in given:
                result = _convert(kind, item, f"-{flag}", result)
            values[dest] = result
        else:
            values[dest] = _convert(kind, given, f"-{flag}", getattr(defaults, dest))
    options = Options(**values)  # type: ignore[arg-type]
    check_options(options)
    return options


def check_options(options: Options) -> None:
    if not options.etcd_endpoints:
        raise ConfigError("no etcd endpoints", hint="set -etcd-endpoints")
    if not options.etcd_prefix.startswith("/"):
        raise ConfigError(f"-etcd-prefix must start with '/': {options.etcd_prefix!r}")
    if options.public_ip:
        try:
            ipaddress.IPv4Address(options.public_ip)
        except ValueError:
            raise ConfigError(f"-public-ip is not an IPv4 address: {options.public_ip!r}") from None
    if options.renew_margin < 1:
        raise ConfigError("-subnet-lease-renew-margin must be at least 1 (minute)")
    if options.lease_ttl < 5:
        raise ConfigError("-subnet-lease-ttl must be at least 5 (seconds)")
