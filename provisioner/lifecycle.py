"""A lab's life: ``up`` as named steps with state on disk, then fault drills and teardown.

``up`` runs render -> host -> box -> network -> discovery -> drives -> boot ->
nodes -> cluster. Each step is idempotent and recorded in ``.lab/state.json``,
so an interrupted ``up`` resumes and ``destroy`` finds everything; libvirt
objects carry the lab's name so they are found even without the state file.
"""

from __future__ import annotations

import fcntl
import itertools
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import nodes as node_access
from provisioner import readiness
from provisioner.accel import choose_accel
from provisioner.config import LabConfig, NodeSpec
from provisioner.configdrive import build_config_drive, meta_data
from provisioner.errors import LabError, NodeError, WaitTimeout
from provisioner.lab import render
from provisioner.progress import LAB, Progress
from provisioner.remote.ssh import SSHRunner
from provisioner.state import LabState, keep_rendered_record, load_state, save_state

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost

BOOT_TIMEOUT = 1800.0  # vagrant up of every node, including a first box upload
NODE_TIMEOUT = 600.0  # per node: banner, host keys, login, systemd
CLUSTER_TIMEOUT = 600.0  # etcd healthy, fleet sees everyone
SHUTDOWN_TIMEOUT = 180.0
LOGIN_POLL = 1.0  # reading the console log is cheap; a login try is not
LOGIN_BLIND_EVERY = 10  # before the console shows the keys written, try once per 10 polls
DISCOVERY_STATE = "discovery"  # .lab/discovery: the per-lab service of earlier versions

CLUSTER_ROW = "etcd+fleet"  # the progress row of the cluster checks

PHASES = ("render", "host", "box", "network", "discovery", "drives", "boot", "nodes", "cluster")


@dataclass(frozen=True)
class NodeReport:
    name: str
    ip: str
    role: str
    machine_id: str
    system_state: str
    failed_units: tuple[str, ...]


@dataclass(frozen=True)
class UpResult:
    already_up: bool
    nodes: tuple[NodeReport, ...]
    phase_seconds: dict[str, float]
    accel: str


# --- locks ------------------------------------------------------------------


