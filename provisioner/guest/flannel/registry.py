"""Subnet leases in etcd v3 (flannel's pkg/subnet/etcd/local_manager.go and registry.go).

Keys: ``<prefix>/config`` (the network config) and ``<prefix>/subnets/<ip>-<len>``
(one lease each, JSON LeaseAttrs, attached to an etcd lease with a TTL).
Acquisition is a transaction that creates the key only if it does not exist, so two
nodes can never hold one subnet; a lost race reads the leases again and retries.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.guest.flannel.config import NetworkConfig
from provisioner.guest.flannel.errors import LeaseError
from provisioner.guest.flannel.subnets import (
    Lease,
    choose_subnet,
    compatible,
    lease_value,
    parse_lease,
    subnet_key,
)
from provisioner.guest.fleet.etcd import (
    EtcdClient,
    KeyValue,
    cmp_create_revision,
    cmp_value,
    op_delete,
    op_put,
    op_range,
)

log = logging.getLogger(__name__)

#: flannel's raceRetries: how often a lost create-if-absent is retried.
RACE_RETRIES = 10


@dataclass(frozen=True)
class Snapshot:
    leases: tuple[Lease, ...]
    kvs: Mapping[str, KeyValue]  # key -> key-value, for the leases
    revision: int


@dataclass(frozen=True)
class HeldLease:
    subnet: ipaddress.IPv4Network
    key: str
    lease_id: int
    ttl: int


class SubnetRegistry:
    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        base = prefix.rstrip("/")
        self.config_key = f"{base}/config"
        self.subnets_prefix = f"{base}/subnets/"

    def key(self, subnet: ipaddress.IPv4Network) -> str:
        return self.subnets_prefix + subnet_key(subnet)

    def config_text(self) -> str | None:
        found = self.client.get(self.config_key)
        return found.value if found else None

    def snapshot(self) -> Snapshot:
        """Every lease and the revision they were read at (one consistent read)."""
        result = self.client.txn([], [op_range(self.subnets_prefix, prefix=True)], retry=True)
        kvs = result.ranges()[0] if result.ranges() else []
        leases: list[Lease] = []
        by_key: dict[str, KeyValue] = {}
        for kv in kvs:
            lease = parse_lease(kv.key, kv.value)
            if lease is not None:
                leases.append(lease)
                by_key[kv.key] = kv
        return Snapshot(tuple(leases), by_key, result.revision)

    def acquire(
        self,
        config: NetworkConfig,
        public_ip: str,
        backend_data: Mapping[str, Any],
        *,
        previous: ipaddress.IPv4Network | None,
        ttl: int,
    ) -> HeldLease:
        """Take this node's lease: its own existing one, the previous subnet, or a free one."""
        value = lease_value(public_ip, config.backend_type, backend_data)
        for _ in range(RACE_RETRIES):
            snap = self.snapshot()
            mine = next((lease for lease in snap.leases if lease.public_ip == public_ip), None)
            if mine is not None:
                key = self.key(mine.subnet)
                kv = snap.kvs[key]
                if compatible(config, mine.subnet):
                    log.info(
                        "Found lease (%s) for current IP (%s), reusing", mine.subnet, public_ip
                    )
                    held = self._put_if(mine.subnet, value, ttl, kv.create_revision)
                    if held is not None:
                        return held
                    continue
                log.info(
                    "Found lease (%s) for current IP (%s) but not compatible with current "
                    "config, deleting",
                    mine.subnet,
                    public_ip,
                )
                self.client.txn([cmp_value(key, kv.value)], [op_delete(key)])
                continue
            subnet = choose_subnet(config, snap.leases, previous)
            if subnet == previous:
                log.info("Found previously leased subnet (%s), reusing", subnet)
            held = self._put_if(subnet, value, ttl, 0)
            if held is not None:
                log.info("Allocated lease (%s) to current node (%s)", subnet, public_ip)
                return held
            log.info("lost the race for %s to another node; trying again", subnet)
        raise LeaseError(
            f"could not acquire a subnet lease in {RACE_RETRIES} attempts (others kept "
            "taking the chosen subnet first)"
        )

    def _put_if(
        self, subnet: ipaddress.IPv4Network, value: str, ttl: int, created: int
    ) -> HeldLease | None:
        """Write the lease if the key's create revision is still ``created`` (0: absent)."""
        key = self.key(subnet)
        lease_id, granted = self.client.lease_grant(ttl)
        result = self.client.txn(
            [cmp_create_revision(key, created)], [op_put(key, value, lease_id)]
        )
        if result.succeeded:
            return HeldLease(subnet, key, lease_id, granted)
        self.client.lease_revoke(lease_id)
        return None

    def renew(self, held: HeldLease) -> bool:
        """Renew the etcd lease; False if it has already expired."""
        return self.client.lease_keepalive(held.lease_id) > 0
