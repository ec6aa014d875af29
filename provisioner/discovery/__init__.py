"""The etcd discovery service labs bootstrap from, and its tokens.

The service is a real etcd (Debian's etcd-server, 3.4) with its v2 keys API
on, which is etcd's discovery protocol; :mod:`.service` runs it and
:mod:`.client` creates, reads and deletes tokens in it. A discovery URL is
``http://HOST:PORT/v2/keys/_etcd/registry/<token>``.
"""

from __future__ import annotations

from provisioner.discovery.client import (
    Health,
    Member,
    TokenState,
    check_health,
    create_token,
    delete_token,
    fetch_token,
    new_token,
)
from provisioner.discovery.protocol import DEFAULT_PORT, DEFAULT_SIZE, parse_listen, token_url
from provisioner.discovery.service import (
    DiscoveryServer,
    ensure_running,
    release_token,
    retire,
    run_service,
    service_dir,
    state_root,
    stop_daemon,
    stop_legacy_daemon,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SIZE",
    "DiscoveryServer",
    "Health",
    "Member",
    "TokenState",
    "check_health",
    "create_token",
    "delete_token",
    "ensure_running",
    "fetch_token",
    "new_token",
    "parse_listen",
    "release_token",
    "retire",
    "run_service",
    "service_dir",
    "state_root",
    "stop_daemon",
    "stop_legacy_daemon",
    "token_url",
]
