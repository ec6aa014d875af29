"""The cloud-config key set: coreos-cloudinit's config structs as data.

Each struct lists its fields in the Go declaration order (which is the order of
the ``Environment=`` lines coreos-cloudinit writes), with the Go kind the
validator names, the environment variable a service reads, the regular
expression a value must match and the deprecation note the validator prints.
Key names use ``_``; user-data may spell them with ``-``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class T(enum.Enum):
    """Go kinds of config fields, named as the validator prints them."""

    STRING = "string"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float64"
    STRUCT = "struct"
    SLICE = "slice"


@dataclass(frozen=True)
class Type:
    """A field type: a scalar kind, a struct with fields or a slice of ``elem``."""

    kind: T
    fields: tuple[Field, ...] = ()
    elem: Type | None = None

    def human(self) -> str:
        """The type as coreos-cloudinit names it: ``string``, ``[]struct``, ..."""
        if self.kind is T.SLICE:
            assert self.elem is not None
            return "[]" + self.elem.human()
        return str(self.kind.value)

    def field(self, name: str) -> Field | None:
        """The struct field called ``name`` (``_`` spelling), if any."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        return None


@dataclass(frozen=True)
class Field:
    """One struct field."""

    name: str
    type: Type
    env: str = ""
    valid: str = ""
    deprecated: str = ""


STRING = Type(T.STRING)
BOOL = Type(T.BOOL)
INT = Type(T.INT)
FLOAT = Type(T.FLOAT)
STRINGS = Type(T.SLICE, elem=STRING)


def struct(*fields: Field) -> Type:
    """A struct type with ``fields`` in declaration order."""
    return Type(T.STRUCT, fields=fields)


def slice_of(elem: Type) -> Type:
    """A slice type."""
    return Type(T.SLICE, elem=elem)


def _env(prefix: str, name: str, typ: Type = STRING, **extra: str) -> Field:
    return Field(name, typ, env=prefix + name.upper(), **extra)


_ETCD2_ONLY = "etcd2 options no longer work for etcd"
_REMOTE_KEYS = "trying to fetch from a remote endpoint introduces too many intermittent errors"

#: Legacy etcd 0.4 options (``coreos.etcd``); mostly ``ETCD_<NAME>``.
ETCD = struct(
    _env("ETCD_", "addr"),
    _env("ETCD_", "advertise_client_urls", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "bind_addr"),
    _env("ETCD_", "ca_file"),
    _env("ETCD_", "cert_file"),
    _env("ETCD_", "cluster_active_size", INT),
    _env("ETCD_", "cluster_remove_delay", FLOAT),
    _env("ETCD_", "cluster_sync_interval", FLOAT),
    Field("cors", STRING, env="ETCD_CORS"),
    _env("ETCD_", "data_dir"),
    _env("ETCD_", "discovery"),
    _env("ETCD_", "discovery_fallback", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "discovery_srv", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "discovery_proxy", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "election_timeout", INT, deprecated=_ETCD2_ONLY),
    _env("ETCD_", "force_new_cluster", BOOL, deprecated=_ETCD2_ONLY),
    _env("ETCD_", "graphite_host"),
    _env("ETCD_", "heartbeat_interval", INT, deprecated=_ETCD2_ONLY),
    _env("ETCD_", "http_read_timeout", FLOAT),
    _env("ETCD_", "http_write_timeout", FLOAT),
    _env("ETCD_", "initial_advertise_peer_urls", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "initial_cluster", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "initial_cluster_state", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "initial_cluster_token", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "key_file"),
    _env("ETCD_", "listen_client_urls", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "listen_peer_urls", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "max_result_buffer", INT),
    _env("ETCD_", "max_retry_attempts", INT),
    _env("ETCD_", "max_snapshots", INT, deprecated=_ETCD2_ONLY),
    _env("ETCD_", "max_wals", INT, deprecated=_ETCD2_ONLY),
    _env("ETCD_", "name"),
    _env("ETCD_", "peer_addr"),
    _env("ETCD_", "peer_bind_addr"),
    _env("ETCD_", "peer_ca_file"),
    _env("ETCD_", "peer_cert_file"),
    _env("ETCD_", "peer_election_timeout", INT),
    _env("ETCD_", "peer_heartbeat_interval", INT),
    _env("ETCD_", "peer_key_file"),
    _env("ETCD_", "peers"),
    _env("ETCD_", "peers_file"),
    _env("ETCD_", "proxy", deprecated=_ETCD2_ONLY),
    _env("ETCD_", "retry_interval", FLOAT),
    _env("ETCD_", "snapshot", BOOL),
    Field("snapshot_count", INT, env="ETCD_SNAPSHOTCOUNT"),
    Field("trace", STRING, env="ETCD_TRACE"),
    _env("ETCD_", "verbose", BOOL),
    _env("ETCD_", "very_verbose", BOOL),
    _env("ETCD_", "very_very_verbose", BOOL),
)

