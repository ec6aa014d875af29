"""Fault drills, logs and teardown: kill, stop, start, halt, ``lab logs``, destroy."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import nodes as node_access
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import LabError, NodeError
from provisioner.hypervisor.vagrantpid import stop_left_running
from provisioner.lifecycle.backends import Backends, default_backends
from provisioner.lifecycle.faults import clear_for_destroy, etcd_leader, quorum_victims
from provisioner.lifecycle.infra import DISCOVERY_STATE
from provisioner.lifecycle.nodewait import NodeWaiter
from provisioner.locks import file_lock, host_lock_path
from provisioner.progress import Progress
from provisioner.state import (
    LIBVIRT_PATHS_FILE,
    LabState,
    StateFile,
    keep_rendered_record,
    load_state,
)

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost

SHUTDOWN_TIMEOUT = 180.0
JOURNAL_TIMEOUT = 90.0

# --- diagnostics ------------------------------------------------------------


def save_diagnostics(config: LabConfig, state: LabState, backends: Backends | None = None) -> Path:
    """Every node's journal (when it answers) beside its serial console log."""
    backends = backends or default_backends(config.libvirt_uri)
    runner_for = backends.runner
    logs = node_access.log_dir(config)
    logs.mkdir(parents=True, exist_ok=True)
    sync_consoles(config, backends.open_host)

    def one(node: NodeSpec) -> None:
        target = node_access.node_paths(config, node).journal
        try:
            runner = runner_for(config, state, node)
        except LabError as exc:
            target.write_text(f"journal not collected: {exc}\n")
            return
        try:
            result = runner.run(
                ["sudo", "journalctl", "-b", "--no-pager", "-o", "short-precise"],
                timeout=JOURNAL_TIMEOUT,
            )
            target.write_text(result.stdout + result.stderr)
        except LabError as exc:
            target.write_text(f"journal not collected: {exc}\n")
        finally:
            runner.close()

    with ThreadPoolExecutor(max_workers=max(1, len(config.nodes))) as pool:
        list(pool.map(one, config.nodes))
    return logs


def sync_consoles(config: LabConfig, open_host: Callable[[], LibvirtHost]) -> None:
    """Every node's console, read through libvirt, into ``.lab/logs`` (best effort:
    a console that cannot be read keeps the copy from the last read)."""
    try:
        with open_host() as host:
            for node in config.nodes:
                with contextlib.suppress(LabError):
                    node_access.sync_console(config, node, host)
    except LabError:
        return


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


# --- teardown -----------------------------------------------------------------


@dataclass(frozen=True)
class DestroyResult:
    domains: tuple[str, ...]
    volumes: tuple[str, ...]
    networks: tuple[str, ...]
    token_deleted: bool


