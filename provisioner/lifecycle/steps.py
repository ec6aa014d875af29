"""``lab up`` as named steps with state on disk.

``up`` runs render -> host -> box -> network -> discovery -> registry -> drives ->
boot -> nodes -> cluster. Each step is idempotent and recorded in ``.lab/state.json``
after it ends, so an interrupted ``up`` resumes and ``destroy`` finds
everything; libvirt objects carry the lab's name so they are found even
without the state file. The node waits start with the boot and run while
``vagrant up`` waits for the guests in its own way; the cluster checks start
as soon as every node is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

from provisioner import nodes as node_access
from provisioner.accel import choose_accel
from provisioner.config import LabConfig
from provisioner.errors import LabError, WaitTimeout
from provisioner.hypervisor.vagrantpid import stop_left_running
from provisioner.lab import render, scale_record
from provisioner.lifecycle import infra
from provisioner.lifecycle.backends import Backends, NodeRunner, default_backends
from provisioner.lifecycle.cluster import CLUSTER_TIMEOUT
from provisioner.lifecycle.nodewait import NODE_TIMEOUT, NodeWaiter, first_line
from provisioner.lifecycle.teardown import save_diagnostics
from provisioner.locks import file_lock
from provisioner.progress import LAB, Progress
from provisioner.readiness import NodeFacts
from provisioner.state import LabState, StateFile

log = logging.getLogger(__name__)

BOOT_TIMEOUT = 1800.0  # vagrant up of every node, including a first box upload

PHASES = (
    "render",
    "host",
    "box",
    "network",
    "discovery",
    "registry",
    "drives",
    "boot",
    "nodes",
    "cluster",
)

NodeOutcome = NodeFacts | BaseException


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


class Run:
    """One ``lab up``: the steps, the state as it evolves, and the node waits under way."""

    def __init__(
        self,
        config: LabConfig,
        progress: Progress,
        accel: str,
        backends: Backends | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.accel = choose_accel(accel)
        self.backends = backends or default_backends(config.libvirt_uri)
        self.book = StateFile(config.state_dir)
        self.phase_seconds: dict[str, float] = {}
        self.facts: dict[str, NodeFacts] = {}
        self.cancel = threading.Event()
        self.waiter = NodeWaiter(config, progress, self.backends, self.book, self.cancel)
        # node waits started while `vagrant up` runs (see boot); set cancel to abandon them
        self.early: dict[str, Future[NodeOutcome]] = {}
        self.early_cluster: Future[str | None] | None = None
        self._waiters: ThreadPoolExecutor | None = None

    @property
    def state(self) -> LabState:
        return self.book.state

    @property
    def runners(self) -> dict[str, NodeRunner]:
        return self.waiter.runners

    def steps(self) -> Sequence[tuple[str, Callable[[], str]]]:
        config, backends = self.config, self.backends
        return (
            ("render", self.render),
            ("host", lambda: f"{backends.prepare_host(config)}; {self.accel.accel}"),
            ("box", lambda: backends.box(config, self.progress, backends.open_host)),
            (
                "network",
                lambda: infra.network(
                    config, backends.open_host, scaled=scale_record(self.state) is not None
                ),
            ),
            ("discovery", lambda: infra.discovery(config, self.state)),
            ("registry", lambda: backends.registry(config)),
            ("drives", lambda: infra.drives(config, backends.open_host)),
            ("boot", self.boot),
            ("nodes", self.nodes),
            ("cluster", self.cluster),
        )

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
        self.book.save(phase)

    def render(self) -> str:
        result = render(self.config, accel=self.accel.accel)
        self.book.reload()
        return f"{len(result.files)} files"

    # boot ----------------------------------------------------------------

    def boot(self) -> str:
        logs = node_access.log_dir(self.config)
        logs.mkdir(parents=True, exist_ok=True)
        booter = self.backends.booter(self.config.directory, logs / "vagrant.log")
        if "boot" not in self.state.phases:  # a boot that never finished: its leftovers
            cleared = infra.clear_half_made(self.config, self.backends.open_host)
            if cleared:
                log.info("removed what an interrupted vagrant up left: %s", ", ".join(cleared))
        for node in self.config.nodes:
            self.progress.update(node.name, "boot", "running")
        # The lab's own node and cluster checks need nothing from Vagrant but the
        # running guests: start them now, so they run while `vagrant up` waits for
        # SSH in its own way; the nodes and cluster steps then join them.
        self.start_node_waits()
        try:
            booter.up(timeout=BOOT_TIMEOUT, provision=False)
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
            self.early[node.name] = self._waiters.submit(self.waiter.ready, node, deadline)
        # and the cluster checks once every node is ready: they need the guests, not Vagrant
        self.early_cluster = self._waiters.submit(self._early_cluster, list(self.early.values()))

    def stop_node_waits(self) -> None:
        """Abandon the early node waits: polls stop, and closing the SSH connections
        ends a remote wait (``is-system-running --wait``) that is under way."""
        self.cancel.set()
        self.waiter.close()
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
            if isinstance(outcome, NodeFacts):
                self.facts[node.name] = outcome
                known_hosts[node.name] = self.runners[node.name].known_hosts_entry()
        if known_hosts:
            node_access.write_known_hosts(self.config, known_hosts)
        self.book.state = replace(
            self.state,
            machine_ids={name: facts.machine_id for name, facts in self.facts.items()},
        )
        if failures:
            raise LabError(
                f"{len(failures)} of {len(outcomes)} nodes are not ready:\n"
                + "\n".join(f"  {f}" for f in failures)
            )
        # every node learns every pinned node's key, for SSH between nodes (fleetctl)
        node_access.share_host_keys(
            self.config, {n.name: self.runners[n.name] for n in self.config.nodes}
        )
        degraded = [
            f"{n}: {', '.join(f.failed_units)}" for n, f in self.facts.items() if f.failed_units
        ]
        return "all running" if not degraded else "degraded: " + "; ".join(degraded)

    def _join_node_waits(self) -> list[NodeOutcome]:
        """The early waits' outcomes, each given NODE_TIMEOUT from the end of the boot."""
        deadline = time.monotonic() + NODE_TIMEOUT
        outcomes: list[NodeOutcome] = []
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

    def _early_cluster(self, nodes: Sequence[Future[NodeOutcome]]) -> str | None:
        """The cluster checks, as soon as every node is ready (the boot may still run);
        None when a node failed or the waits were abandoned: the nodes step reports."""
        outcomes = [future.result() for future in nodes]
        if self.cancel.is_set() or any(isinstance(o, BaseException) for o in outcomes):
            return None
        ids = {
            node.name: facts.machine_id
            for node, facts in zip(self.config.nodes, outcomes, strict=True)
            if isinstance(facts, NodeFacts)
        }
        return self.check_cluster(ids)

    def check_cluster(self, machine_ids: dict[str, str]) -> str:
        return self.backends.check_cluster(
            self.config, self.runners, machine_ids, self.progress, self.cancel.is_set
        )


