"""``fleetd``: the daemon (installed as /usr/bin/fleetd, run by fleet.service).

Usage: ``fleetd [-config FILE] [-version]`` or ``fleetd version``, parsed as Go's
flag package does for fleet (fleetd/fleetd.go): ``-flag`` or ``--flag``,
``-config FILE`` or ``-config=FILE``; an unknown flag prints fleet's usage and
exits 2, an argument other than ``version`` exits 1. Configuration comes from
``-config FILE`` (which must exist), else ``/etc/fleet/fleet.conf`` if present,
and ``FLEET_*`` variables. Signals: SIGTERM
and SIGINT stop cleanly (leave the cluster at once, unload local units), SIGHUP
re-reads the configuration (metadata, public IP), SIGUSR1 logs the agent's view.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import struct
import sys
import threading
from pathlib import Path
from types import FrameType

from provisioner.guest.fleet import VERSION
from provisioner.guest.fleet.api import listen_fds, serve_activated_sockets
from provisioner.guest.fleet.config import (
    DEFAULT_CONFIG_PATH,
    FleetConfig,
    load_config,
    read_machine_id,
)
from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.etcd import EtcdClient, TlsFiles
from provisioner.guest.fleet.model import MachineState
from provisioner.guest.fleet.registry import Registry
from provisioner.guest.fleet.server import FleetServer
from provisioner.guest.fleet.unitmanager import make_unit_manager

log = logging.getLogger("fleetd")

SIOCGIFADDR = 0x8915
DESCRIPTION = (
    "fleetd is the server component of fleet, a simple orchestration system for "
    "scheduling systemd units in a cluster."
)
FLAG_HELP = (
    (
        "config",
        "string",
        f"Path to config file. Fleet will look for a config at {DEFAULT_CONFIG_PATH} by default.",
    ),
    ("version", "", "Print the version and exit"),
)
# strconv.ParseBool's spellings
_GO_BOOLS = dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True) | dict.fromkeys(
    ("0", "f", "F", "false", "FALSE", "False"), False
)


class FlagError(Exception):
    """A command line Go's flag package refuses; the message precedes the usage."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def usage(program: str) -> str:
    """fleetd's usage text (its ``userset.Usage``: description, then PrintDefaults)."""
    lines = [DESCRIPTION, f"Usage of {program}:"]
    for name, kind, text in FLAG_HELP:
        lines.append(f"  -{name} {kind}".rstrip())
        lines.append(f"    \t{text}")
    return "\n".join(lines) + "\n"


def parse_flags(argv: list[str]) -> tuple[str | None, bool]:
    """(config path, print version) from fleetd's arguments, as Go's flag package parses them.

    FlagError(status 2) for a flag it does not know or a missing value (Go's
    ExitOnError), FlagError(status 1) for an argument other than ``version``.
    """
    values: dict[str, str | bool] = {}
    index = 0
    while index < len(argv) and argv[index].startswith("-") and len(argv[index]) > 1:
        word = argv[index]
        index += 1
        if word == "--":
            break
        index += _parse_flag(word, argv[index:], values)
    rest = argv[index:]
    if rest and rest[0] != "version":
        raise FlagError("takes no arguments. Did you mean to invoke fleetctl instead?", 1)
    config = values.get("config")
    return (config if isinstance(config, str) else None), bool(values.get("version")) or bool(rest)


def _parse_flag(word: str, following: list[str], values: dict[str, str | bool]) -> int:
    """Record one ``-name[=value]``; the number of following words it consumed."""
    name, eq, value = word.lstrip("-").partition("=")
    if word.startswith("---") or not name:
        raise FlagError(f"bad flag syntax: {word}", 2)
    if name in ("h", "help"):
        raise FlagError("", 2)
    if name == "version":
        if eq and value not in _GO_BOOLS:
            raise FlagError(f'invalid boolean value "{value}" for -version: parse error', 2)
        values["version"] = _GO_BOOLS[value] if eq else True
        return 0
    if name != "config":
        raise FlagError(f"flag provided but not defined: -{name}", 2)
    if eq:
        values["config"] = value
        return 0
    if not following:
        raise FlagError("flag needs an argument: -config", 2)
    values["config"] = following[0]
    return 1


