"""``fleetd``: the daemon (installed as /usr/bin/fleetd, run by fleet.service).

Usage: ``fleetd [--config PATH] [--version]`` or ``fleetd version``. Configuration
comes from ``/etc/fleet/fleet.conf`` and ``FLEET_*`` variables. Signals: SIGTERM
and SIGINT stop cleanly (leave the cluster at once, unload local units), SIGHUP
re-reads the configuration (metadata, public IP), SIGUSR1 logs the agent's view.
"""

from __future__ import annotations

import argparse
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
from provisioner.guest.fleet.api import FleetApi, listen_fds, serve_activated_sockets
from provisioner.guest.fleet.config import FleetConfig, load_config, read_machine_id
from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.etcd import EtcdClient, TlsFiles
from provisioner.guest.fleet.model import MachineState
from provisioner.guest.fleet.registry import Registry
from provisioner.guest.fleet.server import FleetServer
from provisioner.guest.fleet.unitmanager import make_unit_manager

log = logging.getLogger("fleetd")

SIOCGIFADDR = 0x8915


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


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetd", description="fleet daemon")
    parser.add_argument("--config", default=None, help="path to fleet.conf")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", choices=["version"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.version or args.command == "version":
        print(f"fleetd version {VERSION}")
        return 0
    try:
        config = load_config(args.config, os.environ)
    except FleetError as exc:
        _fail(exc)
        return 1
    logging.basicConfig(
        level=logging.DEBUG if config.verbosity > 0 else logging.INFO,
        format="%(levelname)s %(threadName)s: %(message)s",
        stream=sys.stderr,
    )
    log.info("Starting fleetd version %s", VERSION)
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
        threading.Thread(target=_reload, args=(server, args.config), daemon=True).start()

    def on_usr1(_signum: int, _frame: FrameType | None) -> None:
        log.info("Agent state: %s", sorted(server.agent.local.values(), key=lambda u: u.name))
        log.info("Engine leader: %s", server.engine.is_leader)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)

    api_servers = serve_activated_sockets(
        FleetApi(server.registry, config.token_limit), listen_fds(os.environ, os.getpid())
    )
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    try:
        server.start()
    except FleetError as exc:
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
