"""What a rendered Vagrantfile has lab do when plain ``vagrant`` runs (``lab vagrant-hook``).

The Vagrantfile calls these so that a lab brought up by ``vagrant up`` is the lab
``lab up`` would make, recorded the same way:

- :func:`prepare` (``vagrant up``/``reload``, while the Vagrantfile is read): the
  host's libvirt, the box, the lab network, the discovery token (a fresh one when a
  new cluster is made from a token an earlier cluster used), and a config drive for
  every node not yet created;
- :func:`pin` (Vagrant's SSH meets a node with no pinned host key): the keys the node
  printed on its serial console, pinned;
- :func:`booted` (after ``vagrant up``/``reload`` of a node): a login with the pins,
  the node's machine-id and known_hosts line recorded, every running node given every
  node's host key;
- :func:`destroyed` (after ``vagrant destroy`` of a node): its pins, drive and console
  forgotten; once no node is left the token is released and marked spent.

Several hooks of one ``vagrant up`` run at once (one per machine): each changes the
lab's state only under the lab's hook lock, reading it afresh first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from provisioner import discovery_modes
from provisioner import nodes as node_access
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import LabError, NotReady, RemoteError, WaitTimeout
from provisioner.lab import scale_record
from provisioner.lifecycle import infra
from provisioner.lifecycle.backends import Backends, default_backends
from provisioner.locks import file_lock
from provisioner.progress import LAB, Progress
from provisioner.render import sha256_text
from provisioner.state import SPENT_DISCOVERY, LabState, StateFile
from provisioner.waits import wait_for

PREPARE_LOCK_TIMEOUT = 3600.0  # another prepare may be building and uploading the box
HOOK_LOCK_TIMEOUT = 120.0
PIN_TIMEOUT = 600.0
LOGIN_TIMEOUT = 300.0
HOOK_LOCK = "hooks.lock"
# phases that say nodes were booted from the lab's token
BOOTED_PHASES = ("boot", "nodes", "cluster")
PREPARED_PHASES = ("render", "host", "box", "network", "discovery", "drives")


@contextlib.contextmanager
def _changing_state(config: LabConfig) -> Iterator[StateFile]:
    """The lab's state, read afresh under the hook lock; saved when the block ends."""
    with file_lock(
        config.state_dir / HOOK_LOCK, f"lab {config.name}'s state", timeout=HOOK_LOCK_TIMEOUT
    ):
        book = StateFile(config.state_dir)
        yield book
        book.save()


def _existing_domains(config: LabConfig, backends: Backends) -> set[str]:
    with backends.open_host() as host:
        return set(host.lab_objects(config.name).domains)


def _require_rendered(config: LabConfig, state: LabState, count: int) -> list[NodeSpec]:
    """The first ``count`` nodes, refusing a directory lab holds no render of."""
    if "render" not in state.phases or not state.name:
        raise LabError(
            f"{config.directory}: lab has no record of rendering this lab "
            "(`lab destroy` removes it with the lab)",
            hint=f"run `lab -C {config.directory} render` first, then `vagrant up` again",
        )
    if not 1 <= count <= len(config.nodes):
        raise LabError(
            f"config.rb asks for {count} nodes; the lab has {len(config.nodes)}",
            hint=f"run `lab -C {config.directory} render --nodes {count}` first",
        )
    chosen = list(config.nodes[:count])
    missing = [n.name for n in chosen if not user_data_path(config, n).is_file()]
    if missing:
        raise LabError(
            f"no rendered user-data for {', '.join(missing)}",
            hint=f"run `lab -C {config.directory} render` again",
        )
    return chosen


def user_data_path(config: LabConfig, node: NodeSpec) -> Path:
    return config.directory / "nodes" / node.name / "user-data"


def token_spent(state: LabState) -> bool:
    """True when the lab's discovery token bootstrapped nodes that are gone (or may be)."""
    record = state.discovery
    if record is None:
        return False
    return any(p in state.phases for p in BOOTED_PHASES) or (
        state.extra.get(SPENT_DISCOVERY) == record.url
    )


