"""A small etcd v3 client over etcd 3.4's JSON gRPC gateway (``/v3/...``).

Standard library only: unary calls go through ``urllib``; the streaming watch
uses ``http.client`` so another thread can cancel it by shutting its socket.
Keys and values travel base64-encoded; 64-bit integers come back as strings.
Every call has a timeout and tries the configured endpoints in turn. Requests
whose repetition changes nothing (reads, puts, keep-alives, and transactions the
caller marks ``retry=True``) go round the endpoints once more when none answered
in time: on slow guests etcd stalls for a second now and then, and one stall
should not fail a whole ``fleetctl`` command or agent pass.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provisioner.guest.fleet.errors import EtcdError

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(text: str) -> str:
    return base64.b64decode(text).decode("utf-8")


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return base64.b64encode(bytes(raw)).decode("ascii")
        raw.pop()
    return base64.b64encode(b"\0").decode("ascii")


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # PUT | DELETE
    key: str
    value: str
    revision: int


@dataclass(frozen=True)
class TlsFiles:
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""


def _kv(data: JsonDict) -> KeyValue:
    return KeyValue(
        key=unb64(data["key"]),
        value=unb64(data.get("value", "")),
        create_revision=int(data.get("create_revision", 0)),
        mod_revision=int(data.get("mod_revision", 0)),
        lease=int(data.get("lease", 0)),
    )


# Builders for transaction compares and operations (etcd's JSON field names).
def cmp_create_revision(key: str, revision: int, result: str = "EQUAL") -> JsonDict:
    return {"key": b64(key), "target": "CREATE", "create_revision": str(revision), "result": result}


def cmp_value(key: str, value: str, result: str = "EQUAL") -> JsonDict:
    return {"key": b64(key), "target": "VALUE", "value": b64(value), "result": result}


def op_put(key: str, value: str, lease: int = 0) -> JsonDict:
    put: JsonDict = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def op_delete(key: str, *, prefix: bool = False) -> JsonDict:
    request: JsonDict = {"key": b64(key)}
    if prefix:
        request["range_end"] = prefix_end(key)
    return {"request_delete_range": request}


def op_range(key: str, *, prefix: bool = False) -> JsonDict:
    request: JsonDict = {"key": b64(key)}
    if prefix:
        request["range_end"] = prefix_end(key)
    return {"request_range": request}


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[JsonDict, ...]

    def ranges(self) -> list[list[KeyValue]]:
        """Key-values of each ``request_range`` response, in order."""
        out: list[list[KeyValue]] = []
        for response in self.responses:
            if "response_range" in response:
                out.append([_kv(kv) for kv in response["response_range"].get("kvs", [])])
        return out


class EtcdClient:
    """Unary v3 gateway calls with endpoint fail-over; thread-safe."""

    def __init__(
        self,
        endpoints: list[str] | tuple[str, ...],
        *,
        timeout: float = 3.0,
        tls: TlsFiles | None = None,
        username: str = "",
        password: str = "",
    ) -> None:
        cleaned = [e.strip().rstrip("/") for e in endpoints if e.strip()]
        if not cleaned:
            raise EtcdError("no etcd endpoints configured", hint="set etcd_servers")
        for endpoint in cleaned:
            scheme = urllib.parse.urlsplit(endpoint).scheme
            if scheme not in ("http", "https"):
                raise EtcdError(
                    f"etcd endpoint {endpoint!r} must be an http:// or https:// URL",
                    hint="example: http://127.0.0.1:2379",
                )
        self.endpoints = cleaned
        self.timeout = timeout
        self._tls = tls or TlsFiles()
        self._ssl: ssl.SSLContext | None = None
        self._username = username
        self._password = password
        self._token = ""
        self._lock = threading.Lock()
        self._preferred = 0

    def _context(self) -> ssl.SSLContext | None:
        if not any(url.startswith("https") for url in self.endpoints):
            return None
        if self._ssl is None:
            context = ssl.create_default_context(cafile=self._tls.cafile or None)
            if self._tls.certfile:
                context.load_cert_chain(self._tls.certfile, self._tls.keyfile or None)
            self._ssl = context
        return self._ssl

    def _order(self) -> list[int]:
        with self._lock:
            first = self._preferred
        count = len(self.endpoints)
        return [(first + i) % count for i in range(count)]

    def call(
        self, path: str, body: JsonDict, *, timeout: float | None = None, retry: bool = False
    ) -> JsonDict:
        """POST ``body`` to ``path`` on the first endpoint that answers.

        With ``retry`` (only for requests that may safely run twice) the endpoints
        are tried a second time if none answered.
        """
        rounds = 2 if retry else 1
        errors: list[str] = []
        for index in self._order() * rounds:
            endpoint = self.endpoints[index]
            try:
                result = self._post(endpoint, path, body, timeout or self.timeout)
            except EtcdError:
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{endpoint}: {exc}")
                continue
            with self._lock:
                self._preferred = index
            return result
        raise EtcdError(
            f"etcd request {path} failed on every endpoint ({'; '.join(errors)})",
            hint="check that etcd is running and etcd_servers points at it",
        )

    def _post(self, endpoint: str, path: str, body: JsonDict, timeout: float) -> JsonDict:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._username:
            headers["Authorization"] = self._auth_token(endpoint, timeout)
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            endpoint + path, data=data, headers=headers
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - endpoint scheme checked in __init__
                request, timeout=timeout, context=self._context()
            ) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(detail).get("message", detail)
            except ValueError:
                message = detail
            if exc.code in (401, 403) or "token" in str(message):
                self._token = ""
            if exc.code >= 500 and "lease not found" not in str(message):
                raise OSError(f"HTTP {exc.code}: {message}") from exc
            raise EtcdError(f"etcd {path}: {message}") from exc
        parsed: JsonDict = json.loads(payload.decode("utf-8"))
        if "error" in parsed and "result" not in parsed:
            raise EtcdError(f"etcd {path}: {parsed.get('message') or parsed['error']}")
        return parsed

    def _auth_token(self, endpoint: str, timeout: float) -> str:
        if not self._token:
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                endpoint + "/v3/auth/authenticate",
                data=json.dumps({"name": self._username, "password": self._password}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(  # noqa: S310 - endpoint scheme checked in __init__
                request, timeout=timeout, context=self._context()
            ) as response:
                self._token = str(json.loads(response.read().decode("utf-8")).get("token", ""))
        return self._token

    # -- key-value ------------------------------------------------------------------
    def get(self, key: str) -> KeyValue | None:
        found = self.range(key)
        return found[0] if found else None

    def range(self, key: str, *, prefix: bool = False) -> list[KeyValue]:
        body: JsonDict = {"key": b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        answer = self.call("/v3/kv/range", body, retry=True)
        return [_kv(kv) for kv in answer.get("kvs", [])]

    def put(self, key: str, value: str, *, lease: int = 0) -> int:
        body = op_put(key, value, lease)["request_put"]
        answer = self.call("/v3/kv/put", body, retry=True)
        return int(answer.get("header", {}).get("revision", 0))

    def delete(self, key: str, *, prefix: bool = False) -> int:
        body = op_delete(key, prefix=prefix)["request_delete_range"]
        answer = self.call("/v3/kv/deleterange", body)
        return int(answer.get("deleted", 0))

    def txn(
        self,
        compare: list[JsonDict],
        success: list[JsonDict],
        failure: list[JsonDict] | None = None,
        *,
        retry: bool = False,
    ) -> TxnResult:
        """One transaction; ``retry`` only if running it twice has the effect of once."""
        body: JsonDict = {"compare": compare, "success": success}
        if failure:
            body["failure"] = failure
        answer = self.call("/v3/kv/txn", body, retry=retry)
        return TxnResult(
            succeeded=bool(answer.get("succeeded", False)),
            revision=int(answer.get("header", {}).get("revision", 0)),
            responses=tuple(answer.get("responses", [])),
        )

    # -- leases ---------------------------------------------------------------------
    def lease_grant(self, ttl: int) -> tuple[int, int]:
        """Grant a lease; returns (lease ID, granted TTL in seconds)."""
        answer = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(answer["ID"]), int(answer.get("TTL", ttl))

    def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease once; returns the new TTL, 0 if the lease has expired."""
        answer = self.call("/v3/lease/keepalive", {"ID": str(lease_id)}, retry=True)
        return int(answer.get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease_id: int) -> None:
        """Revoke a lease (deleting its keys); an already expired lease is fine."""
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease_id)}, retry=True)
        except EtcdError as exc:
            if "lease not found" not in exc.message:
                raise

    def status(self) -> JsonDict:
        return self.call("/v3/maintenance/status", {})

    def watch(self, prefix: str, start_revision: int = 0) -> Watch:
        return Watch(self, prefix, start_revision)