def check_config_path(path: str) -> None:
    """fleet fails hard on an unusable ``-config`` (fleetd.go getConfig)."""
    target = Path(path)
    if not target.exists():
        raise FleetError(
            f"Unable to use config file {path}: stat {path}: no such file or directory"
        )
    if target.is_dir():
        raise FleetError(f"Provided config {path} is a directory, not a file")


def parse_default_route_interface(route_table: str) -> str | None:
    """Interface of the IPv4 default route in ``/proc/net/route`` text."""
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "00000000" and int(fields[3], 16) & 0x2:
            return fields[0]
    return None


def detect_public_ip() -> str:
    """IPv4 address of the default-route interface (fleet's getLocalIP), or ""."""
    try:
        iface = parse_default_route_interface(Path("/proc/net/route").read_text())
    except OSError:
        return ""
    if not iface:
        return ""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), SIOCGIFADDR, struct.pack("256s", iface[:15].encode())
            )
        except OSError:
            return ""
    return socket.inet_ntoa(packed[20:24])


def build_server(config: FleetConfig) -> FleetServer:
    machine_id = read_machine_id(config.machine_id_file)
    public_ip = config.public_ip or detect_public_ip()
    machine = MachineState(machine_id, public_ip, config.metadata, VERSION)
    etcd = EtcdClient(
        config.etcd_servers,
        timeout=config.etcd_request_timeout,
        tls=TlsFiles(config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile),
        username=config.etcd_username,
        password=config.etcd_password,
    )
    registry = Registry(etcd, config.etcd_key_prefix)
    manager = make_unit_manager(
        config.unit_manager, config.units_directory, user=config.systemd_user
    )
    detect = None if config.public_ip else detect_public_ip
    return FleetServer(config, registry, manager, machine, detect_ip=detect)


def main(argv: list[str] | None = None) -> int:
    program = sys.argv[0] if argv is None and sys.argv[0] else "fleetd"
    try:
        config_path, show_version = parse_flags(sys.argv[1:] if argv is None else argv)
    except FlagError as exc:
        if str(exc):
            prefix = f"{program} " if exc.status == 1 else ""
            print(f"{prefix}{exc}", file=sys.stderr)
        sys.stderr.write(usage(program))
        return exc.status
    if show_version:
        print(f"fleetd version {VERSION}")
        return 0
    try:
        if config_path is not None:
            check_config_path(config_path)
        config = load_config(config_path, os.environ)
    except FleetError as exc:
        _fail(exc)
        return 1
    logging.basicConfig(
        level=logging.DEBUG if config.verbosity > 0 else logging.INFO,
        format="%(levelname)s %(threadName)s: %(message)s",
        stream=sys.stderr,
    )
    log.info("Starting fleetd version %s", VERSION)
    if config_path is not None:
        log.info("Using provided config file %s", config_path)
    try:
        server = build_server(config)
    except FleetError as exc:
        _fail(exc)
        return 1

    stop = threading.Event()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s, shutting down", signal.Signals(signum).name)
        stop.set()
        server.stopping.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=_reload, args=(server, config_path), daemon=True).start()

    def on_usr1(_signum: int, _frame: FrameType | None) -> None:
        log.info("Agent state: %s", sorted(server.agent.local.values(), key=lambda u: u.name))
        log.info("Engine leader: %s", server.engine.is_leader)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)

    api_servers = serve_activated_sockets(server.api, listen_fds(os.environ, os.getpid()))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    try:
        server.start()
    except FleetError as exc:
        if not stop.is_set():
            _fail(exc)
            return 1
    while not stop.wait(1.0):
        pass
    server.shutdown(purge=True)
    for api_server in api_servers:
        api_server.shutdown()
    log.info("fleetd stopped")
    return 0


def _reload(server: FleetServer, path: str | None) -> None:
    source = path or server.config.source
    log.info("Reloading configuration from %s", source)
    try:
        config = load_config(path, os.environ)
    except FleetError as exc:
        log.warning("Configuration not reloaded: %s", exc.message)
        return
    public_ip = config.public_ip or server.machine().public_ip
    server.update_machine(public_ip, config.metadata_dict())


def _fail(exc: FleetError) -> None:
    print(f"fleetd: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"fleetd: hint: {exc.hint}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