#: etcd 2 options (``coreos.etcd2``) -> ``ETCD_<NAME>``; etcd 3.4 reads the same variables.
ETCD2 = struct(
    _env("ETCD_", "advertise_client_urls"),
    _env(
        "ETCD_", "ca_file", deprecated="ca_file obsoleted by trusted_ca_file and client_cert_auth"
    ),
    _env("ETCD_", "cert_file"),
    _env("ETCD_", "client_cert_auth", BOOL),
    Field("cors", STRING, env="ETCD_CORS"),
    _env("ETCD_", "data_dir"),
    _env("ETCD_", "debug", BOOL),
    _env("ETCD_", "discovery"),
    _env("ETCD_", "discovery_fallback"),
    _env("ETCD_", "discovery_srv"),
    _env("ETCD_", "discovery_proxy"),
    _env("ETCD_", "election_timeout", INT),
    _env("ETCD_", "enable_pprof", BOOL),
    _env("ETCD_", "force_new_cluster", BOOL),
    _env("ETCD_", "heartbeat_interval", INT),
    _env("ETCD_", "initial_advertise_peer_urls"),
    _env("ETCD_", "initial_cluster"),
    _env("ETCD_", "initial_cluster_state"),
    _env("ETCD_", "initial_cluster_token"),
    _env("ETCD_", "key_file"),
    _env("ETCD_", "listen_client_urls"),
    _env("ETCD_", "listen_peer_urls"),
    _env("ETCD_", "log_package_levels"),
    _env("ETCD_", "max_snapshots", INT),
    _env("ETCD_", "max_wals", INT),
    _env("ETCD_", "name"),
    _env(
        "ETCD_",
        "peer_ca_file",
        deprecated="peer_ca_file obsoleted peer_trusted_ca_file and peer_client_cert_auth",
    ),
    _env("ETCD_", "peer_cert_file"),
    _env("ETCD_", "peer_key_file"),
    _env("ETCD_", "peer_client_cert_auth", BOOL),
    _env("ETCD_", "peer_trusted_ca_file"),
    _env("ETCD_", "proxy", valid="^(on|off|readonly)$"),
    _env("ETCD_", "proxy_dial_timeout", INT),
    _env("ETCD_", "proxy_failure_wait", INT),
    _env("ETCD_", "proxy_read_timeout", INT),
    _env("ETCD_", "proxy_refresh_interval", INT),
    _env("ETCD_", "proxy_write_timeout", INT),
    _env("ETCD_", "snapshot_count", INT),
    _env("ETCD_", "strict_reconfig_check", BOOL),
    _env("ETCD_", "trusted_ca_file"),
    _env("ETCD_", "wal_dir"),
)

#: flannel options (``coreos.flannel``) -> ``FLANNELD_<NAME>``.
FLANNEL = struct(
    _env("FLANNELD_", "etcd_endpoints"),
    _env("FLANNELD_", "etcd_cafile"),
    _env("FLANNELD_", "etcd_certfile"),
    _env("FLANNELD_", "etcd_keyfile"),
    _env("FLANNELD_", "etcd_prefix"),
    _env("FLANNELD_", "etcd_username"),
    _env("FLANNELD_", "etcd_password"),
    _env("FLANNELD_", "ip_masq"),
    _env("FLANNELD_", "subnet_file"),
    Field("interface", STRING, env="FLANNELD_IFACE"),
    _env("FLANNELD_", "public_ip"),
)

#: fleet options (``coreos.fleet``) -> ``FLEET_<NAME>``.
FLEET = struct(
    _env("FLEET_", "agent_ttl"),
    _env("FLEET_", "authorized_keys_file"),
    _env("FLEET_", "disable_engine", BOOL),
    _env("FLEET_", "engine_reconcile_interval", FLOAT),
    _env("FLEET_", "etcd_cafile"),
    _env("FLEET_", "etcd_certfile"),
    _env("FLEET_", "etcd_keyfile"),
    _env("FLEET_", "etcd_key_prefix"),
    _env("FLEET_", "etcd_request_timeout", FLOAT),
    _env("FLEET_", "etcd_servers"),
    _env("FLEET_", "etcd_username"),
    _env("FLEET_", "etcd_password"),
    _env("FLEET_", "metadata"),
    _env("FLEET_", "public_ip"),
    _env("FLEET_", "token_limit", INT),
    _env("FLEET_", "verbosity", INT),
    _env("FLEET_", "verify_units", BOOL),
)

