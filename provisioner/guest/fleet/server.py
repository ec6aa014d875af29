"""fleetd's moving parts wired together: presence, engine, agent, watch.

Threads:

* heartbeat: keeps the presence lease (TTL = ``agent_ttl``) alive every
  ``agent_ttl/2``; if the lease expired (etcd unreachable for too long) the
  machine registers again and republishes its unit states;
* engine: every ``engine_reconcile_interval`` (or at once on a watch event)
  renews or takes leadership and, as leader, runs a scheduling pass;
* agent: every 5 s (or at once on a watch event) reconciles local units, and
  every second publishes changed systemd states;
* watch: one etcd watch on the prefix turns registry changes into triggers.

The API (``self.api``) answers 503 until the machine is registered and again
while the presence heartbeat cannot reach etcd, as fleet's api.Server does.
fleetd never gives up on registering: while etcd is unreachable, or while
another live fleetd holds this machine ID, it stays up, says why in its log and
in the API's 503 answers, and retries (fleet's server.Run loop), so systemd
does not restart it in a loop.

Presence is ``machines/<id>/object`` attached to the presence lease; the unit
states and heartbeats of this machine hang on the same lease, so a hard death
removes all of them when the lease expires, and a clean stop (SIGTERM) revokes
the lease at once so other machines take the units over immediately.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from provisioner.guest.fleet.agent import Agent
from provisioner.guest.fleet.api import UNAVAILABLE, FleetApi
from provisioner.guest.fleet.config import FleetConfig
from provisioner.guest.fleet.engine import Engine
from provisioner.guest.fleet.errors import EtcdError, FleetError
from provisioner.guest.fleet.model import MachineState
from provisioner.guest.fleet.registry import Registry
from provisioner.guest.fleet.unitmanager import UnitManager

log = logging.getLogger(__name__)

AGENT_RECONCILE_INTERVAL = 5.0
STATE_PUBLISH_INTERVAL = 1.0
MACHINE_REFRESH_INTERVAL = 60.0
TRIGGER_COALESCE = 0.05
REGISTER_POLL = 0.5
DUPLICATE_REPEAT = 60.0
ETCD_RETRY_MAX = 5.0
DUPLICATE_HINT = (
    "every machine needs its own /etc/machine-id; clones must not share one "
    "(empty it in the image and let systemd-machine-id-setup create it)"
)
ENGINE_TRIGGER_LEAVES = frozenset({"object", "target-state", "target"})


def lease_ttl_seconds(agent_ttl: float) -> int:
    """Whole-second lease TTL for ``agent_ttl`` (etcd leases have 1 s granularity)."""
    return max(2, round(agent_ttl + 0.499))


class FleetServer:
    """One fleetd: presence, engine and agent for this machine."""

    def __init__(
        self,
        config: FleetConfig,
        registry: Registry,
        manager: UnitManager,
        machine: MachineState,
        *,
        detect_ip: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.etcd = registry.etcd
        self._machine = machine
        self._machine_lock = threading.Lock()
        self._detect_ip = detect_ip
        self.ttl = lease_ttl_seconds(config.agent_ttl)
        self.agent = Agent(registry, manager, self.machine)
        self.engine = Engine(registry, machine.id, config.engine_reconcile_interval)
        self.api = FleetApi(registry, config.token_limit)
        self.stopping = threading.Event()
        self._agent_trigger = threading.Event()
        self._engine_trigger = threading.Event()
        self._lease = 0
        self._lease_lock = threading.Lock()
        self._republish = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch_cancel: Callable[[], None] | None = None

    # -- state ----------------------------------------------------------------------
    def machine(self) -> MachineState:
        with self._machine_lock:
            return self._machine

    @property
    def lease(self) -> int:
        with self._lease_lock:
            return self._lease

    def trigger(self) -> None:
        self._agent_trigger.set()
        self._engine_trigger.set()

    # -- registration ---------------------------------------------------------------
    def _check_stopping(self, what: str) -> None:
        if self.stopping.is_set():
            raise FleetError(f"stopped before {what}")

    def wait_for_etcd(self, deadline: float | None = None) -> None:
        """Wait until etcd answers (API 503 meanwhile); EtcdError after ``deadline``."""
        delay = 0.5
        while True:
            try:
                self.registry.ensure_engine_version()
            except EtcdError as exc:
                self._check_stopping("etcd answered")
                self.api.set_unavailable(UNAVAILABLE)
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise EtcdError(
                        f"etcd did not answer before the startup deadline: {exc.message}",
                        hint="check etcd_servers and that etcd is running",
                    ) from None
                log.warning("Waiting for etcd: %s", exc.message)
                self.stopping.wait(delay)
                delay = min(delay * 2, ETCD_RETRY_MAX)
            else:
                return

    def register(self) -> None:
        """Create the presence key, waiting for as long as another live fleetd holds it.

        A key left by a fleetd of this machine that died hard disappears within
        ``agent_ttl``; one that is still there after that is renewed by a live
        process, i.e. a duplicate machine ID. fleetd then stays up, answering
        503 with the reason and logging it (again every minute), and registers
        as soon as the other one goes.
        """
        machine = self.machine()
        key = self.registry.machine_key(machine.id)
        started = time.monotonic()
        complained = float("-inf")
        announced = False
        while True:
            self._check_stopping("the machine was registered")
            try:
                if not self.registry.machine_present(machine.id) and self._create_presence():
                    return
            except EtcdError as exc:
                self.api.set_unavailable(UNAVAILABLE)
                log.warning("Server register machine failed: %s, retrying", exc.message)
                self.stopping.wait(1.0)
                continue
            now = time.monotonic()
            if not announced:
                log.info("Presence key %s exists; waiting up to %ds for it to go", key, self.ttl)
                announced = True
            if now - started > self.ttl + 1.0 and now - complained >= DUPLICATE_REPEAT:
                complained = now
                reason = (
                    f"machine ID {machine.id} is already registered by another live fleetd "
                    f"({key} stayed alive for more than agent_ttl={self.ttl}s)"
                )
                self.api.set_unavailable(f"fleet server unable to register this machine: {reason}")
                log.error(
                    "%s; not starting until it goes (the API answers 503 meanwhile). Hint: %s",
                    reason,
                    DUPLICATE_HINT,
                )
            self.stopping.wait(REGISTER_POLL)

    def _create_presence(self) -> bool:
        """One create-only registration; False if another fleetd got there first."""
        machine = self.machine()
        lease, granted = self.etcd.lease_grant(self.ttl)
        if not self.registry.register_machine(machine, lease):
            self.etcd.lease_revoke(lease)
            return False
        with self._lease_lock:
            self._lease = lease
        log.info(
            "Registered machine %s (public IP %s, metadata %s) with a %ds presence lease",
            machine.id,
            machine.public_ip or "-",
            machine.metadata_dict() or "{}",
            granted,
        )
        return True

    # -- lifecycle ------------------------------------------------------------------
    def start(self, etcd_deadline: float | None = None) -> None:
        """Register and start the loops; FleetError only if stopped (or past the deadline)."""
        self.wait_for_etcd(None if etcd_deadline is None else time.monotonic() + etcd_deadline)
        self.register()
        self.agent.initialize()
        loops: list[tuple[str, Callable[[], None]]] = [
            ("heartbeat", self._heartbeat_loop),
            ("agent", self._agent_loop),
        ]
        if not self.config.disable_engine:
            loops.append(("engine", self._engine_loop))
        if not self.config.disable_watches:
            loops.append(("watch", self._watch_loop))
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"fleetd-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.api.set_available()
        self.trigger()

    def shutdown(self, *, purge: bool = True) -> None:
        """Stop the loops; with ``purge`` leave the cluster at once and unload local units."""
        self.stopping.set()
        self.trigger()
        cancel = self._watch_cancel
        if cancel is not None:
            cancel()
        for thread in self._threads:
            thread.join(timeout=10.0)
        if not purge:
            return
        self.engine.release()
        lease = self.lease
        if lease:
            try:
                self.etcd.lease_revoke(lease)
                log.info("Presence removed (lease revoked); units move to other machines")
            except EtcdError as exc:
                log.warning("Could not remove presence: %s", exc)
        self.agent.purge()

    def update_machine(self, public_ip: str, metadata: dict[str, str]) -> None:
        """Change public IP / metadata (SIGHUP, IP refresh) and publish it."""
        with self._machine_lock:
            self._machine = replace(
                self._machine, public_ip=public_ip, metadata=tuple(sorted(metadata.items()))
            )
            machine = self._machine
        try:
            self.registry.update_machine(machine, self.lease)
            self.agent.forget_published()
        except EtcdError as exc:
            log.warning("Could not publish the new machine state: %s", exc)
        self.trigger()

    # -- loops ----------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = self.ttl / 2
        next_refresh = time.monotonic() + MACHINE_REFRESH_INTERVAL
        wait = interval
        while not self.stopping.wait(wait):
            wait = interval
            try:
                if self.etcd.lease_keepalive(self.lease) <= 0:
                    log.warning("Presence lease expired; registering this machine again")
                    self.api.set_unavailable(UNAVAILABLE)
                    self._reregister()
                else:
                    self.api.set_available()
            except FleetError as exc:
                log.warning("Presence heartbeat failed: %s", exc.message)
                self.api.set_unavailable(UNAVAILABLE)
                wait = min(1.0, interval)
            if self._detect_ip is not None and time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + MACHINE_REFRESH_INTERVAL
                self._refresh_public_ip(self._detect_ip)

    def _refresh_public_ip(self, detect: Callable[[], str]) -> None:
        machine = self.machine()
        address = detect()
        if address and address != machine.public_ip:
            log.info("Public IP changed from %s to %s", machine.public_ip or "-", address)
            self.update_machine(address, machine.metadata_dict())

    def _reregister(self) -> None:
        machine = self.machine()
        lease, _ = self.etcd.lease_grant(self.ttl)
        if not self.registry.register_machine(machine, lease):
            self.etcd.lease_revoke(lease)
            log.error("Cannot register again: machine ID %s is held by another fleetd", machine.id)
            return
        with self._lease_lock:
            self._lease = lease
        self.api.set_available()
        self.agent.forget_published()
        self._republish.set()
        self.trigger()
        log.info("Registered machine %s again", machine.id)

    def _engine_loop(self) -> None:
        interval = self.config.engine_reconcile_interval
        while not self.stopping.is_set():
            if self._engine_trigger.wait(interval):
                self.stopping.wait(TRIGGER_COALESCE)
            self._engine_trigger.clear()
            if self.stopping.is_set():
                return
            try:
                if self.engine.ensure_leadership():
                    self.engine.reconcile(self.registry.snapshot())
            except FleetError as exc:
                log.warning("Engine pass failed: %s", exc.message)

    def _agent_loop(self) -> None:
        last_reconcile = float("-inf")
        while not self.stopping.is_set():
            triggered = self._agent_trigger.wait(STATE_PUBLISH_INTERVAL)
            if triggered:
                self.stopping.wait(TRIGGER_COALESCE)
            self._agent_trigger.clear()
            if self.stopping.is_set():
                return
            try:
                due = time.monotonic() - last_reconcile >= AGENT_RECONCILE_INTERVAL
                if triggered or due:
                    self.agent.reconcile(self.registry.snapshot())
                    last_reconcile = time.monotonic()
                force = self._republish.is_set()
                self._republish.clear()
                self.agent.publish(self.lease, force=force)
            except FleetError as exc:
                # Never touch running units because etcd is unreachable.
                log.warning("Agent pass skipped: %s", exc.message)

    def _watch_loop(self) -> None:
        prefix = self.registry.prefix
        revision = 0
        while not self.stopping.is_set():
            watch = self.etcd.watch(prefix, revision + 1 if revision else 0)
            self._watch_cancel = watch.cancel
            if self.stopping.is_set():
                return
            try:
                for event in watch.events():
                    revision = max(revision, event.revision)
                    self._on_event(event.key[len(prefix) :].split("/"), event.kind)
            except FleetError as exc:
                if "compact" in exc.message:
                    revision = 0
                log.debug("Watch interrupted: %s", exc.message)
            if self.stopping.wait(1.0):
                return
            self.trigger()  # events may have been missed while reconnecting

    def _on_event(self, parts: list[str], kind: str) -> None:
        unit_changed = parts[0] == "job" and len(parts) == 3 and parts[2] in ENGINE_TRIGGER_LEAVES
        if unit_changed or parts[0] == "machines":
            self.trigger()
        elif parts[0] == "lease" and kind == "DELETE":
            self._engine_trigger.set()
