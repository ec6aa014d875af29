"""Which etcd discovery a lab bootstraps from, and its token.

- ``local`` (default): the host's discovery service (a real etcd with its v2
  API on) at the lab network's gateway address; works with no internet. The
  token is made here and registered with the service by ``lab up``.
- ``public``: discovery.etcd.io, for users online (never contacted by tests).
- ``static``: no discovery; ``initial-cluster`` from the reserved addresses.
- an explicit URL: used as given.

A token is kept in lab state and reused by re-renders of the same lab, but a
destroyed lab forgets it, so a token never bootstraps two clusters.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request

from provisioner.config import DISCOVERY_PORT, LabConfig
from provisioner.errors import DiscoveryError
from provisioner.state import DiscoveryRecord

# The discovery service's port and token URL form (discovery.protocol's DEFAULT_PORT
# and token_url), spelled out so rendering does not import the service.
LOCAL_PORT = DISCOVERY_PORT
REGISTRY_PATH = "/v2/keys/_etcd/registry/"
PUBLIC_SERVICE = "https://discovery.etcd.io"


def local_prefix(config: LabConfig) -> str:
    return f"http://{config.gateway}:{LOCAL_PORT}{REGISTRY_PATH}"


def local_url(config: LabConfig, token: str) -> str:
    return local_prefix(config) + token


def new_public_token(size: int, timeout: float = 15.0) -> str:
    url = f"{PUBLIC_SERVICE}/new?size={size}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - fixed https URL
            return str(reply.read().decode().strip())
    except (urllib.error.URLError, OSError) as exc:
        raise DiscoveryError(
            f"could not get a token from {PUBLIC_SERVICE}: {exc}",
            hint="use --discovery local (works offline) or --discovery static",
        ) from exc


def resolve(config: LabConfig, previous: DiscoveryRecord | None) -> DiscoveryRecord | None:
    """The discovery record for this render; reuses ``previous`` when it still fits."""
    size = len(config.members)
    mode = config.discovery
    if mode == "static":
        return None
    if previous and previous.mode == mode and previous.size == size and _fits(previous, config):
        return previous
    if mode == "local":
        return DiscoveryRecord(
            mode="local", url=local_url(config, secrets.token_hex(16)), size=size
        )
    if mode == "public":
        return DiscoveryRecord(mode="public", url=new_public_token(size), size=size)
    return DiscoveryRecord(mode=mode, url=mode, size=size)


def _fits(record: DiscoveryRecord, config: LabConfig) -> bool:
    if record.mode == "local":
        return record.url.startswith(local_prefix(config))
    if record.mode == "public":
        return True
    return record.url == config.discovery


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