def destroy(config: LabConfig, backends: Backends | None = None) -> DestroyResult:
    """Remove the lab's domains, volumes, network, discovery token, registry relays and state.

    Works from libvirt's view (everything carries the lab's name), so it also
    cleans up after an interrupted ``up`` or a lost state file. The shared box
    stays. The user's lab.yaml and fragments are never touched.
    """
    from provisioner.discovery import release_token, stop_legacy_daemon
    from provisioner.registry.host import release_lab

    open_host = (backends or default_backends(config.libvirt_uri)).open_host
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=60):
        # first a vagrant a killed lab left running: it would make domains meanwhile
        stop_left_running(config.state_dir, config.directory)
        state = load_state(config.state_dir)
        token_deleted = False
        if state.discovery and state.discovery.mode == "local":
            token_deleted = release_token(state.discovery.url)
        stop_legacy_daemon(config.state_dir / DISCOVERY_STATE)
        release_lab(config)  # the relays on its gateway; the host's registry and images stay
        sync_consoles(config, open_host)  # the console volumes go with the lab; logs stay
        with file_lock(host_lock_path(), "libvirt networks"), open_host() as host:
            clear_for_destroy(config, host)  # partitions and netem, while the taps exist
            removed = host.remove_lab(config.name)
        shutil.rmtree(config.directory / ".vagrant", ignore_errors=True)
        # The key goes too: a new lab in this directory gets a fresh one. Logs stay,
        # and so does the record of the files lab rendered here (a later render may
        # replace those, not files the user edited).
        keep_rendered_record(config.state_dir, state.rendered)
        for child in (
            "state.json",
            "config-drives",
            LIBVIRT_PATHS_FILE,
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


def halt(config: LabConfig, backends: Backends | None = None) -> list[str]:
    """Shut every node down cleanly, in parallel; the lab can be started again."""
    open_host = (backends or default_backends(config.libvirt_uri)).open_host

    def one(node: NodeSpec) -> str:
        with open_host() as host:
            host.shutdown(node_access.domain_of(config, node), timeout=SHUTDOWN_TIMEOUT)
        return node.name

    with ThreadPoolExecutor(max_workers=max(1, len(config.nodes))) as pool:
        return list(pool.map(one, config.nodes))


# --- drills -------------------------------------------------------------------


def _each_node(
    config: LabConfig,
    names: Sequence[str],
    action: Callable[[LibvirtHost, str], None],
    backends: Backends | None,
) -> list[str]:
    chosen = node_access.resolve_nodes(config, names)  # unknown names fail before any action
    with (backends or default_backends(config.libvirt_uri)).open_host() as host:
        done = []
        for node in chosen:
            action(host, node_access.domain_of(config, node))
            done.append(node.name)
        return done


def kill(config: LabConfig, names: Sequence[str], backends: Backends | None = None) -> list[str]:
    """Pull the plug (a hard power-off, like a machine dying)."""
    return _each_node(config, names, lambda host, dom: host.power_off(dom), backends)


def kill_leader(config: LabConfig, backends: Backends | None = None) -> list[str]:
    """Pull the plug on whichever member leads etcd now."""
    return kill(config, [etcd_leader(config, backends)], backends)


def kill_quorum(config: LabConfig, backends: Backends | None = None) -> list[str]:
    """Pull the plug on a majority of etcd's members, the leader among them: the
    cluster keeps no quorum and commits nothing until enough of them start again."""
    try:
        leader: str | None = etcd_leader(config, backends)
    except LabError:
        leader = None  # no leader now: a majority all the same
    victims = quorum_victims([member.name for member in config.members], leader)
    return kill(config, victims, backends)


def stop(config: LabConfig, names: Sequence[str], backends: Backends | None = None) -> list[str]:
    """Clean shutdown (ACPI), waiting until the node is off."""
    return _each_node(
        config, names, lambda host, dom: host.shutdown(dom, timeout=SHUTDOWN_TIMEOUT), backends
    )


def start(
    config: LabConfig,
    names: Sequence[str],
    progress: Progress,
    backends: Backends | None = None,
) -> list[str]:
    """Boot stopped nodes; return once each answers with its pinned host keys, its
    etcd member (if it is one) is healthy and fleet lists it again."""
    from provisioner.lifecycle.cluster import check_rejoined

    backends = backends or default_backends(config.libvirt_uri)
    started = _each_node(config, names, lambda host, dom: host.start(dom), backends)
    chosen = [config.node(name) for name in started]
    with ready_nodes(config, chosen, progress, backends) as waiter:
        machine_ids = load_state(config.state_dir).machine_ids
        check_rejoined(config, waiter.runners, machine_ids, progress)
    return started


@contextlib.contextmanager
def ready_nodes(
    config: LabConfig,
    chosen: Sequence[NodeSpec],
    progress: Progress,
    backends: Backends,
    *,
    pinned: bool = False,
) -> Iterator[NodeWaiter]:
    """Wait until every node in ``chosen`` is ready (see NodeWaiter), all in parallel;
    the waiter, with a runner per node, until the block ends. A node that does not come
    back fails the whole with every node's outcome, its console and journal saved."""
    book = StateFile(config.state_dir)
    waiter = NodeWaiter(config, progress, backends, book, pinned=pinned)
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            outcomes = list(pool.map(waiter.ready, chosen))
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            where = save_diagnostics(config, book.state, backends)
            raise NodeError(
                ", ".join(node.name for node in chosen),
                "did not come back: " + "; ".join(str(f) for f in failures),
                hint=f"consoles and journals saved in {where}",
            )
        yield waiter
    finally:
        waiter.close()