#: locksmith options (``coreos.locksmith``) -> ``LOCKSMITHD_*`` / ``REBOOT_WINDOW_*``.
LOCKSMITH = struct(
    _env("LOCKSMITHD_", "endpoint"),
    _env("LOCKSMITHD_", "etcd_cafile"),
    _env("LOCKSMITHD_", "etcd_certfile"),
    _env("LOCKSMITHD_", "etcd_keyfile"),
    _env("LOCKSMITHD_", "etcd_username"),
    _env("LOCKSMITHD_", "etcd_password"),
    _env("LOCKSMITHD_", "group"),
    Field(
        "window_start",
        STRING,
        env="REBOOT_WINDOW_START",
        valid=(
            r"^((?i:sun|mon|tue|wed|thu|fri|sat|sun) )?"
            r"0*([0-9]|1[0-9]|2[0-3]):0*([0-9]|[1-5][0-9])$"
        ),
    ),
    Field(
        "window_length",
        STRING,
        env="REBOOT_WINDOW_LENGTH",
        valid=r"^[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+$",
    ),
)

OEM = struct(
    Field("id", STRING),
    Field("name", STRING),
    Field("version_id", STRING),
    Field("home_url", STRING),
    Field("bug_report_url", STRING),
)

UPDATE = struct(
    Field("reboot_strategy", STRING, env="REBOOT_STRATEGY", valid="^(etcd-lock|reboot|off)$"),
    Field("group", STRING, env="GROUP"),
    Field("server", STRING, env="SERVER"),
)

#: Unit types a ``coreos.units`` entry may name (systemd units and networkd files).
UNIT_TYPES = (
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
    "network",
    "netdev",
    "link",
)
#: systemd's unit name syntax: ``prefix[@[instance]].type``, at most 255 characters.
UNIT_NAME = (
    r"^(?=.{1,255}$)[a-zA-Z0-9:_.\\-]+(@[a-zA-Z0-9:_.\\-]*)?\.(" + "|".join(UNIT_TYPES) + ")$"
)
#: systemd only reads drop-ins named ``*.conf``.
DROP_IN_NAME = r"^[^/]+\.conf$"
UNIT_COMMANDS = (
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "reload-or-try-restart",
)

DROP_IN = struct(Field("name", STRING, valid=DROP_IN_NAME), Field("content", STRING))

UNIT = struct(
    Field("name", STRING, valid=UNIT_NAME),
    Field("mask", BOOL),
    Field("enable", BOOL),
    Field("runtime", BOOL),
    Field("content", STRING),
    Field("command", STRING, valid="^(" + "|".join(UNIT_COMMANDS) + ")$"),
    Field("drop_ins", slice_of(DROP_IN)),
)

FILE = struct(
    Field(
        "encoding",
        STRING,
        valid=r"^(base64|b64|gz|gzip|gz\+base64|gzip\+base64|gz\+b64|gzip\+b64)$",
    ),
    Field("content", STRING),
    Field("owner", STRING),
    Field("path", STRING),
    Field("permissions", STRING, valid="^0?[0-7]{3,4}$"),
)

USER = struct(
    Field("name", STRING),
    Field("passwd", STRING),
    Field("ssh_authorized_keys", STRINGS),
    Field("coreos_ssh_import_github", STRING, deprecated=_REMOTE_KEYS),
    Field("coreos_ssh_import_github_users", STRINGS, deprecated=_REMOTE_KEYS),
    Field("coreos_ssh_import_url", STRING, deprecated=_REMOTE_KEYS),
    Field("gecos", STRING),
    Field("homedir", STRING),
    Field("no_create_home", BOOL),
    Field("primary_group", STRING),
    Field("groups", STRINGS),
    Field("no_user_group", BOOL),
    Field("system", BOOL),
    Field("no_log_init", BOOL),
    Field("shell", STRING),
)

# coreos-cloudinit's last releases flag etcd2 and fleet as deprecated ("... is no
# longer shipped in Container Linux"). lab's box ships both (etcd 3.4 as
# etcd2.service and the project's fleet), so in this dialect they are current;
# only the v0.4 `etcd` section, which nothing here runs, stays deprecated.
COREOS = struct(
    Field("etcd", ETCD, deprecated="etcd is no longer shipped in Container Linux"),
    Field("etcd2", ETCD2),
    Field("flannel", FLANNEL),
    Field("fleet", FLEET),
    Field("locksmith", LOCKSMITH),
    Field("oem", OEM),
    Field("update", UPDATE),
    Field("units", slice_of(UNIT)),
)

CLOUD_CONFIG = struct(
    Field("ssh_authorized_keys", STRINGS),
    Field("coreos", COREOS),
    Field("write_files", slice_of(FILE)),
    Field("hostname", STRING),
    Field("users", slice_of(USER)),
    Field("manage_etc_hosts", STRING),
)


def normalize_key(key: str) -> str:
    """coreos-cloudinit treats ``-`` and ``_`` in key names alike."""
    return key.replace("-", "_")
