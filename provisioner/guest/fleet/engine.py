"""The engine: one leader at a time schedules units onto machines.

Leadership is the key ``lease/engine-leader`` (value ``{"MachineID":…,
"Version":1}``) created with a transaction that succeeds only if the key does
not exist, attached to a lease of TTL 5 * ``engine_reconcile_interval``. The
leader renews that lease on every pass; if it dies the lease expires and the
next engine to try takes over. If the leader's machine loses its presence
(``agent_ttl`` without heartbeat) the other engines revoke the leader lease at
once, so failover takes no longer than the machine's death is noticed. Every
schedule write is fenced by a compare on the leader key's create revision, so a
deposed leader cannot write.
"""

from __future__ import annotations

import logging
import math
import time

from provisioner.guest.fleet.errors import EtcdError
from provisioner.guest.fleet.etcd import cmp_create_revision, op_put
from provisioner.guest.fleet.registry import Registry, Snapshot, leader_value
from provisioner.guest.fleet.scheduler import (
    SCHEDULE,
    ClusterSnapshot,
    EngineTask,
    plan_engine_tasks,
    unschedulable_reasons,
)

log = logging.getLogger(__name__)


def engine_lease_ttl(reconcile_interval: float) -> int:
    """fleet's engine lease TTL: five reconcile intervals, whole seconds, at least 2."""
    return max(2, math.ceil(5 * reconcile_interval))


class Engine:
    """Leader election plus the scheduling pass."""

    def __init__(self, registry: Registry, machine_id: str, reconcile_interval: float) -> None:
        self.registry = registry
        self.machine_id = machine_id
        self.lease_ttl = engine_lease_ttl(reconcile_interval)
        self._lease = 0
        self._fence = 0
        self._last_unschedulable: dict[str, str] = {}

    @property
    def is_leader(self) -> bool:
        return self._lease != 0

    def ensure_leadership(self) -> bool:
        """Renew leadership if held, else try to take it; True if this engine leads."""
        etcd = self.registry.etcd
        if self._lease:
            if etcd.lease_keepalive(self._lease) > 0:
                return True
            log.warning("Engine leadership lost (lease %x expired)", self._lease)
            self._lease = 0
            self._fence = 0
        current = self.registry.leader()
        if current is not None:
            if current.lease and not self.registry.machine_present(current.machine_id):
                # The leader's machine lost its presence (dead for agent_ttl): end its
                # leadership now instead of waiting for the engine lease to run out.
                # Safe: its writes are fenced by the leader key it no longer holds.
                log.info("Engine leader %s has no presence; revoking its lease", current.machine_id)
                etcd.lease_revoke(current.lease)
            else:
                return False
        lease, _ = etcd.lease_grant(self.lease_ttl)
        try:
            result = etcd.txn(
                [cmp_create_revision(self.registry.leader_key, 0)],
                [op_put(self.registry.leader_key, leader_value(self.machine_id), lease)],
            )
        except EtcdError:
            etcd.lease_revoke(lease)
            raise
        if not result.succeeded:
            etcd.lease_revoke(lease)
            return False
        self._lease = lease
        self._fence = result.revision
        log.info("Engine leadership acquired (lease TTL %ds)", self.lease_ttl)
        return True

    def reconcile(self, snapshot: Snapshot) -> list[EngineTask]:
        """One scheduling pass over ``snapshot``; returns the tasks that took effect."""
        jobs = self.registry.jobs(snapshot)
        cluster = ClusterSnapshot(tuple(snapshot.machines.values()), tuple(jobs))
        tasks = plan_engine_tasks(cluster)
        started = time.monotonic()
        done: list[EngineTask] = []
        for task in tasks:
            if time.monotonic() - started > self.lease_ttl:
                log.warning("Engine reconcile aborted: ran longer than the leader lease TTL")
                break
            if task.kind == SCHEDULE:
                ok = self.registry.schedule_unit(task.unit, task.machine_id, self._fence)
            else:
                ok = self.registry.unschedule_unit(task.unit, task.machine_id, self._fence)
            if ok:
                log.info(
                    "EngineReconciler completed task: type=%s unit=%s machine=%s reason=%r",
                    task.kind,
                    task.unit,
                    task.machine_id,
                    task.reason,
                )
                done.append(task)
            else:
                log.warning("Engine task did not apply (registry changed): %s", task)
                break
        reasons = unschedulable_reasons(cluster)
        for name, reason in sorted(reasons.items()):
            if self._last_unschedulable.get(name) != reason:
                log.info("Unable to schedule unit %s: %s", name, reason)
        self._last_unschedulable = reasons
        return done

    def release(self) -> None:
        """Give leadership up (clean shutdown)."""
        if self._lease:
            try:
                self.registry.etcd.lease_revoke(self._lease)
                log.info("Engine leadership released")
            except EtcdError as exc:
                log.warning("Could not release engine leadership: %s", exc)
            self._lease = 0
            self._fence = 0