@contextmanager
def file_lock(path: Path, what: str, timeout: float = 600.0) -> Iterator[None]:
    """An exclusive lock; waits up to ``timeout`` for another lab command to finish."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LabError(
                        f"{what} is locked by another lab command ({path})",
                        hint="wait for it to finish; the lock goes away with the process",
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def host_lock_path() -> Path:
    from provisioner.box.cache import cache_root

    return cache_root() / "host.lock"


# --- steps ------------------------------------------------------------------


class Run:
    """One ``lab up``: the config, the state as it evolves, and the progress display."""

    def __init__(self, config: LabConfig, progress: Progress, accel: str) -> None:
        self.config = config
        self.progress = progress
        self.accel = choose_accel(accel)
        self.state = load_state(config.state_dir)
        self.phase_seconds: dict[str, float] = {}
        self.runners: dict[str, SSHRunner] = {}
        self.facts: dict[str, readiness.NodeFacts] = {}
        # node waits started while `vagrant up` runs (see boot); set to abandon them
        self.early: dict[str, Future[readiness.NodeFacts | BaseException]] = {}
        self.early_cluster: Future[str | None] | None = None
        self.cancel = threading.Event()
        self._waiters: ThreadPoolExecutor | None = None

    def save(self, phase: str | None = None) -> None:
        if phase:
            self.state = self.state.with_phase(phase)
        save_state(self.config.state_dir, self.state)

    def step(self, phase: str, action: Callable[[], str]) -> None:
        self.progress.update(LAB, phase, "running")
        started = time.monotonic()
        try:
            detail = action()
        except BaseException as exc:
            self.progress.update(LAB, phase, "failed", first_line(exc)[:120])
            raise
        self.phase_seconds[phase] = time.monotonic() - started
        self.progress.update(LAB, phase, "ok", detail)
        self.save(phase)

    # render --------------------------------------------------------------

    def render(self) -> str:
        result = render(self.config, accel=self.accel.accel)
        self.state = load_state(self.config.state_dir)
        return f"{len(result.files)} files"

    # host ----------------------------------------------------------------

    def host(self) -> str:
        from provisioner.hypervisor.daemons import ensure_daemons, ensure_default_pool
        from provisioner.hypervisor.libvirt import check_qemu_can_open

        # before anything is created: QEMU must be able to open the config drives
        drives = self.config.state_dir / "config-drives"
        drives.mkdir(parents=True, exist_ok=True)
        check_qemu_can_open(drives / "drive.iso")
        daemons = ensure_daemons(start=True)
        pool = ensure_default_pool(create=True)
        return f"{daemons.summary}; {pool.summary}; {self.accel.accel}"

    # box -----------------------------------------------------------------

    def box(self) -> str:
        from provisioner.box.build import build_box
        from provisioner.lab import box_name

        built = build_box(self.config.box, add_to_vagrant=True)
        expected = box_name(self.config)
        if built.vagrant_name != expected:
            raise LabError(
                f"built box {built.vagrant_name} but the Vagrantfile wants {expected}",
                hint="the guest software changed during the build; run `lab up` again",
            )
        uploaded = self.upload_box(built.vagrant_name, built.virtual_size)
        return f"{built.vagrant_name} ({'cached' if built.cached else 'built'}; {uploaded})"

    def upload_box(self, vagrant_name: str, virtual_size: int) -> str:
        """The box's copy in the storage pool, made once per host under the host lock."""
        from provisioner.hypervisor.boxvolume import box_volume
        from provisioner.hypervisor.daemons import DEFAULT_POOL
        from provisioner.hypervisor.libvirt import LibvirtHost

        try:
            volume = box_volume(vagrant_name, virtual_size)
        except OSError as exc:
            raise LabError(
                f"box {vagrant_name} is not where Vagrant unpacks boxes: {exc}",
                hint="`lab box build` adds it again",
            ) from exc
        self.progress.update(LAB, "box", "running", f"pool volume {volume.name}")
        from provisioner.box.build import list_boxes

        kept = {box.vagrant_name for box in list_boxes()} | {vagrant_name}
        with file_lock(host_lock_path(), "the box upload"), LibvirtHost.open() as host:
            made = host.ensure_box_volume(volume, DEFAULT_POOL)  # the Vagrantfile's pool
            # copies of boxes the cache has let go, once no lab's disk backs onto them
            removed = host.remove_unused_box_volumes(kept, DEFAULT_POOL)
        where = "uploaded into the pool" if made else "in the pool"
        return where + (f"; {len(removed)} unused old box volumes removed" if removed else "")

    # network -------------------------------------------------------------

    def network(self) -> str:
        import ipaddress

        from provisioner.hypervisor.libvirt import LibvirtHost
        from provisioner.hypervisor.network import DhcpHost, lab_network

        hosts = [
            DhcpHost(node.name, node.mac, ipaddress.IPv4Address(node.ip))
            for node in self.config.nodes
        ]
        spec = lab_network(self.config.name, self.config.subnet, hosts)
        with file_lock(host_lock_path(), "libvirt networks"), LibvirtHost.open() as host:
            created = host.ensure_network(spec)
        return f"{spec.name} {spec.subnet} ({'created' if created else 'exists'}, isolated)"

    # discovery -----------------------------------------------------------

    def discovery(self) -> str:
        record = self.state.discovery
        if record is None:
            return "static bootstrap"
        if record.mode != "local":
            return f"{record.mode}: {record.url}"
        from provisioner.discovery import create_token, ensure_running, stop_legacy_daemon

        stop_legacy_daemon(self.config.state_dir / DISCOVERY_STATE)
        ensure_running(
            self.config.gateway, int(urllib.parse.urlsplit(record.url).port or 80), timeout=30
        )
        create_token(record.url, record.size)
        return record.url

    # drives --------------------------------------------------------------

    def drives(self) -> str:
        out = self.config.directory
        _, public_key = _public_key(self.config)
        for node in self.config.nodes:
            user_data = (out / "nodes" / node.name / "user-data").read_text()
            build_config_drive(
                user_data,
                meta_data(node.name, node.ip, {"lab": public_key}),
                self.config.state_dir / "config-drives" / f"{node.name}.iso",
            )
        return f"{len(self.config.nodes)} config-2 drives"

    # boot ----------------------------------------------------------------

    def boot(self) -> str:
        from provisioner.hypervisor.vagrant import VagrantLab

        node_access.log_dir(self.config).mkdir(parents=True, exist_ok=True)
        vagrant = VagrantLab(
            self.config.directory, node_access.log_dir(self.config) / "vagrant.log"
        )
        for node in self.config.nodes:
            self.progress.update(node.name, "boot", "running")
        # The lab's own node and cluster checks need nothing from Vagrant but the
        # running guests: start them now, so they run while `vagrant up` waits for
        # SSH in its own way; the nodes and cluster steps then join them.
        self.start_node_waits()
        try:
            vagrant.up(timeout=BOOT_TIMEOUT, provision=False)
        except BaseException as exc:
            self.stop_node_waits()
            if isinstance(exc, LabError):
                for node in self.config.nodes:
                    self.progress.update(node.name, "boot", "failed")
            raise
        for node in self.config.nodes:
            self.progress.update(node.name, "boot", "ok")
        return f"{len(self.config.nodes)} nodes booted by vagrant ({self.accel.driver})"

    def start_node_waits(self) -> None:
        if self._waiters is not None:
            return
        self.cancel.clear()
        # the boot's own deadline bounds these until it ends; then NODE_TIMEOUT (nodes)
        deadline = time.monotonic() + BOOT_TIMEOUT + NODE_TIMEOUT
        self._waiters = ThreadPoolExecutor(
            max_workers=len(self.config.nodes) + 1, thread_name_prefix="node-wait"
        )
        for node in self.config.nodes:
            self.early[node.name] = self._waiters.submit(self.ready_node, node, deadline)
        # and the cluster checks once every node is ready: they need the guests, not Vagrant
        self.early_cluster = self._waiters.submit(self._early_cluster, list(self.early.values()))

    def stop_node_waits(self) -> None:
        """Abandon the early node waits: polls stop, and closing the SSH connections
        ends a remote wait (``is-system-running --wait``) that is under way."""
        self.cancel.set()
        for runner in list(self.runners.values()):
            runner.close()
        if self._waiters is not None:
            self._waiters.shutdown(wait=True, cancel_futures=True)
            self._waiters = None
        self.early.clear()
        self.early_cluster = None

    # nodes ---------------------------------------------------------------

    def nodes(self) -> str:
        self.start_node_waits()  # a no-op after the boot started them
        outcomes = self._join_node_waits()
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        known_hosts = {}
        for node, outcome in zip(self.config.nodes, outcomes, strict=True):
            if isinstance(outcome, readiness.NodeFacts):
                self.facts[node.name] = outcome
                known_hosts[node.name] = self.runners[node.name].known_hosts_entry()
        if known_hosts:
            node_access.write_known_hosts(self.config, known_hosts)
        self.state = replace(
            self.state,
            machine_ids={name: facts.machine_id for name, facts in self.facts.items()},
        )
        if failures:
            raise LabError(
                f"{len(failures)} of {len(outcomes)} nodes are not ready:\n"
                + "\n".join(f"  {f}" for f in failures)
            )
        degraded = [
            f"{n}: {', '.join(f.failed_units)}" for n, f in self.facts.items() if f.failed_units
        ]
        return "all running" if not degraded else "degraded: " + "; ".join(degraded)

    def _join_node_waits(self) -> list[readiness.NodeFacts | BaseException]:
        """The early waits' outcomes, each given NODE_TIMEOUT from the end of the boot."""
        deadline = time.monotonic() + NODE_TIMEOUT
        outcomes: list[readiness.NodeFacts | BaseException] = []
        try:
            for node in self.config.nodes:
                future = self.early[node.name]
                try:
                    outcomes.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
                except FutureTimeout:
                    outcomes.append(
                        WaitTimeout(node.name, f"not ready {NODE_TIMEOUT:g}s after the boot")
                    )
        finally:
            if any(isinstance(o, BaseException) for o in outcomes) or len(outcomes) < len(
                self.config.nodes
            ):
                self.stop_node_waits()
            else:
                self.early.clear()  # the pool stays: the early cluster checks run on it
        return outcomes

    def ready_node(
        self, node: NodeSpec, deadline: float | None = None
    ) -> readiness.NodeFacts | BaseException:
        try:
            return self._wait_node(node, deadline or time.monotonic() + NODE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - every node's outcome is reported together
            self.progress.update(node.name, "ready", "failed", first_line(exc)[:100])
            return exc

    def _wait_node(self, node: NodeSpec, deadline: float) -> readiness.NodeFacts:
        cancelled = self.cancel.is_set
        self.progress.update(node.name, "ssh banner", "running")
        banner = readiness.poll(
            node.name,
            f"an SSH banner on {node.ip}:22",
            deadline,
            lambda: readiness.ssh_banner(node.ip),
            cancelled=cancelled,
        )
        self.progress.update(node.name, "ssh banner", "ok", banner)
        self.progress.update(node.name, "host keys", "running")
        console = node_access.node_paths(self.config, node).console
        printed = readiness.poll(
            node.name,
            f"host-key fingerprints on the serial console ({console})",
            deadline,
            lambda: node_access.console_fingerprints(self.config, node) or None,
            cancelled=cancelled,
        )
        pinned = dict(node_access.pinned_pairs(self.state.host_keys.get(node.name, [])))
        node_access.check_pins(node.name, pinned, printed)
        self.state.host_keys[node.name] = node_access.stored_pins({**printed, **pinned})
        self.save()
        self.progress.update(node.name, "host keys", "ok", ", ".join(sorted(printed)))
        runner = node_access.runner(self.config, self.state, node)
        self.runners[node.name] = runner
        self.progress.update(node.name, "login", "running")
        polls = itertools.count()

        def login() -> bool | None:
            # Until the agent has written authorized_keys (its console says so), a try
            # is a whole SSH handshake refused at the end, work an emulated guest feels
            # while it boots: try only now and then (the console could miss the line).
            if next(polls) % LOGIN_BLIND_EVERY and not node_access.console_keys_authorized(
                self.config, node, runner.user
            ):
                return None
            return runner.run(["true"], timeout=30).succeeded or None

        readiness.poll(
            node.name,
            "a login with the lab's key",
            deadline,
            login,
            interval=LOGIN_POLL,
            cancelled=cancelled,
        )
        self.progress.update(node.name, "systemd", "running")
        remaining = min(NODE_TIMEOUT, deadline - time.monotonic())
        facts = readiness.system_facts(node.name, runner, max(10.0, remaining))
        detail = facts.system_state + (
            f" ({', '.join(facts.failed_units)})" if facts.failed_units else ""
        )
        self.progress.update(node.name, "systemd", "ok", detail)
        return facts

    # cluster -------------------------------------------------------------

    def cluster(self) -> str:
        future, self.early_cluster = self.early_cluster, None
        if future is not None:
            try:
                result = future.result(timeout=CLUSTER_TIMEOUT)
            except FutureTimeout:
                self.stop_node_waits()
                raise WaitTimeout(
                    "cluster", f"etcd and fleet not ready {CLUSTER_TIMEOUT:g}s after the boot"
                ) from None
            if self._waiters is not None:
                self._waiters.shutdown(wait=True)
                self._waiters = None
            if result is not None:
                return result
        return self.check_cluster(dict(self.state.machine_ids))

    def _early_cluster(
        self, nodes: Sequence[Future[readiness.NodeFacts | BaseException]]
    ) -> str | None:
        """The cluster checks, as soon as every node is ready (the boot may still run);
        None when a node failed or the waits were abandoned: the nodes step reports."""
        outcomes = [future.result() for future in nodes]
        if self.cancel.is_set() or any(isinstance(o, BaseException) for o in outcomes):
            return None
        ids = {
            node.name: facts.machine_id
            for node, facts in zip(self.config.nodes, outcomes, strict=True)
            if isinstance(facts, readiness.NodeFacts)
        }
        return self.check_cluster(ids)

    def check_cluster(self, machine_ids: dict[str, str]) -> str:
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        first = readiness.first_member_runner(self.config, self.runners)
        host_view = readiness.HostView.for_lab(self.config)

        def etcd_ready() -> str | None:
            # the host's answer when it has one; etcdctl on a node only when it cannot tell
            return host_view.etcd_ready_or(lambda: readiness.etcd_healthy(self.config, first))

        etcd = readiness.poll(
            "etcd",
            "every etcd member healthy",
            deadline,
            etcd_ready,
            interval=readiness.HOST_POLL,
            cancelled=self.cancel.is_set,
        )
        # its own row: these may run while the lab row still shows the boot
        self.progress.update(CLUSTER_ROW, "cluster", "running", etcd)
        failed = threading.Event()

        def round_trip() -> str:
            try:
                trip = readiness.etcd_round_trip(
                    readiness.member_urls(self.config), self.runners, host_view
                )
            except BaseException:
                failed.set()  # the fleet check need not wait out its deadline
                raise
            self.progress.update(CLUSTER_ROW, "cluster", "running", trip)
            return trip

        def fleet_ready() -> str | None:
            host_view.fleet_not_registered(machine_ids)  # no fleetctl before it can list all
            return readiness.fleet_machines(self.config, first, machine_ids)

        def fleet_listing() -> str:
            return readiness.poll(
                "fleet",
                "fleetctl list-machines to show every node",
                deadline,
                fleet_ready,
                interval=readiness.HOST_POLL,
                cancelled=lambda: failed.is_set() or self.cancel.is_set(),
            )

        # independent checks, each on its own SSH channels: run them side by side
        with ThreadPoolExecutor(max_workers=2) as pool:
            trip = pool.submit(round_trip)
            fleet = pool.submit(fleet_listing)
            trip.result()
            summary = f"etcd {etcd}; fleet {fleet.result()}"
        self.progress.update(CLUSTER_ROW, "cluster", "ok", summary)
        return summary


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type for an empty one (Ctrl-C)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _public_key(config: LabConfig) -> tuple[Path, str]:
    from provisioner.state import ensure_ssh_key

    return ensure_ssh_key(config.state_dir)


# --- up ---------------------------------------------------------------------


def up(config: LabConfig, progress: Progress, *, accel: str = "auto") -> UpResult:
    """Bring the lab up and verify it; resumes after an interruption."""
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        run = Run(config, progress, accel)
        if "cluster" in run.state.phases and _all_running(config):
            _check_same_shape(config, run.state)
            return UpResult(True, _reports(config, run), {}, run.accel.accel)
        steps: Sequence[tuple[str, Callable[[], str]]] = (
            ("render", run.render),
            ("host", run.host),
            ("box", run.box),
            ("network", run.network),
            ("discovery", run.discovery),
            ("drives", run.drives),
            ("boot", run.boot),
            ("nodes", run.nodes),
            ("cluster", run.cluster),
        )
        try:
            for phase, action in steps:
                run.step(phase, action)
        except (LabError, KeyboardInterrupt) as exc:
            if isinstance(exc, LabError) and phase in ("boot", "nodes", "cluster"):
                where = save_diagnostics(config, run.state)
                exc.hint = f"consoles and journals saved in {where}" + (
                    f"; {exc.hint}" if exc.hint else ""
                )
            raise
        finally:
            run.stop_node_waits()  # abandons waits still running; closes every SSH connection
        return UpResult(False, _reports(config, run), run.phase_seconds, run.accel.accel)


def _reports(config: LabConfig, run: Run) -> tuple[NodeReport, ...]:
    reports = []
    for node in config.nodes:
        facts = run.facts.get(node.name)
        reports.append(
            NodeReport(
                name=node.name,
                ip=node.ip,
                role=node.role,
                machine_id=run.state.machine_ids.get(node.name, "-"),
                system_state=facts.system_state if facts else "-",
                failed_units=facts.failed_units if facts else (),
            )
        )
    return tuple(reports)


def _all_running(config: LabConfig) -> bool:
    from provisioner.hypervisor.libvirt import LibvirtHost

    host = LibvirtHost.open()
    try:
        found = set(host.lab_objects(config.name).domains)
        wanted = [node_access.domain_of(config, node) for node in config.nodes]
        return all(d in found and host.state(d).is_active for d in wanted)
    finally:
        host.close()


def _check_same_shape(config: LabConfig, state: LabState) -> None:
    running = sorted(state.machine_ids)
    wanted = sorted(node.name for node in config.nodes)
    if running != wanted:
        raise LabError(
            f"the running lab has nodes {', '.join(running)}, "
            f"the config asks for {', '.join(wanted)}",
            hint="`lab destroy` first to change the number of nodes",
        )


# --- diagnostics ------------------------------------------------------------


def save_diagnostics(config: LabConfig, state: LabState) -> Path:
    """Every node's journal (when it answers) beside its serial console log."""
    logs = node_access.log_dir(config)
    logs.mkdir(parents=True, exist_ok=True)

    def one(node: NodeSpec) -> None:
        target = node_access.node_paths(config, node).journal
        try:
            runner = node_access.runner(config, state, node, command_timeout=60)
        except LabError as exc:
            target.write_text(f"journal not collected: {exc}\n")
            return
        try:
            result = runner.run(
                ["sudo", "journalctl", "-b", "--no-pager", "-o", "short-precise"], timeout=90
            )
            target.write_text(result.stdout + result.stderr)
        except LabError as exc:
            target.write_text(f"journal not collected: {exc}\n")
        finally:
            runner.close()

    with ThreadPoolExecutor(max_workers=max(1, len(config.nodes))) as pool:
        list(pool.map(one, config.nodes))
    return logs


def collect_logs(config: LabConfig, into: Path | None = None) -> Path:
    """``lab logs``: every node's journal now, beside the serial consoles libvirt writes.

    With ``into``, the journals and console logs are copied there as well (say, one
    directory per failed check), so a later collection does not overwrite them.
    """
    logs = save_diagnostics(config, load_state(config.state_dir))
    if into is None:
        return logs
    into.mkdir(parents=True, exist_ok=True)
    for node in config.nodes:
        paths = node_access.node_paths(config, node)
        for source in (paths.journal, paths.console):
            if source.exists():
                shutil.copyfile(source, into / source.name)
    return into


# --- teardown and drills ------------------------------------------------------


@dataclass(frozen=True)
class DestroyResult:
    domains: tuple[str, ...]
    volumes: tuple[str, ...]
    networks: tuple[str, ...]
    token_deleted: bool


def destroy(config: LabConfig) -> DestroyResult:
    """Remove the lab's domains, volumes, network, discovery token and state.

    Works from libvirt's view (everything carries the lab's name), so it also
    cleans up after an interrupted ``up`` or a lost state file. The shared box
    stays. The user's lab.yaml and fragments are never touched.
    """
    from provisioner.discovery import release_token, stop_legacy_daemon
    from provisioner.hypervisor.libvirt import LibvirtHost

    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=60):
        state = load_state(config.state_dir)
        token_deleted = False
        if state.discovery and state.discovery.mode == "local":
            token_deleted = release_token(state.discovery.url)
        stop_legacy_daemon(config.state_dir / DISCOVERY_STATE)
        with file_lock(host_lock_path(), "libvirt networks"):
            host = LibvirtHost.open()
            try:
                removed = host.remove_lab(config.name)
            finally:
                host.close()
        shutil.rmtree(config.directory / ".vagrant", ignore_errors=True)
        # The key goes too: a new lab in this directory gets a fresh one. Logs stay,
        # and so does the record of the files lab rendered here (a later render may
        # replace those, not files the user edited).
        keep_rendered_record(config.state_dir, state.rendered)
        for child in (
            "state.json",
            "config-drives",
            DISCOVERY_STATE,
            "known_hosts",
            "ssh_config",
            "ssh",
            "expectations.json",
        ):
            path = config.state_dir / child
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return DestroyResult(removed.domains, removed.volumes, removed.networks, token_deleted)


