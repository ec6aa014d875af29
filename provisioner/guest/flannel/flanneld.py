"""``flanneld``: the daemon (installed as /usr/bin/flanneld, run by flanneld.service).

Order of work, as flannel's main.go: read and check the network config (waiting for
etcd and for the key; a config it cannot use ends the process with exit 1 before
anything is touched), find the external interface, prepare the backend's device,
acquire the lease, give the device its address, add the iptables rules (FORWARD
accept, --ip-masq), write the subnet file and docker's options, program every peer,
tell systemd it is ready
(``READY=1`` on ``$NOTIFY_SOCKET``), then follow the leases through an etcd watch and
renew the lease ``-subnet-lease-renew-margin`` minutes before it expires. A lease
that disappears (revoked, deleted) ends the process with exit 1, as flannel does;
systemd starts it again and it takes the same subnet back. SIGTERM/SIGINT stop it,
leaving the lease and the kernel's state for the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from provisioner.guest.flannel import VERSION, iproute
from provisioner.guest.flannel.backends import Backend, make_backend
from provisioner.guest.flannel.config import NetworkConfig, Options, parse_config, parse_options
from provisioner.guest.flannel.errors import FlannelError
from provisioner.guest.flannel.registry import HeldLease, Snapshot, SubnetRegistry
from provisioner.guest.flannel.subnets import docker_opts, previous_subnet, renew_delay, subnet_env
from provisioner.guest.fleet.errors import EtcdError, FleetError
from provisioner.guest.fleet.etcd import EtcdClient, TlsFiles, Watch, WatchEvent

log = logging.getLogger("flanneld")

RETRY = 1.0  # seconds between tries while etcd or the config key is missing
RESYNC = 300.0  # seconds between full re-reads of the leases even without events
POLL = 0.5  # seconds: how soon a SIGTERM is noticed


class StoppedError(Exception):
    """SIGTERM/SIGINT arrived while waiting."""


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o644)
    temporary.replace(target)


def sd_notify(state: str) -> None:
    """Send ``state`` to systemd's notification socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("could not notify systemd: %s", exc)