def fresh_discovery(config: LabConfig, book: StateFile) -> str | None:
    """A new cluster from a spent token: a fresh token swapped into every node's
    user-data (edited or not: only the URL changes), as coreos-vagrant's
    ``$new_discovery_url`` did on ``vagrant up``. None when nothing changed."""
    state = book.state
    record = state.discovery
    if record is None or not token_spent(state):
        return None
    if record.mode != "local":
        raise LabError(
            f"discovery: {record.url} bootstrapped a cluster already; "
            "a discovery token is for one cluster only",
            hint="put a new discovery URL in lab.yaml (discovery:) or pass "
            f"`lab -C {config.directory} render --discovery URL`, then `vagrant up` again",
        )
    fresh = discovery_modes.resolve(config, None)
    assert fresh is not None  # local mode always has a token
    rendered = dict(state.rendered)
    for node in config.nodes:
        path = user_data_path(config, node)
        if not path.is_file():
            continue
        old = path.read_text()
        new = old.replace(record.url, fresh.url)
        if new == old:
            continue
        rel = str(path.relative_to(config.directory))
        if rendered.get(rel) == sha256_text(old):  # lab's own file: still lab's
            rendered[rel] = sha256_text(new)
        path.write_text(new)
    book.state = replace(
        state,
        discovery=fresh,
        rendered=rendered,
        phases=tuple(p for p in state.phases if p not in BOOTED_PHASES),
        host_keys={},
        machine_ids={},
        extra={k: v for k, v in state.extra.items() if k != SPENT_DISCOVERY},
    )
    (config.state_dir / node_access.KNOWN_HOSTS).unlink(missing_ok=True)
    return fresh.url


def prepare(
    config: LabConfig, count: int, progress: Progress, backends: Backends | None = None
) -> str:
    """Everything ``vagrant up`` of the first ``count`` nodes needs that lab makes."""
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=PREPARE_LOCK_TIMEOUT):
        book = StateFile(config.state_dir)
        chosen = _require_rendered(config, book.state, count)

        def step(phase: str, action: Callable[[], str]) -> None:
            progress.update(LAB, phase, "running")
            try:
                detail = action()
            except BaseException as exc:
                progress.update(LAB, phase, "failed", str(exc).split("\n")[0][:120])
                raise
            progress.update(LAB, phase, "ok", detail)
            with _changing_state(config) as fresh:
                fresh.state = fresh.state.with_phase(phase)
            book.reload()

        step("host", lambda: backends.prepare_host(config))
        step("box", lambda: backends.box(config, progress, backends.open_host))
        existing = _existing_domains(config, backends)
        new = [n for n in chosen if node_access.domain_of(config, n) not in existing]
        if not existing:  # a new cluster: never from a token an earlier one used
            with _changing_state(config) as fresh:
                swapped = fresh_discovery(config, fresh)
            if swapped:
                progress.update(LAB, "discovery", "running", f"new cluster: {swapped}")
            book.reload()
        scaled = scale_record(book.state) is not None
        step("network", lambda: infra.network(config, backends.open_host, scaled=scaled))
        step("discovery", lambda: infra.discovery(config, book.state))
        if new:
            for node in new:
                _forget_node(config, node, backends)
            step("drives", lambda: infra.drives(config, backends.open_host, only=new))
        made = ", ".join(n.name for n in new) or "none"
        return f"ready for vagrant: {len(chosen)} node(s); new: {made}"


def _forget_node(config: LabConfig, node: NodeSpec, backends: Backends) -> None:
    """What lab kept of a node whose domain is gone: pins, machine-id, known_hosts
    lines, its drive and console volumes (a console would still show the old host keys)."""
    from provisioner.hypervisor.volumes import config_volume, console_volume

    domain = node_access.domain_of(config, node)
    pool = node_access.libvirt_paths(config).get("pool", {}).get("name", "default")
    with backends.open_host() as host:
        for volume in (config_volume(domain), console_volume(domain)):
            host.delete_volume(pool, volume)
    with _changing_state(config) as book:
        state = book.state
        book.state = replace(
            state,
            host_keys={k: v for k, v in state.host_keys.items() if k != node.name},
            machine_ids={k: v for k, v in state.machine_ids.items() if k != node.name},
        )
        placed = node_access.libvirt_paths(config)
        if placed:
            for section in ("drives", "consoles"):
                placed.get(section, {}).pop(node.name, None)
            infra.write_libvirt_paths(config, placed)
        node_access.forget_known_hosts(config, node)
    node_access.node_paths(config, node).console.unlink(missing_ok=True)