def _each_node(
    config: LabConfig, names: Sequence[str], action: Callable[[LibvirtHost, str], None]
) -> list[str]:
    from provisioner.hypervisor.libvirt import LibvirtHost

    host = LibvirtHost.open()
    try:
        done = []
        for node in node_access.resolve_nodes(config, names):
            action(host, node_access.domain_of(config, node))
            done.append(node.name)
        return done
    finally:
        host.close()


def kill(config: LabConfig, names: Sequence[str]) -> list[str]:
    """Pull the plug (a hard power-off, like a machine dying)."""
    return _each_node(config, names, lambda host, dom: host.power_off(dom))


def stop(config: LabConfig, names: Sequence[str]) -> list[str]:
    """Clean shutdown (ACPI), waiting until the node is off."""
    return _each_node(
        config,
        names,
        lambda host, dom: host.shutdown(dom, timeout=SHUTDOWN_TIMEOUT),
    )


def start(config: LabConfig, names: Sequence[str], progress: Progress) -> list[str]:
    """Boot stopped nodes and wait until they answer with their pinned host keys."""
    started = _each_node(config, names, lambda host, dom: host.start(dom))
    run = Run(config, progress, "auto")
    chosen = [config.node(name) for name in started]
    with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        outcomes = list(pool.map(run.ready_node, chosen))
    for runner in run.runners.values():
        runner.close()
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        where = save_diagnostics(config, run.state)
        raise NodeError(
            ", ".join(started),
            "did not come back: " + "; ".join(str(f) for f in failures),
            hint=f"consoles and journals saved in {where}",
        )
    return started


def halt(config: LabConfig) -> list[str]:
    """Shut every node down cleanly, in parallel; the lab can be started again."""
    from provisioner.hypervisor.libvirt import LibvirtHost

    def one(node: NodeSpec) -> str:
        host = LibvirtHost.open()
        try:
            host.shutdown(node_access.domain_of(config, node), timeout=SHUTDOWN_TIMEOUT)
            return node.name
        finally:
            host.close()

    with ThreadPoolExecutor(max_workers=max(1, len(config.nodes))) as pool:
        return list(pool.map(one, config.nodes))
