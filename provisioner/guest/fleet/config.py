"""fleetd configuration: ``/etc/fleet/fleet.conf`` overridden by ``FLEET_*`` variables.

The file is fleet's flat INI (``key=value`` lines, no sections, ``#``/``;``
comments, optional quotes). Every key can also come from the environment as
``FLEET_<KEY>`` (upper case), which wins; cloud-config writes those into
``/run/systemd/system/fleet.service.d/20-cloudinit.conf``.

Two keys exist for this implementation only: ``machine_id_file`` (where the
machine ID is read, default ``/etc/machine-id``) and ``unit_manager``
(``systemd``, or ``fake``: the test stand-in that records unit state in files
instead of driving systemd; only the host integration tests use it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.guest.fleet.errors import ConfigError
from provisioner.guest.fleet.registry import DEFAULT_PREFIX, normalize_prefix

DEFAULT_CONFIG_PATH = "/etc/fleet/fleet.conf"
DEFAULT_ETCD_SERVERS = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
UNIT_MANAGERS = ("systemd", "fake")

_BOOL_TRUE = {"1", "t", "true", "yes", "on"}
_BOOL_FALSE = {"0", "f", "false", "no", "off", ""}


@dataclass(frozen=True)
class FleetConfig:
    """Typed fleetd configuration (fleet's option names)."""

    verbosity: int = 0
    etcd_servers: tuple[str, ...] = DEFAULT_ETCD_SERVERS
    etcd_username: str = ""
    etcd_password: str = ""
    etcd_keyfile: str = ""
    etcd_certfile: str = ""
    etcd_cafile: str = ""
    etcd_key_prefix: str = DEFAULT_PREFIX
    etcd_request_timeout: float = 1.0
    engine_reconcile_interval: float = 2.0
    public_ip: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    agent_ttl: float = 30.0
    units_directory: str = "/run/fleet/units/"
    systemd_user: bool = False
    token_limit: int = 100
    enable_grpc: bool = False
    disable_engine: bool = False
    disable_watches: bool = False
    machine_id_file: str = "/etc/machine-id"
    unit_manager: str = "systemd"
    source: str = field(default=DEFAULT_CONFIG_PATH, compare=False)

    def metadata_dict(self) -> dict[str, str]:
        return dict(self.metadata)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go ``time.ParseDuration`` (``30s``, ``1m30s``, ``500ms``) in seconds."""
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if value.startswith("-") else 1.0
    body = value.lstrip("+-")
    if not body:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * total


def parse_metadata(text: str) -> dict[str, str]:
    """fleet's metadata string: ``k=v,k2=v2``; quotes and surrounding space trimmed.

    Pairs without ``=`` are skipped and the last duplicate wins.
    """
    metadata: dict[str, str] = {}
    for pair in text.split(","):
        if "=" not in pair:
            continue
        key, _, value = pair.partition("=")
        key = key.strip().strip("\"'").strip()
        value = value.strip().strip("\"'").strip()
        if key:
            metadata[key] = value
    return metadata


def parse_string_slice(text: str) -> tuple[str, ...]:
    """fleet's StringSlice flag: comma-separated, brackets/quotes/space trimmed."""
    items = [item.strip().strip("[]").strip().strip("\"'").strip() for item in text.split(",")]
    return tuple(item for item in items if item)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_config_file(text: str, source: str) -> dict[str, tuple[str, str]]:
    """``key=value`` lines of fleet.conf -> {key: (value, "file:line")}."""
    values: dict[str, tuple[str, str]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            continue  # a section header would be ignored by fleet's parser as well
        if "=" not in line:
            raise ConfigError(
                f"{source}:{lineno}: expected key=value, got {line!r}",
                hint='fleet.conf holds lines like agent_ttl="30s"',
            )
        key, _, value = line.partition("=")
        values[key.strip().lower()] = (_unquote(value), f"{source}:{lineno}")
    return values


def _as_bool(value: str, where: str, key: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _BOOL_TRUE:
        return True
    if lowered in _BOOL_FALSE:
        return False
    raise ConfigError(f"{where}: {key}: {value!r} is not a boolean", hint="use true or false")


def _as_number(value: str, where: str, key: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(value.strip())
    except ValueError:
        raise ConfigError(
            f"{where}: {key}: {value!r} is not a number", hint=f"example: {key}=2"
        ) from None


def _int(value: str, where: str, key: str) -> int:
    return int(_as_number(value, where, key, int))


def _positive(value: str, where: str, key: str) -> float:
    number = _as_number(value, where, key, float)
    if number <= 0:
        raise ConfigError(f"{where}: {key} must be positive, got {value!r}")
    return number


def _servers(value: str, where: str, key: str) -> tuple[str, ...]:
    servers = parse_string_slice(value)
    if not servers:
        raise ConfigError(f"{where}: {key} is empty", hint="list etcd URLs, comma-separated")
    return servers


def _ttl(value: str, where: str, key: str) -> float:
    try:
        ttl = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key}: {exc}", hint='example: agent_ttl="30s"') from None
    if ttl <= 0:
        raise ConfigError(f"{where}: {key} must be positive, got {value!r}")
    return ttl


def _metadata(value: str, _where: str, _key: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(parse_metadata(value).items()))


def _prefix(value: str, _where: str, _key: str) -> str:
    return normalize_prefix(value)


def _manager(value: str, where: str, key: str) -> str:
    if value not in UNIT_MANAGERS:
        raise ConfigError(
            f"{where}: {key} must be one of {', '.join(UNIT_MANAGERS)}, got {value!r}",
            hint="leave it unset on real machines (systemd)",
        )
    return value


def _text(value: str, _where: str, _key: str) -> str:
    return value.strip()


_CONVERTERS: dict[str, Callable[[str, str, str], Any]] = {
    "verbosity": _int,
    "etcd_servers": _servers,
    "etcd_request_timeout": _positive,
    "engine_reconcile_interval": _positive,
    "token_limit": _int,
    "agent_ttl": _ttl,
    "metadata": _metadata,
    "etcd_key_prefix": _prefix,
    "systemd_user": _as_bool,
    "enable_grpc": _as_bool,
    "disable_engine": _as_bool,
    "disable_watches": _as_bool,
    "unit_manager": _manager,
    "etcd_username": _text,
    "etcd_password": _text,
    "etcd_keyfile": _text,
    "etcd_certfile": _text,
    "etcd_cafile": _text,
    "public_ip": _text,
    "units_directory": _text,
    "machine_id_file": _text,
}


def build_config(values: Mapping[str, tuple[str, str]], source: str) -> FleetConfig:
    """Typed config from raw values; unknown keys are ignored like fleet does."""
    cfg: dict[str, Any] = {"source": source}
    for key, (value, where) in values.items():
        convert = _CONVERTERS.get(key)
        if convert is not None:
            cfg[key] = convert(value, where, key)
    return dataclasses.replace(FleetConfig(), **cfg)


def load_config(path: str | None, environ: Mapping[str, str]) -> FleetConfig:
    """Read the config file (missing default file is fine) and apply FLEET_* overrides."""
    source = path or DEFAULT_CONFIG_PATH
    values: dict[str, tuple[str, str]] = {}
    config_path = Path(source)
    if config_path.exists():
        try:
            text = config_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        values.update(parse_config_file(text, source))
    elif path is not None:
        raise ConfigError(f"{source}: no such config file", hint="check --config")
    for name in _CONVERTERS:
        env_key = "FLEET_" + name.upper()
        if env_key in environ:
            values[name] = (environ[env_key], f"environment {env_key}")
    return build_config(values, source)


def read_machine_id(path: str) -> str:
    """The machine ID (first line of /etc/machine-id)."""
    try:
        machine_id = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the machine ID: {exc.strerror}",
            hint="systemd creates /etc/machine-id at first boot (systemd-machine-id-setup)",
        ) from None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", machine_id):
        raise ConfigError(
            f"{path}: {machine_id!r} is not a machine ID (32 hex digits)",
            hint="regenerate it with systemd-machine-id-setup",
        )
    return machine_id.lower()
