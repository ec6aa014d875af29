"""The infrastructure steps of ``lab up``: host, box, network, discovery, registry, drives.

Each returns the one-line detail its progress row shows and is idempotent: run
again after an interruption, it finds what the last run made.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import nodes as node_access
from provisioner.config import LabConfig, NodeSpec
from provisioner.configdrive import build_config_drive, meta_data
from provisioner.errors import LabError
from provisioner.locks import file_lock, host_lock_path
from provisioner.progress import LAB, Progress
from provisioner.state import LIBVIRT_PATHS_FILE, LabState, atomic_write, ensure_ssh_key

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost

REMOTE_TIMEOUT = 30.0  # for another host's libvirt to answer
DISCOVERY_STATE = "discovery"  # .lab/discovery: the per-lab service of earlier versions


def prepare_host(config: LabConfig) -> str:
    """libvirt answering at the lab's URI (its daemons started when it is this host's)
    and its storage pool; checked before anything is made."""
    from provisioner.hypervisor.daemons import (
        ensure_daemons,
        ensure_default_pool,
        wait_for_libvirt,
    )
    from provisioner.hypervisor.libvirt import is_local

    uri = config.libvirt_uri
    if is_local(uri):
        summary = ensure_daemons(start=True, uri=uri).summary
    else:
        wait_for_libvirt(uri, timeout=REMOTE_TIMEOUT)
        summary = f"{uri} answers"
    pool = ensure_default_pool(create=True, uri=uri)
    return f"{summary}; {pool.summary}"


def prepare_box(config: LabConfig, progress: Progress, open_host: Callable[[], LibvirtHost]) -> str:
    """The lab's box built (or cached), in Vagrant, and uploaded into the storage pool."""
    from provisioner.box.build import build_box
    from provisioner.lab import box_name

    built = build_box(config.box, add_to_vagrant=True)
    expected = box_name(config)
    if built.vagrant_name != expected:
        raise LabError(
            f"built box {built.vagrant_name} but the Vagrantfile wants {expected}",
            hint="the guest software changed during the build; run `lab up` again",
        )
    uploaded = upload_box(built.vagrant_name, built.virtual_size, progress, open_host)
    return f"{built.vagrant_name} ({'cached' if built.cached else 'built'}; {uploaded})"


def upload_box(
    vagrant_name: str,
    virtual_size: int,
    progress: Progress,
    open_host: Callable[[], LibvirtHost],
) -> str:
    """The box's copy in the storage pool, made once per host under the host lock."""
    from provisioner.box.build import list_boxes
    from provisioner.hypervisor.boxvolume import box_volume
    from provisioner.hypervisor.daemons import DEFAULT_POOL

    try:
        volume = box_volume(vagrant_name, virtual_size)
    except OSError as exc:
        raise LabError(
            f"box {vagrant_name} is not where Vagrant unpacks boxes: {exc}",
            hint="`lab box build` adds it again",
        ) from exc
    progress.update(LAB, "box", "running", f"pool volume {volume.name}")
    kept = {box.vagrant_name for box in list_boxes()} | {vagrant_name}
    with file_lock(host_lock_path(), "the box upload"), open_host() as host:
        made = host.ensure_box_volume(volume, DEFAULT_POOL)  # the Vagrantfile's pool
        # copies of boxes the cache has let go, once no lab's disk backs onto them
        removed = host.remove_unused_box_volumes(kept, DEFAULT_POOL)
    where = "uploaded into the pool" if made else "in the pool"
    return where + (f"; {len(removed)} unused old box volumes removed" if removed else "")


def network(
    config: LabConfig, open_host: Callable[[], LibvirtHost], *, scaled: bool = False
) -> str:
    """The lab's isolated libvirt network with a DHCP reservation per node.

    ``scaled``: ``lab scale`` changed the lab's shape, so an existing network's
    reservations follow the nodes (updated in place) instead of being refused."""
    from provisioner.hypervisor.network import DhcpHost, lab_network

    hosts = [DhcpHost(node.name, node.mac, ipaddress.IPv4Address(node.ip)) for node in config.nodes]
    spec = lab_network(config.name, config.subnet, hosts)
    with file_lock(host_lock_path(), "libvirt networks"), open_host() as host:
        if scaled and host.find_network(spec.name) is not None:
            host.update_dhcp_hosts(spec)
        created = host.ensure_network(spec)
    return f"{spec.name} {spec.subnet} ({'created' if created else 'exists'}, isolated)"


