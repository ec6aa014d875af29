"""The discovery service over HTTP: token creation plus the etcd v2 keys API.

:class:`DiscoveryService` holds the keyspace and answers requests as data;
:class:`DiscoveryServer` puts it behind a ``ThreadingHTTPServer``. Replies
match etcd 3.4's wherever etcd's discovery client looks at them:
``X-Etcd-Index``, ``201`` for creates, error JSON with etcd's codes, and
watches that send their headers at once and the event when it happens. A
watch that sees nothing before ``watch_timeout`` ends with an empty body, as
etcd does when a watch times out; the client then asks again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final
from urllib.parse import parse_qs, urlsplit

from provisioner.discovery import protocol
from provisioner.discovery.keyspace import (
    INVALID_FIELD,
    KEY_NOT_FOUND,
    EtcdError,
    Event,
    Keyspace,
    event_json,
)
from provisioner.discovery.protocol import BadRequestError, Params, Route
from provisioner.discovery.state import load_keyspace, save_keyspace
from provisioner.errors import DiscoveryError

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT: Final = 60.0
LOCK_FILE: Final = "discovery.lock"
MAX_BODY: Final = 1 << 20
JSON: Final = "application/json"
TEXT: Final = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer."""

    status: int
    body: bytes
    content_type: str = JSON
    etcd_index: int | None = None


@dataclass(frozen=True)
class Watch:
    """An accepted watch: headers go out now, the event (if any) later."""

    key: str
    recursive: bool
    since: int
    start_index: int
    event: Event | None


