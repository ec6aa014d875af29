"""Talking to a discovery service: create, inspect and delete tokens.

Token inspection speaks the etcd v2 keys API exactly as etcd's own discovery
client does (``GET <url>/_config/size``, ``GET <url>``), so it works against
this project's service and against a plain etcd holding a registry.
"""

from __future__ import annotations

import json
import posixpath
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from provisioner.discovery.protocol import SERVICE_NAME, TOKEN_PATTERN, split_discovery_url
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
    """The ``/health`` answer of this project's discovery service."""

    pid: int
    state_dir: str
    index: int


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


def _request(method: str, url: str, timeout: float, what: str) -> _Answer:
    """One HTTP request; every answer comes back, transport failures raise DiscoveryError."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 - http(s) URLs only
    if not url.startswith(("http://", "https://")):
        raise DiscoveryError(f"{what}: not an http(s) URL: {url!r}", hint=SERVE_HINT)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _Answer(response.status, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return _Answer(error.code, error.read())
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


def new_token(server_url: str, size: int = 3, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Create a token for ``size`` members and return its discovery URL.

    The URL starts with the service's public URL, or with ``server_url`` when
    none was configured: create tokens through the address the members use.
    """
    url = f"{server_url.rstrip('/')}/new?size={size}"
    answer = _request("GET", url, timeout, "creating a discovery token")
    text = answer.body.decode("utf-8", "replace").strip()
    if answer.status == 400:
        raise DiscoveryError(
            f"discovery service refused to create a token: {text}",
            hint="the cluster size must be a whole number of at least 1",
        )
    if answer.status != 200 or not TOKEN_PATTERN.fullmatch(text.rsplit("/", 1)[-1]):
        raise DiscoveryError(
            f"{server_url} is not a discovery service: /new answered {answer.status} {text[:80]!r}",
            hint=SERVE_HINT,
        )
    return text


def delete_token(discovery_url: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Delete a token and everything under it; False if it was already gone."""
    base, token = split_discovery_url(discovery_url)
    url = f"{discovery_url.rstrip('/')}?recursive=true"
    answer = _request("DELETE", url, timeout, f"deleting discovery token {token}")
    if answer.status == 200:
        return True
    if answer.status == 404:
        return False
    raise DiscoveryError(
        f"{base} refused to delete discovery token {token}: {answer.status} "
        f"{answer.body.decode('utf-8', 'replace').strip()[:200]}",
        hint=SERVE_HINT,
    )


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


def check_health(server_url: str, timeout: float = 2.0) -> Health | None:
    """This project's service at ``server_url``, or None if something else (or nothing) answers."""
    try:
        answer = _request("GET", f"{server_url.rstrip('/')}/health", timeout, "health check")
    except DiscoveryError:
        return None
    try:
        document = json.loads(answer.body)
    except ValueError:
        return None
    if answer.status != 200 or not isinstance(document, dict):
        return None
    if document.get("service") != SERVICE_NAME:
        return None
    try:
        return Health(int(document["pid"]), str(document["stateDir"]), int(document["index"]))
    except (KeyError, TypeError, ValueError):
        return None
