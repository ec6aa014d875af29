"""The project's etcd discovery service and its client.

Speaks what ``etcd --discovery`` (etcd 3.4, ``etcdserver/api/v2discovery``)
speaks: tokens at ``/<token>`` (discovery.etcd.io style) and at
``/v2/keys/_etcd/registry/<token>`` (plain etcd style), ``/new?size=N`` to
create one, ``DELETE /<token>`` to drop one, ``/health``.
"""

from __future__ import annotations

from provisioner.discovery.client import (
    Health,
    Member,
    TokenState,
    check_health,
    delete_token,
    fetch_token,
    new_token,
)
from provisioner.discovery.daemon import ensure_running, run_service, stop_daemon
from provisioner.discovery.protocol import DEFAULT_PORT, DEFAULT_SIZE, parse_listen
from provisioner.discovery.server import DiscoveryServer

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SIZE",
    "DiscoveryServer",
    "Health",
    "Member",
    "TokenState",
    "check_health",
    "delete_token",
    "ensure_running",
    "fetch_token",
    "new_token",
    "parse_listen",
    "run_service",
    "stop_daemon",
]