# --- up ---------------------------------------------------------------------


def up(
    config: LabConfig,
    progress: Progress,
    *,
    accel: str = "auto",
    backends: Backends | None = None,
) -> UpResult:
    """Bring the lab up and verify it; resumes after an interruption."""
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        stop_left_running(config.state_dir, config.directory)  # a killed lab's vagrant
        run = Run(config, progress, accel, backends)
        if "cluster" in run.state.phases and _all_running(run):
            _check_same_shape(config, run.state)
            run.backends.registry(config)  # started again if it was stopped since
            return UpResult(True, _reports(run), {}, run.accel.accel)
        phase = PHASES[0]
        try:
            for phase, action in run.steps():
                run.step(phase, action)
        except (LabError, KeyboardInterrupt) as exc:
            if isinstance(exc, LabError) and phase in ("boot", "nodes", "cluster"):
                where = save_diagnostics(config, run.state, run.backends)
                exc.hint = f"consoles and journals saved in {where}" + (
                    f"; {exc.hint}" if exc.hint else ""
                )
            raise
        finally:
            run.stop_node_waits()  # abandons waits still running; closes every SSH connection
        return UpResult(False, _reports(run), run.phase_seconds, run.accel.accel)


def _reports(run: Run) -> tuple[NodeReport, ...]:
    reports = []
    for node in run.config.nodes:
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


def _all_running(run: Run) -> bool:
    with run.backends.open_host() as host:
        found = set(host.lab_objects(run.config.name).domains)
        wanted = [node_access.domain_of(run.config, node) for node in run.config.nodes]
        return all(d in found and host.state(d).is_active for d in wanted)


def _check_same_shape(config: LabConfig, state: LabState) -> None:
    running = sorted(state.machine_ids)
    wanted = sorted(node.name for node in config.nodes)
    if running != wanted:
        raise LabError(
            f"the running lab has nodes {', '.join(running)}, "
            f"the config asks for {', '.join(wanted)}",
            hint="`lab scale --workers M` changes the worker pool of a running lab; "
            "`lab destroy` first to change the core",
        )