def discovery(config: LabConfig, state: LabState) -> str:
    """The lab's discovery token, on its own service when the mode is ``local``."""
    record = state.discovery
    if record is None:
        return "static bootstrap"
    if record.mode != "local":
        return f"{record.mode}: {record.url}"
    from provisioner.discovery import create_token, ensure_running, stop_legacy_daemon

    stop_legacy_daemon(config.state_dir / DISCOVERY_STATE)
    ensure_running(config.gateway, int(urllib.parse.urlsplit(record.url).port or 80), timeout=30)
    create_token(record.url, record.size)
    return record.url


def registry(config: LabConfig) -> str:
    """The host's image registry running (kept across labs), the box's busybox in it, and
    the lab's relay on its gateway (see provisioner/registry/service.py)."""
    from provisioner.box.build import docker_archives
    from provisioner.registry.host import for_lab

    archives = docker_archives(config.box) if config.registry.enabled else []
    return for_lab(config, archives)


def drives(
    config: LabConfig,
    open_host: Callable[[], LibvirtHost],
    only: Sequence[NodeSpec] | None = None,
) -> str:
    """One config-2 drive per node (its user-data and the lab's public key), built under
    ``.lab/config-drives`` and uploaded into the storage pool through libvirt, with an
    empty volume beside it for the node's serial console: QEMU, on whichever host
    libvirt runs it, reads and writes only pool volumes, never the lab directory.

    With ``only`` (``lab scale``), just those nodes' drives are made and added to the
    record of the others: a running node's drive is never rewritten under it."""
    from provisioner.hypervisor.daemons import DEFAULT_POOL
    from provisioner.hypervisor.volumes import config_volume, console_volume

    chosen = list(config.nodes if only is None else only)
    _, public_key = ensure_ssh_key(config.state_dir)
    for node in chosen:
        user_data = (config.directory / "nodes" / node.name / "user-data").read_text()
        build_config_drive(
            user_data,
            meta_data(node.name, node.ip, {"lab": public_key}),
            drive_path(config, node.name),
        )
    placed: dict[str, dict[str, str]] = {"drives": {}, "consoles": {}}
    if only is not None:
        placed |= {k: dict(v) for k, v in node_access.libvirt_paths(config).items()}
    placed["pool"] = {"name": DEFAULT_POOL}
    with open_host() as host:
        for node in chosen:
            domain = node_access.domain_of(config, node)
            placed["drives"][node.name] = host.upload_volume(
                DEFAULT_POOL, config_volume(domain), drive_path(config, node.name)
            )
            placed["consoles"][node.name] = host.ensure_empty_volume(
                DEFAULT_POOL, console_volume(domain)
            )
    write_libvirt_paths(config, placed)
    return f"{len(chosen)} config-2 drives, in pool {DEFAULT_POOL}"


def clear_half_made(config: LabConfig, open_host: Callable[[], LibvirtHost]) -> list[str]:
    """Remove what a ``vagrant up`` stopped mid-way made of a node but never recorded as
    its own (no ``.vagrant/machines/<node>/libvirt/id``): its disk, or its domain. That
    vagrant was killed between making them and writing the id (a lab SIGKILLed, the
    vagrant it left running stopped); the next ``vagrant up`` would stop on them
    ("volume already exists"). Call it only before the boot ever finished: nothing
    of value is on them then. The node's config drive and console stay. The names
    of what was removed."""
    from provisioner.hypervisor.daemons import DEFAULT_POOL

    cleared: list[str] = []
    with open_host() as host:
        found = host.lab_objects(config.name, DEFAULT_POOL)
        for node in config.nodes:
            if vagrant_machine_id(config, node.name).exists():
                continue
            domain = node_access.domain_of(config, node)
            if domain in found.domains:
                host.undefine(domain, remove_volumes=False)
                cleared.append(domain)
            disk = f"{domain}.img"  # vagrant-libvirt names a node's disk after its domain
            if disk in found.volumes and host.delete_volume(DEFAULT_POOL, disk):
                cleared.append(disk)
    return cleared


def vagrant_machine_id(config: LabConfig, node: str) -> Path:
    """Where Vagrant keeps the libvirt domain id of a machine it made."""
    return config.directory / ".vagrant" / "machines" / node / "libvirt" / "id"


def write_libvirt_paths(config: LabConfig, placed: dict[str, dict[str, str]]) -> None:
    atomic_write(
        config.state_dir / LIBVIRT_PATHS_FILE, (json.dumps(placed, indent=2) + "\n").encode()
    )


def drive_path(config: LabConfig, node: str) -> Path:
    return config.state_dir / "config-drives" / f"{node}.iso"