def _keepalive(sock: socket.socket) -> None:
    """Block on reads without a timeout, but notice a silently dropped peer (~25 s)."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class Watch:
    """One streaming watch on a key prefix; iterate events, ``cancel()`` from any thread."""

    def __init__(self, client: EtcdClient, prefix: str, start_revision: int) -> None:
        self._client = client
        self._prefix = prefix
        self._start = start_revision
        self._conn: http.client.HTTPConnection | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            conn = self._conn
            if conn is not None and conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

    def events(self, connect_timeout: float = 3.0) -> Iterator[WatchEvent]:
        """Yield events until the stream ends; raises EtcdError if it cannot start."""
        endpoint = self._client.endpoints[self._client._order()[0]]
        parts = urllib.parse.urlsplit(endpoint)
        host = parts.hostname or "127.0.0.1"
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, parts.port or 2379, timeout=connect_timeout, context=self._client._context()
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port or 2379, timeout=connect_timeout)
        with self._lock:
            # Connect under the lock: a cancel() either comes first (and we stop
            # here) or finds the socket and shuts it, unblocking the read below.
            if self._cancelled.is_set():
                return
            try:
                conn.connect()
            except OSError as exc:
                raise EtcdError(f"etcd watch on {endpoint} could not connect: {exc}") from exc
            self._conn = conn
        create: JsonDict = {"key": b64(self._prefix), "range_end": prefix_end(self._prefix)}
        if self._start:
            create["start_revision"] = str(self._start)
        headers = {"Content-Type": "application/json"}
        try:
            conn.request("POST", "/v3/watch", json.dumps({"create_request": create}), headers)
            response = conn.getresponse()
            if response.status != 200:
                raise EtcdError(f"etcd watch on {endpoint} answered HTTP {response.status}")
            if conn.sock is not None:
                _keepalive(conn.sock)
            yield from self._read(response)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not self._cancelled.is_set():
                raise EtcdError(f"etcd watch on {endpoint} ended: {exc}") from exc
        finally:
            conn.close()

    def _read(self, response: http.client.HTTPResponse) -> Iterator[WatchEvent]:
        while not self._cancelled.is_set():
            line = response.readline()
            if not line:
                return
            message = json.loads(line.decode("utf-8"))
            result = message.get("result", {})
            if "error" in message:
                raise EtcdError(f"etcd watch error: {message['error']}")
            if result.get("canceled"):
                reason = result.get("cancel_reason", "") or "compacted"
                raise EtcdError(f"etcd cancelled the watch: {reason}")
            for event in result.get("events", []):
                kv = event.get("kv", {})
                yield WatchEvent(
                    kind=event.get("type", "PUT"),
                    key=unb64(kv.get("key", "")),
                    value=unb64(kv.get("value", "")),
                    revision=int(kv.get("mod_revision", 0)),
                )
