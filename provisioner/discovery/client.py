"""Tokens on a discovery etcd, through its v2 keys API.

The only writes lab makes are the ones etcd's documentation gives for a
custom discovery service: ``PUT <token>/_config/size`` to create a token and
a recursive ``DELETE`` of its directory to drop it. Reads go the way etcd's
own discovery client reads (``GET <url>/_config/size``, ``GET <url>``), so
they work against any etcd holding a registry and against discovery.etcd.io.
"""

from __future__ import annotations

import json
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from provisioner.discovery.protocol import (
    DEFAULT_SIZE,
    KEYS_PREFIX,
    REGISTRY,
    check_size,
    new_token_id,
    split_discovery_url,
    token_url,
)
from provisioner.errors import DiscoveryError

DEFAULT_TIMEOUT: Final = 10.0
SERVE_HINT: Final = "start the discovery service with `lab discovery serve` (`lab up` starts one)"


@dataclass(frozen=True)
class Member:
    """A member registered under a token: etcd member id and ``name=peerURL`` value."""

    id: str
    value: str
    created_index: int


@dataclass(frozen=True)
class TokenState:
    """What a discovery token holds: the expected size and the registered members."""

    url: str
    size: int
    members: tuple[Member, ...]

    @property
    def full(self) -> bool:
        return len(self.members) >= self.size


@dataclass(frozen=True)
class Health:
    """A healthy discovery etcd and its v2 store's index (``X-Etcd-Index``)."""

    index: int


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    index: int | None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace").strip()


def _answer(status: int, body: bytes, headers: Any) -> _Answer:
    index = headers.get("X-Etcd-Index") if headers is not None else None
    return _Answer(status, body, int(index) if index and index.isdigit() else None)


def _request(
    method: str, url: str, timeout: float, what: str, form: dict[str, str] | None = None
) -> _Answer:
    """One HTTP request; every answer comes back, transport failures raise DiscoveryError."""
    if not url.startswith(("http://", "https://")):
        raise DiscoveryError(f"{what}: not an http(s) URL: {url!r}", hint=SERVE_HINT)
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _answer(response.status, response.read(), response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return _answer(error.code, error.read(), error.headers)
    except urllib.error.URLError as error:
        reason = error.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise DiscoveryError(f"{what}: {url} is unreachable: {text}", hint=SERVE_HINT) from error
    except TimeoutError as error:
        raise DiscoveryError(
            f"{what}: {url} did not answer within {timeout:g}s", hint=SERVE_HINT
        ) from error
    except OSError as error:
        raise DiscoveryError(f"{what}: {url} failed: {error}", hint=SERVE_HINT) from error


def _refused(what: str, answer: _Answer) -> DiscoveryError:
    hint = SERVE_HINT
    if answer.status == 404 and not answer.text.startswith("{"):
        hint = "the server is not an etcd with its v2 API on (etcd --enable-v2)"
    return DiscoveryError(f"{what}: {answer.status} {answer.text[:200]}", hint=hint)


def create_token(
    discovery_url: str, size: int, *, exclusive: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> bool:
    """``PUT <url>/_config/size``; False when ``exclusive`` and the token exists already."""
    _, token = split_discovery_url(discovery_url)
    query = "?prevExist=false" if exclusive else ""
    url = f"{discovery_url.rstrip('/')}/_config/size{query}"
    what = f"creating discovery token {token}"
    answer = _request("PUT", url, timeout, what, {"value": str(check_size(size))})
    if answer.status in (200, 201):
        return True
    if exclusive and answer.status == 412:
        return False
    raise _refused(what, answer)


def new_token(server_url: str, size: int = DEFAULT_SIZE, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Create a fresh token for ``size`` members on ``server_url``; its discovery URL.

    Create tokens through the address the members use: the URL starts with it.
    """
    check_size(size)
    while True:
        url = token_url(server_url, new_token_id())
        if create_token(url, size, exclusive=True, timeout=timeout):
            return url


def delete_token(discovery_url: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Delete a token and everything under it; False if it was already gone."""
    _, token = split_discovery_url(discovery_url)
    url = f"{discovery_url.rstrip('/')}?recursive=true"
    what = f"deleting discovery token {token}"
    answer = _request("DELETE", url, timeout, what)
    if answer.status == 200:
        return True
    if answer.status == 404 and answer.text.startswith("{"):
        return False
    raise _refused(what, answer)


def _keys_json(answer: _Answer, what: str) -> dict[str, Any]:
    try:
        document = json.loads(answer.body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise DiscoveryError(f"{what}: the answer is not etcd JSON", hint=SERVE_HINT)
    return document


def fetch_token(discovery_url: str, timeout: float = DEFAULT_TIMEOUT) -> TokenState:
    """The size and members of a token, read the way etcd's discovery client reads them."""
    _, token = split_discovery_url(discovery_url)
    url = discovery_url.rstrip("/")
    what = f"reading discovery token {token}"
    size_answer = _request("GET", f"{url}/_config/size", timeout, what)
    if size_answer.status == 404:
        raise DiscoveryError(
            f"discovery token {token} not found at {url}",
            hint="create a new one with `lab discovery new` (tokens are deleted by `lab destroy`)",
        )
    size_doc = _keys_json(size_answer, what)
    value = str(size_doc.get("node", {}).get("value", ""))
    if size_answer.status != 200 or not value.isdigit():
        raise DiscoveryError(f"{what}: bad size key {value!r}", hint=SERVE_HINT)
    dir_answer = _request("GET", url, timeout, what)
    dir_doc = _keys_json(dir_answer, what)
    if dir_answer.status != 200:
        raise DiscoveryError(f"{what}: {dir_doc.get('message', dir_answer.status)}")
    members = [
        Member(posixpath.basename(n["key"]), str(n.get("value", "")), int(n["createdIndex"]))
        for n in dir_doc.get("node", {}).get("nodes", [])
        if posixpath.basename(n["key"]) != "_config"
    ]
    members.sort(key=lambda m: m.created_index)
    return TokenState(url, int(value), tuple(members))


def ensure_registry(server_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Create the registry directory, so an unknown token's error names the token."""
    url = f"{server_url.rstrip('/')}{KEYS_PREFIX}{REGISTRY}?dir=true&prevExist=false"
    answer = _request("PUT", url, timeout, "creating the discovery registry")
    if answer.status not in (201, 412):
        raise _refused("creating the discovery registry", answer)


def list_tokens(server_url: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The tokens a discovery etcd holds."""
    url = f"{server_url.rstrip('/')}{KEYS_PREFIX}{REGISTRY}"
    what = "listing discovery tokens"
    answer = _request("GET", url, timeout, what)
    if answer.status == 404 and answer.text.startswith("{"):
        return []
    if answer.status != 200:
        raise _refused(what, answer)
    nodes = _keys_json(answer, what).get("node", {}).get("nodes", [])
    return sorted(posixpath.basename(str(n["key"])) for n in nodes)


def check_health(server_url: str, timeout: float = 2.0) -> Health | None:
    """The discovery etcd at ``server_url`` if it is healthy and serves the v2 API, else None."""
    base = server_url.rstrip("/")
    try:
        health = _request("GET", f"{base}/health", timeout, "health check")
        keys = _request("GET", f"{base}{KEYS_PREFIX}{REGISTRY}", timeout, "health check")
    except DiscoveryError:
        return None
    try:
        healthy = json.loads(health.body).get("health") == "true"
    except (ValueError, AttributeError):
        return None
    if health.status != 200 or not healthy or keys.index is None:
        return None
    return Health(keys.index)