def _json_body(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def _etcd_error(error: EtcdError) -> Reply:
    return Reply(error.status, _json_body(error.to_json()), JSON, error.index)


def _text(status: int, text: str) -> Reply:
    return Reply(status, (text + "\n").encode(), TEXT)


class DiscoveryService:
    """The keyspace of one state directory, shared by all request threads."""

    def __init__(
        self,
        state_dir: Path,
        *,
        public_url: str | None = None,
        watch_timeout: float = DEFAULT_WATCH_TIMEOUT,
    ) -> None:
        self.state_dir = state_dir
        self.public_url = public_url
        self.watch_timeout = watch_timeout
        self._cond = threading.Condition()
        self._keyspace = load_keyspace(state_dir)
        self._closing = False
        if self._keyspace.lookup(protocol.REGISTRY) is None:
            # As in any etcd that has served a token: an unknown token's error
            # then names the token rather than "/_etcd".
            self._write(partial(Keyspace.put, key=protocol.REGISTRY, value="", directory=True))

    @property
    def index(self) -> int:
        with self._cond:
            return self._keyspace.index

    def close(self) -> None:
        """Wake every waiting watch so its thread can finish."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    # -- requests --------------------------------------------------------

    def handle(
        self, method: str, path: str, params: Params, host: str | None, fallback_url: str
    ) -> Reply | Watch:
        target = protocol.route(path)
        if target.kind == "health":
            return self._health()
        if target.kind == "new":
            if method not in ("GET", "PUT", "POST"):
                return _text(405, "405 method not allowed")
            return self._new(params, protocol.public_base(self.public_url, host, fallback_url))
        if target.kind == "not_found":
            return _text(404, "404 page not found")
        try:
            return self._keys(method, target, params)
        except EtcdError as error:
            return _etcd_error(error)

    def _health(self) -> Reply:
        document = {
            "health": "true",
            "service": protocol.SERVICE_NAME,
            "pid": os.getpid(),
            "stateDir": str(self.state_dir),
            "index": self.index,
        }
        return Reply(200, _json_body(document))

    def _new(self, params: Params, base: str) -> Reply:
        try:
            size = protocol.parse_size(protocol.first(params, "size"))
        except BadRequestError as error:
            return _text(400, str(error))
        while True:
            token = protocol.new_token_id()
            size_key = f"{protocol.token_key(token)}/_config/size"
            try:
                self._write(partial(Keyspace.put, key=size_key, value=str(size), prev_exist=False))
            except EtcdError:
                continue  # 105: that token exists already; draw another
            log.info("created token %s for %d members", token, size)
            return Reply(200, f"{base}/{token}".encode(), TEXT)

    def _keys(self, method: str, target: Route, params: Params) -> Reply | Watch:
        if not target.token:
            if method == "GET":
                raise EtcdError(KEY_NOT_FOUND, target.key, self.index)
            cause = f"only keys under {protocol.REGISTRY}/<token> are stored here"
            raise EtcdError(INVALID_FIELD, cause, 0)
        if method == "GET":
            return self._get(target.key, params)
        if method == "PUT":
            protocol.reject_ttl(params)
            prev_exist = protocol.parse_bool(params, "prevExist")
            prev_index = protocol.parse_index(params, "prevIndex")
            directory = bool(protocol.parse_bool(params, "dir"))
            prev_value = protocol.first(params, "prevValue") or None
            value = protocol.first(params, "value") or ""
            event = self._write(
                lambda ks: ks.put(
                    target.key,
                    value,
                    directory=directory,
                    prev_exist=prev_exist,
                    prev_value=prev_value,
                    prev_index=prev_index,
                )
            )
            return Reply(
                201 if event.created else 200, _json_body(event_json(event)), JSON, event.index
            )
        if method == "DELETE":
            whole_token = target.kind == "token" and target.key == protocol.token_key(target.token)
            recursive = whole_token or bool(protocol.parse_bool(params, "recursive"))
            directory = bool(protocol.parse_bool(params, "dir"))
            prev_value = protocol.first(params, "prevValue") or None
            prev_index = protocol.parse_index(params, "prevIndex")
            event = self._write(
                lambda ks: ks.delete(
                    target.key,
                    recursive=recursive,
                    directory=directory,
                    prev_value=prev_value,
                    prev_index=prev_index,
                )
            )
            if whole_token:
                log.info("deleted token %s", target.token)
            return Reply(200, _json_body(event_json(event)), JSON, event.index)
        return _text(405, "405 method not allowed")

    def _get(self, key: str, params: Params) -> Reply | Watch:
        recursive = bool(protocol.parse_bool(params, "recursive"))
        if protocol.parse_bool(params, "wait"):
            wait_index = protocol.parse_index(params, "waitIndex")
            return self._begin_watch(key, recursive, wait_index or 0)
        sort = bool(protocol.parse_bool(params, "sorted"))
        protocol.parse_bool(params, "quorum")  # every read here is linearizable
        with self._cond:
            node = self._keyspace.render(key, recursive=recursive, sort=sort)
            index = self._keyspace.index
        return Reply(200, _json_body({"action": "get", "node": node}), JSON, index)

    # -- keyspace access -------------------------------------------------

    def _write(self, change: Callable[[Keyspace], Event]) -> Event:
        """Apply a change to a copy, save it, then make it current and wake watchers."""
        with self._cond:
            candidate = self._keyspace.copy()
            event = change(candidate)
            save_keyspace(self.state_dir, candidate)
            self._keyspace = candidate
            self._cond.notify_all()
            return event

    def _begin_watch(self, key: str, recursive: bool, wait_index: int) -> Watch:
        with self._cond:
            start = self._keyspace.index
            since = wait_index if wait_index > 0 else start + 1
            event = self._keyspace.scan(key, recursive=recursive, since=since)
            return Watch(key, recursive, since, start, event)

    def wait(self, watch: Watch, deadline: float) -> Event | None:
        """The first event after the watch began, or None at the deadline or on close."""
        if watch.event is not None:
            return watch.event
        scanned = watch.start_index
        with self._cond:
            while not self._closing:
                current = self._keyspace.index
                if current > scanned:
                    try:
                        event = self._keyspace.scan(
                            watch.key,
                            recursive=watch.recursive,
                            since=max(watch.since, scanned + 1),
                            live=True,
                        )
                    except EtcdError:
                        return None  # fell out of the history while waiting
                    if event is not None:
                        return event
                    scanned = current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        return None


class _Handler(BaseHTTPRequestHandler):
    """Adapts HTTP/1.1 requests to :class:`DiscoveryService`."""

    protocol_version = "HTTP/1.1"
    server_version = "lab-discovery"

    @property
    def _server(self) -> _HTTPServer:
        server = self.server
        assert isinstance(server, _HTTPServer)
        return server

    def setup(self) -> None:
        super().setup()
        self._server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        try:
            params = self._params()
        except BadRequestError as error:
            self._send(_text(400, str(error)))
            return
        service = self._server.service
        try:
            answer = service.handle(
                self.command,
                urlsplit(self.path).path,
                params,
                self.headers.get("Host"),
                self._server.url,
            )
        except Exception:
            log.exception("failed to serve %s %s", self.command, self.path)
            self._send(_text(500, "500 internal server error"))
            return
        try:
            if isinstance(answer, Reply):
                self._send(answer)
            else:
                self._stream_watch(answer)
        except (BrokenPipeError, ConnectionResetError):
            log.debug(
                "client %s went away during %s %s", self.address_string(), self.command, self.path
            )
            self.close_connection = True

    def _params(self) -> dict[str, list[str]]:
        """Form values from the body first, then the query, like Go's ``r.Form``."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise BadRequestError("chunked request bodies are not supported; send Content-Length")
        length_header = self.headers.get("Content-Length") or "0"
        if not length_header.isdigit() or int(length_header) > MAX_BODY:
            self.close_connection = True
            raise BadRequestError(f"invalid Content-Length {length_header!r}")
        body = self.rfile.read(int(length_header)) if int(length_header) else b""
        params: dict[str, list[str]] = {}
        content_type = self.headers.get("Content-Type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            for name, values in parse_qs(body.decode("utf-8", "replace"), True).items():
                params.setdefault(name, []).extend(values)
        query = urlsplit(self.path).query
        for name, values in parse_qs(query, keep_blank_values=True).items():
            params.setdefault(name, []).extend(values)
        return params

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if reply.etcd_index is not None:
            self.send_header("X-Etcd-Index", str(reply.etcd_index))
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _stream_watch(self, watch: Watch) -> None:
        service = self._server.service
        self.send_response(200)
        self.send_header("Content-Type", JSON)
        self.send_header("X-Etcd-Index", str(watch.start_index))
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        event = service.wait(watch, time.monotonic() + service.watch_timeout)
        if event is not None:
            body = _json_body(event_json(event))
            self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            log.debug("watch on %s ended without an event", watch.key)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: DiscoveryService) -> None:
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.service = service
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        bound = self.socket.getsockname()
        self.url = protocol.base_url(host, int(bound[1]))

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection %r from %s failed", request, client_address, exc_info=True)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections so their threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _lock_state_dir(state_dir: Path) -> IO[bytes]:
    handle = (state_dir / LOCK_FILE).open("a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DiscoveryError(
            f"discovery state directory {state_dir} is in use by another discovery server",
            hint="stop that server (`lab discovery stop`) or give this one another --state-dir",
        ) from None
    return handle


class DiscoveryServer:
    """A discovery service listening on ``listen`` with its keyspace in ``state_dir``.

    Use :meth:`start`/:meth:`stop` (or ``with``) to serve from a background
    thread, or :meth:`serve_forever` to serve from the calling thread. Port 0
    picks a free port; :attr:`url` tells which.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        state_dir: Path,
        public_url: str | None = None,
        *,
        watch_timeout: float = DEFAULT_WATCH_TIMEOUT,
    ) -> None:
        if watch_timeout <= 0:
            raise ValueError("watch_timeout must be positive")
        self.listen = listen
        self.state_dir = state_dir
        self.public_url = public_url
        self.watch_timeout = watch_timeout
        self._httpd: _HTTPServer | None = None
        self._service: DiscoveryService | None = None
        self._lock: IO[bytes] | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the listening socket (after :meth:`bind`)."""
        if self._httpd is None:
            raise RuntimeError("discovery server is not bound yet")
        return self._httpd.url

    def bind(self) -> None:
        """Take the state directory, load the keyspace and open the socket."""
        if self._httpd is not None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            lock = _lock_state_dir(self.state_dir)
        except OSError as exc:
            raise DiscoveryError(
                f"cannot use discovery state directory {self.state_dir}: {exc.strerror}",
                hint="choose a writable --state-dir",
            ) from exc
        try:
            try:
                service = DiscoveryService(
                    self.state_dir, public_url=self.public_url, watch_timeout=self.watch_timeout
                )
            except OSError as exc:
                raise DiscoveryError(
                    f"cannot write discovery state in {self.state_dir}: {exc.strerror}",
                    hint="choose a writable --state-dir",
                ) from exc
            try:
                httpd = _HTTPServer(self.listen, service)
            except OSError as exc:
                host, port = self.listen
                raise DiscoveryError(
                    f"discovery server cannot listen on {host}:{port}: {exc.strerror}",
                    hint="another process holds that port; choose another with --listen",
                ) from exc
        except BaseException:
            lock.close()
            raise
        self._lock, self._service, self._httpd = lock, service, httpd
        log.info(
            "discovery service listening on %s (reach it at %s), state in %s",
            self.listen,
            httpd.url,
            self.state_dir,
        )

    def start(self) -> None:
        """Serve from a background thread."""
        self.bind()
        httpd = self._httpd
        assert httpd is not None
        if self._thread is None:
            self._thread = threading.Thread(
                target=httpd.serve_forever, name="discovery-server", daemon=True
            )
            self._thread.start()

    def serve_forever(self) -> None:
        """Serve from this thread until interrupted; always cleans up."""
        self.bind()
        httpd = self._httpd
        assert httpd is not None
        try:
            httpd.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, end open watches and connections, release the state directory."""
        if self._thread is not None and self._httpd is not None:
            if self._service is not None:
                self._service.close()
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._service is not None:
            self._service.close()
        if self._httpd is not None:
            self._httpd.server_close()
            self._httpd.close_connections()
            self._httpd = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._service = None

    def __enter__(self) -> DiscoveryServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
