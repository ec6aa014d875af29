"""Pure pieces of the discovery HTTP protocol: routes, parameters, URLs.

Two URL forms reach the same keyspace directory ``/_etcd/registry/<token>``:

* ``/<token>[/<key>]`` as served by discovery.etcd.io (token = 32 hex digits);
* ``/v2/keys/_etcd/registry/<token>[/<key>]`` as served by a plain etcd.

etcd's discovery client (``etcdserver/api/v2discovery``) cuts the path off the
discovery URL, uses it as the key and talks to ``scheme://host`` with an empty
keys prefix, so both forms work as ``--discovery`` URLs unchanged.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from provisioner.discovery.keyspace import (
    INDEX_NAN,
    INVALID_FIELD,
    TTL_NAN,
    EtcdError,
    clean_key,
)
from provisioner.errors import DiscoveryError

REGISTRY: Final = "/_etcd/registry"
KEYS_PREFIX: Final = "/v2/keys"
DEFAULT_SIZE: Final = 3
DEFAULT_PORT: Final = 8087
SERVICE_NAME: Final = "lab-discovery"
TOKEN_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
_HOST_HEADER: Final = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

Params = Mapping[str, Sequence[str]]
RouteKind = Literal["health", "new", "keys", "token", "not_found"]


@dataclass(frozen=True)
class Route:
    """Where a request path goes; ``key`` is the keyspace key for key routes."""

    kind: RouteKind
    key: str = ""
    token: str = ""


class BadRequestError(Exception):
    """A request for ``/new`` that cannot be served; the text goes to the client."""


def new_token_id() -> str:
    """A fresh token: 32 hex digits from 16 random bytes, like discovery.etcd.io."""
    return secrets.token_hex(16)


def token_key(token: str) -> str:
    return f"{REGISTRY}/{token}"


def registry_token(key: str) -> str | None:
    """The token a cleaned key belongs to, or None outside ``/_etcd/registry/<token>``."""
    if not key.startswith(REGISTRY + "/"):
        return None
    token = key[len(REGISTRY) + 1 :].split("/", 1)[0]
    return token or None


def route(path: str) -> Route:
    """Map a request path (without query) to a route."""
    if path == "/health":
        return Route("health")
    if path == "/new":
        return Route("new")
    if path == KEYS_PREFIX or path.startswith(KEYS_PREFIX + "/"):
        key = clean_key(path[len(KEYS_PREFIX) :])
        token = registry_token(key)
        return Route("keys", key, token or "")
    first, _, rest = path.lstrip("/").partition("/")
    if TOKEN_PATTERN.fullmatch(first):
        key = clean_key(f"{token_key(first)}/{rest}")
        if registry_token(key) == first:
            return Route("token", key, first)
    return Route("not_found")


def first(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def parse_bool(params: Params, name: str) -> bool | None:
    """A Go ``strconv.ParseBool`` field; None when absent, 209 when malformed."""
    raw = first(params, name)
    if raw is None or raw == "":
        return None
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if raw in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    # etcd quotes the name for every field except prevExist.
    cause = "invalid value for prevExist" if name == "prevExist" else f'invalid value for "{name}"'
    raise EtcdError(INVALID_FIELD, cause, 0)


def parse_index(params: Params, name: str) -> int | None:
    """An unsigned index field; None when absent, 203 when not a number."""
    raw = first(params, name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise EtcdError(INDEX_NAN, f'invalid value for "{name}"', 0)
    return int(raw)


def reject_ttl(params: Params) -> None:
    """TTLs are not kept by this service; say so rather than ignore them."""
    raw = first(params, "ttl")
    if raw is None or raw == "":
        return
    if not raw.isdigit():
        raise EtcdError(TTL_NAN, 'invalid value for "ttl"', 0)
    raise EtcdError(INVALID_FIELD, "ttl is not supported by this discovery service", 0)


def parse_size(raw: str | None) -> int:
    """The ``size`` of ``/new``: default 3, else a whole number of at least 1."""
    if raw is None or raw == "":
        return DEFAULT_SIZE
    text = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise BadRequestError(
            f"invalid size {raw!r}: size must be a whole number of members, e.g. 3"
        )
    size = int(text)
    if size < 1:
        raise BadRequestError(f"invalid size {size}: a cluster needs at least 1 member")
    return size


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


def base_url(host: str, port: int) -> str:
    """``http://host:port`` for a listen address, with IPv6 hosts in brackets."""
    host = connect_host(host)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    return f"http://[{host}]:{port}" if literal.version == 6 else f"http://{host}:{port}"


def public_base(public_url: str | None, host_header: str | None, fallback: str) -> str:
    """The prefix of discovery URLs handed out by ``/new``.

    A configured public URL wins; otherwise the URL the client used to reach
    the service (its ``Host`` header), so a token created through the address
    guests see is usable by the guests.
    """
    if public_url:
        return public_url.rstrip("/")
    if host_header and _HOST_HEADER.fullmatch(host_header):
        return f"http://{host_header}"
    return fallback.rstrip("/")


def split_discovery_url(discovery_url: str) -> tuple[str, str]:
    """``(service base URL, token)`` of a discovery URL; DiscoveryError if it is none."""
    parts = urlsplit(discovery_url)
    path = parts.path.rstrip("/")
    token = path.rsplit("/", 1)[-1]
    if parts.scheme not in ("http", "https") or not parts.netloc or not token:
        raise DiscoveryError(
            f"not a discovery URL: {discovery_url!r}",
            hint="expected http://HOST:PORT/<token>, as printed by `lab discovery new`",
        )
    prefix = path[: -len(token)].rstrip("/")
    if prefix not in ("", KEYS_PREFIX + REGISTRY):
        raise DiscoveryError(
            f"not a discovery URL: {discovery_url!r}",
            hint="expected http://HOST:PORT/<token> or http://HOST:PORT/v2/keys/_etcd/registry/<token>",
        )
    return f"{parts.scheme}://{parts.netloc}", token


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` to ``(host, port)``.

    An empty host (``:PORT``) listens on all IPv4 interfaces, as ``bind`` does.
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