class Flanneld:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.stop = threading.Event()  # set by the main thread only
        self.stop_requested = False  # set by the signal handler (no locks in handlers)
        self.events: queue.Queue[WatchEvent | None] = queue.Queue()
        self.client = EtcdClient(
            options.etcd_endpoints,
            tls=TlsFiles(options.etcd_cafile, options.etcd_certfile, options.etcd_keyfile),
            username=options.etcd_username,
            password=options.etcd_password,
        )
        self.registry = SubnetRegistry(self.client, options.etcd_prefix)
        self._watch: Watch | None = None

    def _sleep(self, seconds: float) -> None:
        """Sleep, but end the run at once when a stop is requested."""
        deadline = time.monotonic() + seconds
        while True:
            self._check_stop()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, POLL))

    def _check_stop(self) -> None:
        if self.stop_requested:
            self.stop.set()
            if self._watch is not None:
                self._watch.cancel()
            raise StoppedError

    def wait_for_config(self) -> NetworkConfig:
        """Retry until etcd answers and the key exists; a bad config raises ConfigError."""
        while True:
            try:
                text = self.registry.config_text()
            except EtcdError as exc:
                log.warning("Couldn't fetch network config: %s", exc)
            else:
                if text is not None:
                    config = parse_config(text)
                    log.info(
                        "network %s, /%d subnets %s..%s, backend %s",
                        config.network,
                        config.subnet_len,
                        config.subnet_min,
                        config.subnet_max,
                        config.backend_type,
                    )
                    return config
                log.warning(
                    "Couldn't fetch network config: %s not found; waiting for it",
                    self.registry.config_key,
                )
            self._sleep(RETRY)

    def acquire(self, config: NetworkConfig, public_ip: str, data: dict[str, object]) -> HeldLease:
        previous = None
        with contextlib.suppress(OSError):
            previous = previous_subnet(Path(self.options.subnet_file).read_text(encoding="utf-8"))
        while True:
            try:
                return self.registry.acquire(
                    config, public_ip, data, previous=previous, ttl=self.options.lease_ttl
                )
            except EtcdError as exc:
                log.warning("failed to acquire lease: %s; retrying", exc)
            self._sleep(RETRY)

    def run(self) -> int:
        config = self.wait_for_config()
        ext = iproute.find_interface(self.options.ifaces, self.options.public_ip)
        log.info(
            "Using interface %s with address %s (public IP %s)",
            ext.name,
            ext.address,
            ext.public_ip,
        )
        backend = make_backend(config, ext)
        data = dict(backend.prepare())
        held = self.acquire(config, ext.public_ip, data)
        try:
            return self._serve(config, backend, held, ext.public_ip, data)
        finally:
            backend.close()
            if self._watch is not None:
                self._watch.cancel()

    def _take(self, config: NetworkConfig, backend: Backend, held: HeldLease) -> None:
        backend.configure(held.subnet)
        self._ensure_rules(config, held)
        env = subnet_env(config, held.subnet, backend.mtu, self.options.ip_masq)
        write_atomically(self.options.subnet_file, env)
        if self.options.docker_opts_file:
            write_atomically(self.options.docker_opts_file, docker_opts(env))

    def _ensure_rules(self, config: NetworkConfig, held: HeldLease) -> None:
        """flannel's FORWARD accept rules and --ip-masq rules, if asked for (again)."""
        if not (self.options.iptables_forward_rules or self.options.ip_masq):
            return
        from provisioner.guest.flannel import firewall  # only when there are rules to add

        rules = []
        if self.options.iptables_forward_rules:
            rules += firewall.forward_rules(config.network)
        if self.options.ip_masq:
            rules += firewall.masq_rules(config.network, held.subnet)
        added = firewall.ensure(rules)
        if added:
            log.info("%d iptables rule(s) added", added)

    def _recheck_rules(self, config: NetworkConfig, held: HeldLease) -> None:
        """Put back rules someone flushed; a failure here is logged, not fatal."""
        try:
            self._ensure_rules(config, held)
        except FlannelError as exc:
            log.warning("could not check the iptables rules: %s", exc)

    def _serve(
        self,
        config: NetworkConfig,
        backend: Backend,
        held: HeldLease,
        public_ip: str,
        data: dict[str, object],
    ) -> int:
        self._take(config, backend, held)
        snap = self._sync(backend, held)
        threading.Thread(
            target=self._watch_loop, args=(snap.revision + 1,), name="watch", daemon=True
        ).start()
        sd_notify("READY=1")
        log.info("Lease %s held; waiting for peers", held.subnet)
        renew_at = time.monotonic() + renew_delay(held.ttl, self.options.renew_margin)
        next_sync = time.monotonic() + RESYNC
        while True:
            timeout = min(POLL, max(0.0, min(renew_at, next_sync) - time.monotonic()))
            try:
                self.events.get(timeout=timeout)
                self._drain()
                changed = True
            except queue.Empty:
                changed = False
            self._check_stop()
            if time.monotonic() >= renew_at:
                held = self._renew(config, backend, held, public_ip, data)
                renew_at = time.monotonic() + renew_delay(held.ttl, self.options.renew_margin)
                changed = True
            periodic = time.monotonic() >= next_sync
            if changed or periodic:
                try:
                    self._sync(backend, held)
                except EtcdError as exc:
                    log.warning("could not read the leases: %s", exc)
                    self.events.put(None)
                    self._sleep(RETRY)
                if periodic:
                    self._recheck_rules(config, held)
                next_sync = time.monotonic() + RESYNC

    def _drain(self) -> None:
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def _sync(self, backend: Backend, held: HeldLease) -> Snapshot:
        snap = self.registry.snapshot()
        if held.key not in snap.kvs:
            raise FlannelError(
                f"Lease has been revoked: {held.key} is gone from etcd; shutting down",
                hint="systemd starts flanneld again, which takes a lease anew",
            )
        changed = backend.reconcile(snap.leases, held.subnet)
        if changed:
            log.info("%d peer subnet(s), %d route change(s)", len(snap.leases) - 1, changed)
        return snap

    def _renew(
        self,
        config: NetworkConfig,
        backend: Backend,
        held: HeldLease,
        public_ip: str,
        data: dict[str, object],
    ) -> HeldLease:
        while True:
            try:
                renewed = self.registry.renew(held)
            except EtcdError as exc:
                log.warning("Error renewing lease (trying again in 1 s): %s", exc)
                self._sleep(RETRY)
                continue
            if renewed:
                log.info("Lease renewed: %s", held.subnet)
                return held
            log.warning("Lease %s expired before renewal; acquiring again", held.subnet)
            fresh = self.acquire(config, public_ip, data)
            if fresh.subnet != held.subnet:
                self._take(config, backend, fresh)
            return fresh

    def _watch_loop(self, revision: int) -> None:
        while not self.stop.is_set():
            watch = self.client.watch(self.registry.subnets_prefix, revision)
            self._watch = watch
            try:
                for event in watch.events():
                    revision = event.revision + 1
                    self.events.put(event)
            except EtcdError as exc:
                if self.stop.is_set():
                    return
                log.warning("watch on %s ended: %s", self.registry.subnets_prefix, exc)
                revision = 0  # re-read everything from now on (events may have been missed)
            self.events.put(None)
            if self.stop.wait(RETRY):
                return


def _fail(exc: FlannelError | FleetError) -> None:
    log.error("%s", exc.message)
    if exc.hint:
        log.error("hint: %s", exc.hint)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv, os.environ)
    except FlannelError as exc:
        _fail(exc)
        return 1
    if options.version:
        print(VERSION)
        return 0
    if options.verbosity > 0:
        logging.getLogger().setLevel(logging.DEBUG)
    daemon = Flanneld(options)

    def stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        daemon.stop_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return daemon.run()
    except StoppedError:
        log.info("Exiting cleanly on a signal")
        return 0
    except (FlannelError, FleetError) as exc:
        _fail(exc)
        return 1