def pin(
    config: LabConfig, name: str, backends: Backends | None = None, timeout: float = PIN_TIMEOUT
) -> list[str]:
    """The node's host keys from its serial console, checked against (or first
    recorded as) its pins; the pins (``"TYPE SHA256:..."``)."""
    backends = backends or default_backends(config.libvirt_uri)
    node = config.node(name)
    console = node_access.node_paths(config, node).console

    def printed() -> dict[str, str] | None:
        with backends.open_host() as host:
            try:
                node_access.sync_console(config, node, host)
            except LabError as exc:
                raise NotReady(f"cannot read the console yet: {exc.message}") from exc
        return node_access.console_fingerprints(config, node) or None

    found = wait_for(
        name,
        f"host-key fingerprints on the serial console ({console})",
        time.monotonic() + timeout,
        printed,
        interval=1.0,
    )
    with _changing_state(config) as book:
        pinned = dict(node_access.pinned_pairs(book.state.host_keys.get(name, [])))
        node_access.check_pins(name, pinned, found)
        book.state.host_keys[name] = node_access.stored_pins({**found, **pinned})
        return list(book.state.host_keys[name])


def booted(
    config: LabConfig, name: str, backends: Backends | None = None, timeout: float = LOGIN_TIMEOUT
) -> str:
    """A node Vagrant brought up, as ``lab up`` records one: pinned, logged into with
    the pins, its machine-id and known_hosts line kept; then every running node gets
    every pinned node's host key (for SSH between nodes, as fleetctl does)."""
    backends = backends or default_backends(config.libvirt_uri)
    node = config.node(name)
    pin(config, name, backends)
    runner = backends.runner(config, StateFile(config.state_dir).state, node)
    try:

        def machine_id() -> str | None:
            result = runner.run(["cat", "/etc/machine-id"], timeout=30)
            if not result.succeeded or not result.stdout.strip():
                raise NotReady(f"no machine-id yet: {result.stderr.strip()}")
            return result.stdout.strip()

        found = wait_for(
            name,
            "a login with the lab's key and pinned host keys",
            time.monotonic() + timeout,
            machine_id,
            interval=2.0,
            transient=(RemoteError, WaitTimeout),
        )
        entry = runner.known_hosts_entry()
    finally:
        runner.close()
    with _changing_state(config) as book:
        book.state = replace(
            book.state.with_phase("boot"),
            machine_ids={**book.state.machine_ids, name: found},
        )
        node_access.write_known_hosts(config, {name: entry})
    shared = _share_host_keys(config, backends)
    return f"{name}: pinned, machine-id {found}; host keys shared with {shared}"


def _share_host_keys(config: LabConfig, backends: Backends) -> str:
    """Every running, pinned node gets every pinned node's key (best effort: a node
    still booting gets them from the next hook or ``lab up``)."""
    state = StateFile(config.state_dir).state
    existing = _existing_domains(config, backends)
    runners = {}
    try:
        for node in config.nodes:
            if node.name in state.host_keys and node_access.domain_of(config, node) in existing:
                runners[node.name] = backends.runner(config, state, node)
        try:
            node_access.share_host_keys(config, runners)
        except LabError as exc:
            return f"some nodes only ({exc.message.splitlines()[0]})"
    finally:
        for runner in runners.values():
            runner.close()
    return ", ".join(runners) or "no node"


def destroyed(config: LabConfig, name: str, backends: Backends | None = None) -> str:
    """After ``vagrant destroy`` of a node: forget it; once no node of the lab is left,
    release the discovery token and mark it spent, so the next ``vagrant up`` makes a
    new cluster with a new token."""
    from provisioner.discovery import release_token

    backends = backends or default_backends(config.libvirt_uri)
    node = config.node(name)
    existing = _existing_domains(config, backends)
    if node_access.domain_of(config, node) in existing:
        return f"{name}: still defined in libvirt; nothing forgotten"
    _forget_node(config, node, backends)
    if existing:
        return f"{name} forgotten"
    with _changing_state(config) as book:
        state = book.state
        record = state.discovery
        extra = dict(state.extra)
        if record is not None and any(p in state.phases for p in BOOTED_PHASES):
            extra[SPENT_DISCOVERY] = record.url
        book.state = replace(
            state, phases=tuple(p for p in state.phases if p not in BOOTED_PHASES), extra=extra
        )
    if record is not None and record.mode == "local":
        release_token(record.url)
    return f"{name} forgotten; no node left: the next `vagrant up` bootstraps a new cluster"
