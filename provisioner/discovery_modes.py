"""Which etcd discovery a lab bootstraps from, and its token.

- ``local`` (default): the host's discovery service (a real etcd with its v2
  API on) at the lab network's gateway address; works with no internet. The
  token is made here and registered with the service by ``lab up``.
- ``public``: discovery.etcd.io, for users online. lab never contacts it: the
  user fetches a token (``curl``) and passes its URL, which is then used as given.
- ``static``: no discovery; ``initial-cluster`` from the reserved addresses.
- an explicit URL: used as given.

A token is kept in lab state and reused by re-renders of the same lab, but a
destroyed lab forgets it, so a token never bootstraps two clusters.
"""

from __future__ import annotations

import secrets

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


def public_token_command(size: int) -> str:
    """The command that asks discovery.etcd.io for a token of ``size`` members."""
    return f"curl -w '\\n' '{PUBLIC_SERVICE}/new?size={size}'"


def public_token_needed(size: int) -> DiscoveryError:
    """``public`` without a URL: lab does not fetch tokens over the internet itself."""
    return DiscoveryError(
        f"public discovery needs a token from {PUBLIC_SERVICE} for {size} member(s); "
        "lab does not fetch it",
        hint=f"run `{public_token_command(size)}` and pass the URL it prints: "
        f"--discovery {PUBLIC_SERVICE}/<token> (or discovery: in lab.yaml)",
    )


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
        if previous and previous.mode == "public" and previous.size == size:
            return previous
        raise public_token_needed(size)
    return DiscoveryRecord(mode=mode, url=mode, size=size)


def _fits(record: DiscoveryRecord, config: LabConfig) -> bool:
    if record.mode == "local":
        return record.url.startswith(local_prefix(config))
    if record.mode == "public":
        return True
    return record.url == config.discovery


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
