"""Pure pieces of etcd discovery: token ids, sizes, discovery URLs, listen addresses.

A token is the directory ``/_etcd/registry/<token>`` of an etcd with its v2
keys API on, and its discovery URL is that directory's v2 URL,
``http://HOST:PORT/v2/keys/_etcd/registry/<token>``: the form etcd's own
documentation gives for a custom discovery service. etcd's discovery client
cuts the path off the URL and uses it as the key, so a token of
discovery.etcd.io (``https://discovery.etcd.io/<token>``) reads the same way.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from typing import Final
from urllib.parse import urlsplit

from provisioner.errors import DiscoveryError

REGISTRY: Final = "/_etcd/registry"
KEYS_PREFIX: Final = "/v2/keys"
DEFAULT_SIZE: Final = 3
DEFAULT_PORT: Final = 8087


def new_token_id() -> str:
    """A fresh token: 32 hex digits from 16 random bytes, like discovery.etcd.io."""
    return secrets.token_hex(16)


def check_size(size: int) -> int:
    """The expected cluster size of a token: a whole number of at least 1."""
    if size < 1:
        raise DiscoveryError(
            f"invalid size {size}: a cluster needs at least 1 member",
            hint="the cluster size must be a whole number of at least 1",
        )
    return size


def token_url(server_url: str, token: str) -> str:
    """The discovery URL of ``token`` on the etcd at ``server_url``."""
    return f"{server_url.rstrip('/')}{KEYS_PREFIX}{REGISTRY}/{token}"


def connect_host(host: str) -> str:
    """A host clients can connect to: wildcard listen addresses become loopback."""
    if host == "":
        return "127.0.0.1"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host
    if literal.is_unspecified:
        return "::1" if literal.version == 6 else "127.0.0.1"
    return host


def http_url(host: str, port: int) -> str:
    """``http://host:port`` with an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def base_url(host: str, port: int) -> str:
    """The URL clients use for a listen address (wildcards become loopback)."""
    return http_url(connect_host(host), port)


def split_discovery_url(discovery_url: str) -> tuple[str, str]:
    """``(service base URL, token)`` of a discovery URL; DiscoveryError if it is none."""
    parts = urlsplit(discovery_url)
    path = parts.path.rstrip("/")
    token = path.rsplit("/", 1)[-1]
    if parts.scheme not in ("http", "https") or not parts.netloc or not token:
        raise DiscoveryError(
            f"not a discovery URL: {discovery_url!r}",
            hint="expected http://HOST:PORT/v2/keys/_etcd/registry/<token>, "
            "as printed by `lab discovery new`",
        )
    prefix = path[: -len(token)].rstrip("/")
    if prefix not in ("", KEYS_PREFIX + REGISTRY):
        raise DiscoveryError(
            f"not a discovery URL: {discovery_url!r}",
            hint="expected http://HOST:PORT/v2/keys/_etcd/registry/<token> "
            "or https://discovery.etcd.io/<token>",
        )
    return f"{parts.scheme}://{parts.netloc}", token


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` to ``(host, port)``.

    An empty host (``:PORT``) listens on all IPv4 interfaces.
    """
    hint = f"give the address as HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}"
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):([0-9]{1,5})", text.strip())
    if match is None:
        raise DiscoveryError(f"invalid listen address {text!r}", hint=hint)
    host = match.group(1) or match.group(2) or ""
    port = int(match.group(3))
    if port > 65535:
        raise DiscoveryError(f"invalid listen address {text!r}: port {port} > 65535", hint=hint)
    return host, port
