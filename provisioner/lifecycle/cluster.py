"""The cluster checks of ``lab up``: etcd healthy, a key round trip, fleet lists every node,
and (with flannel on) every node holds a subnet lease of the overlay.

They look from the host first (etcd's ``/health`` and fleet's registry over the
lab network) and start ``etcdctl`` or ``fleetctl`` in a guest only when the host
sees them ready or cannot tell: every command costs a booting guest CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from provisioner import facts, readiness
from provisioner.config import LabConfig
from provisioner.errors import NotReady, RemoteError, WaitTimeout
from provisioner.progress import Progress
from provisioner.remote.runner import Runner
from provisioner.waits import wait_for

CLUSTER_TIMEOUT = 600.0  # etcd healthy, fleet sees everyone
CLUSTER_ROW = "etcd+fleet"  # the progress row of the cluster checks
# Besides the checks' own NotReady (a member not healthy yet, a machine not listed yet):
# etcdctl or fleetctl in a guest that fails to connect or stalls while etcd or fleet starts
TRANSIENT = (RemoteError, WaitTimeout)


def check_cluster(
    config: LabConfig,
    runners: Mapping[str, Runner],
    machine_ids: Mapping[str, str],
    progress: Progress,
    cancelled: Callable[[], bool],
) -> str:
    """Every etcd member healthy, a key written on one read on all, fleet sees every node."""
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    first = readiness.first_member_runner(config, runners)
    host_view = readiness.HostView.for_lab(config)

    def etcd_ready() -> str | None:
        # the host's answer when it has one; etcdctl on a node only when it cannot tell
        return host_view.etcd_ready_or(lambda: readiness.etcd_healthy(config, first))

    etcd = wait_for(
        "etcd",
        "every etcd member healthy",
        deadline,
        etcd_ready,
        interval=readiness.HOST_POLL,
        transient=TRANSIENT,
        cancelled=cancelled,
    )
    # its own row: these may run while the lab row still shows the boot
    progress.update(CLUSTER_ROW, "cluster", "running", etcd)
    failed = threading.Event()

    def round_trip() -> str:
        try:
            trip = readiness.etcd_round_trip(readiness.member_urls(config), runners, host_view)
        except BaseException:
            failed.set()  # the fleet check need not wait out its deadline
            raise
        progress.update(CLUSTER_ROW, "cluster", "running", trip)
        return trip

    def fleet_ready() -> str | None:
        host_view.fleet_not_registered(machine_ids)  # no fleetctl before it can list all
        return readiness.fleet_machines(config, first, machine_ids)

    def fleet_listing() -> str:
        return wait_for(
            "fleet",
            "fleetctl list-machines to show every node",
            deadline,
            fleet_ready,
            interval=readiness.HOST_POLL,
            transient=TRANSIENT,
            cancelled=lambda: failed.is_set() or cancelled(),
        )

    def overlay() -> str:
        return wait_for(
            "flannel",
            "a subnet lease for every node",
            deadline,
            lambda: readiness.flannel_ready(config, first, host_view),
            interval=readiness.HOST_POLL,
            transient=TRANSIENT,
            cancelled=lambda: failed.is_set() or cancelled(),
        )

    # independent checks, each on its own SSH channels: run them side by side
    with ThreadPoolExecutor(max_workers=3) as pool:
        trip = pool.submit(round_trip)
        fleet = pool.submit(fleet_listing)
        flannel = pool.submit(overlay) if config.flannel.enabled else None
        trip.result()
        summary = f"etcd {etcd}; fleet {fleet.result()}"
        if flannel is not None:
            summary += f"; overlay {flannel.result()}"
    progress.update(CLUSTER_ROW, "cluster", "ok", summary)
    return summary


def check_rejoined(
    config: LabConfig,
    runners: Mapping[str, Runner],
    machine_ids: Mapping[str, str],
    progress: Progress,
) -> str:
    """The nodes of ``runners`` back in the cluster (``lab start``): each etcd member
    among them healthy on its own endpoint, and fleet listing each one's machine-id
    (asked on the node itself: its fleetctl needs its etcd, member or not)."""
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    members = {member.name for member in config.members}
    urls = readiness.member_urls(config)

    def back(name: str, runner: Runner) -> str:
        if name in members:
            [health] = facts.endpoint_health([urls[name]]).run(runner)
            if not health.healthy:
                raise NotReady(f"{name}: its etcd member is not healthy yet")
        listed = {m.machine_id for m in facts.FLEET_MACHINES.run(runner)}
        if machine_ids[name] not in listed:
            raise NotReady(f"{name}: fleet does not list it yet")
        return name

    def one(item: tuple[str, Runner]) -> str:
        name, runner = item
        return wait_for(
            name,
            "its etcd member healthy and fleet listing it",
            deadline,
            lambda: back(name, runner),
            interval=readiness.HOST_POLL,
            transient=TRANSIENT,
        )

    progress.update(CLUSTER_ROW, "rejoin", "running", ", ".join(runners))
    with ThreadPoolExecutor(max_workers=max(1, len(runners))) as pool:
        back_in = list(pool.map(one, runners.items()))
    summary = f"{', '.join(back_in)} back in etcd and fleet"
    progress.update(CLUSTER_ROW, "rejoin", "ok", summary)
    return summary
