"""fleet's HTTP API v1 (``/fleet/v1``), served by fleetd on sockets systemd passes in.

fleet.socket listens on ``/var/run/fleet.sock``; systemd hands the listening
socket to fleetd (``LISTEN_FDS``/``LISTEN_PID``, fds from 3), which is what
``fleetctl`` with its default ``--endpoint=unix:///var/run/fleet.sock`` talks to.
Supported: units (list, get, create/replace/set state with PUT, DELETE),
``/state``, ``GET /machines`` and dynamic metadata with ``PATCH /machines``,
with fleet's error bodies, page tokens and routing (api/mux.go): both prefixes
``/fleet/v1`` and ``/v1-alpha``, 405 for a method a resource does not take, 404
for an unknown path. Until fleetd has registered its machine, and while it cannot
reach etcd, every request is answered 503 (api/server.go).
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from provisioner.guest.fleet.client import (
    check_target_state,
    decode_page_token,
    encode_page_token,
    options_from_json,
    options_to_json,
)
from provisioner.guest.fleet.errors import FleetError, UnitValidationError
from provisioner.guest.fleet.model import INACTIVE
from provisioner.guest.fleet.registry import Registry, UnitView
from provisioner.guest.fleet.requirements import validate_options
from provisioner.guest.fleet.unitfile import validate_name

log = logging.getLogger(__name__)

BASE = "/fleet/v1"
PREFIXES = ("/v1-alpha", BASE)
SD_LISTEN_FDS_START = 3
UNAVAILABLE = "fleet server unable to communicate with etcd"
METADATA_PATH = re.compile(r"^/([^/]+)/metadata/([A-Za-z0-9_.-]+)$")
METADATA_OPS = ("add", "remove", "replace")


def listen_fds(environ: Mapping[str, str], pid: int) -> list[int]:
    """File descriptors passed by systemd socket activation (empty if not for us)."""
    if environ.get("LISTEN_PID", "") != str(pid):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(count, 0)))


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def unit_json(view: UnitView) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": view.name,
        "options": options_to_json(view.unit),
        "desiredState": view.desired_state,
    }
    if view.current_state:
        data["currentState"] = view.current_state
    if view.machine_id:
        data["machineID"] = view.machine_id
    return data


class FleetApi:
    """The API's behaviour over a Registry, independent of HTTP plumbing."""

    def __init__(self, registry: Registry, token_limit: int = 100) -> None:
        self.registry = registry
        self.token_limit = max(1, token_limit)
        self._unavailable: str | None = UNAVAILABLE
        self._availability = threading.Lock()

    # -- availability (fleet's api.Server.Available) -----------------------------------
    def set_available(self) -> None:
        with self._availability:
            if self._unavailable is not None:
                log.info("The fleet API is available")
            self._unavailable = None

    def set_unavailable(self, reason: str = UNAVAILABLE) -> None:
        """Answer every request 503 with ``reason`` until ``set_available``."""
        with self._availability:
            if self._unavailable is None:
                log.warning("The fleet API answers 503: %s", reason)
            self._unavailable = reason

    @property
    def unavailable(self) -> str | None:
        with self._availability:
            return self._unavailable

    def _page(self, items: list[Any], token: str | None, key: str) -> dict[str, Any]:
        if token:
            try:
                limit, page = decode_page_token(token)
            except FleetError:
                raise HttpError(400, "invalid page token") from None
        else:
            limit, page = self.token_limit, 1
        start, stop = (page - 1) * limit, page * limit
        body: dict[str, Any] = {key: items[start:stop]}
        if stop < len(items):
            body["nextPageToken"] = encode_page_token(limit, page + 1)
        return body

    def _views(self) -> dict[str, UnitView]:
        return {v.name: v for v in self.registry.unit_views(self.registry.snapshot())}

    def list_units(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        units = [unit_json(v) for _, v in sorted(self._views().items())]
        return self._page(units, _first(query, "nextPageToken"), "units")

    def get_unit(self, name: str) -> dict[str, Any]:
        view = self._views().get(name)
        if view is None:
            raise HttpError(404, "unit does not exist")
        return unit_json(view)

    def put_unit(self, name: str, body: Any) -> int:
        """Create, replace or change the desired state of a unit; the HTTP status."""
        if not isinstance(body, dict):
            raise HttpError(400, "unable to decode body: expected a JSON object")
        body_name = str(body.get("name") or name)
        if body_name != name:
            raise HttpError(
                400, f'name in URL "{name}" differs from unit name in request body "{body_name}"'
            )
        desired = str(body.get("desiredState") or "")
        options = body.get("options") or []
        try:
            validate_name(name)
            if desired:
                check_target_state(name, desired)
        except UnitValidationError as exc:
            raise HttpError(400, exc.message) from None
        existing = self._views().get(name)
        unit = options_from_json(options) if options else None
        if unit is not None:
            try:
                validate_options(unit)
            except UnitValidationError as exc:
                raise HttpError(400, exc.message) from None
        if existing is None:
            if unit is None:
                raise HttpError(409, "unit does not exist and options field empty")
            if not self.registry.create_unit(name, unit, desired or INACTIVE):
                raise HttpError(409, "unit already exists")
            return 201
        if not desired:
            raise HttpError(409, "must provide DesiredState to update existing unit")
        if unit is not None and unit.hash != existing.unit.hash:
            self.registry.replace_unit(name, unit)
        self.registry.set_target_state(name, desired)
        return 204

    def delete_unit(self, name: str) -> int:
        if not self.registry.destroy_unit(name):
            raise HttpError(404, "unit does not exist")
        return 204

    def list_states(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        machine = _first(query, "machineID")
        unit = _first(query, "unitName")
        states = [
            {
                "name": s.name,
                "hash": s.unit_hash,
                "machineID": s.machine_id,
                "systemdLoadState": s.load_state,
                "systemdActiveState": s.active_state,
                "systemdSubState": s.sub_state,
            }
            for s in self.registry.snapshot().unit_states.values()
            if (not machine or s.machine_id == machine) and (not unit or s.name == unit)
        ]
        return self._page(states, _first(query, "nextPageToken"), "states")

    def unit_state(self, name: str) -> dict[str, Any]:
        for state in self.list_states({"unitName": [name]})["states"]:
            return dict(state)
        raise HttpError(404, "unit state does not exist")

    def patch_machines(self, body: Any) -> int:
        """fleet's api/machines.go patch: validate every op, then apply them in order."""
        ops = parse_metadata_ops(body)
        for machine_id, key, value in ops:
            if value is None:
                self.registry.delete_machine_metadata(machine_id, key)
            else:
                self.registry.set_machine_metadata(machine_id, key, value)
        return 204

    def list_machines(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        machines = [
            {"id": m.id, "primaryIP": m.public_ip, "metadata": m.metadata_dict()}
            for m in self.registry.snapshot().machines.values()
        ]
        return self._page(machines, _first(query, "nextPageToken"), "machines")


def _field(entry: Mapping[str, Any], name: str) -> Any:
    """A JSON field matched as Go's encoding/json does: exact name, else any case."""
    if name in entry:
        return entry[name]
    return next((v for k, v in entry.items() if k.lower() == name.lower()), None)


def _string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HttpError(400, f"json: cannot unmarshal {type(value).__name__} into {what}")
    return value


def parse_metadata_ops(body: Any) -> list[tuple[str, str, str | None]]:
    """(machine ID, key, value or None for remove) per op; HttpError 400 as fleet words it.

    The body is a JSON list of ``{"op", "path", "value": {"value"}}``; every op
    is checked before any is applied (api/machines.go).
    """
    if body is None:
        return []
    if not isinstance(body, list):
        raise HttpError(400, "json: cannot unmarshal object into []api.machineMetadataOp")
    checked: list[tuple[str, str, str]] = []
    for entry in body:
        entry = entry if isinstance(entry, dict) else {}
        value = _field(entry, "value")
        inner = _field(value, "value") if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict):
            raise HttpError(400, "json: cannot unmarshal value into struct { Value string }")
        checked.append(
            (
                _string(_field(entry, "op"), "op string"),
                _string(_field(entry, "path"), "path string"),
                _string(inner, "value string"),
            )
        )
    ops: list[tuple[str, str, str | None]] = []
    for op, path, value in checked:
        if op not in METADATA_OPS:
            raise HttpError(400, "invalid op: expect add, remove, or replace")
        match = METADATA_PATH.match(path)
        if match is None:
            raise HttpError(400, "machine metadata path invalid")
        if op != "remove" and not value:
            raise HttpError(400, "invalid value: add and replace require a value")
        ops.append((match.group(1), match.group(2), None if op == "remove" else value))
    return ops


def _first(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "fleetd"

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)

    def _send(self, status: int, body: Any = None) -> None:
        # As fleet's sendResponse: always JSON; a 204 carries the header but no body.
        payload = b"" if status == 204 else (json.dumps(body) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # the client hung up first (curl -f does on an error status): nothing to tell
                log.debug("api: the client left before the answer (%s)", status)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"code": status, "message": message}})

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        reason = self.server.api.unavailable
        if reason is not None:
            self._discard_body()
            self._error(503, reason)
            return
        try:
            self._dispatch(method, urllib.parse.unquote(url.path), query)
        except HttpError as exc:
            self._error(exc.status, exc.message)
        except FleetError as exc:
            log.warning("API request %s %s failed: %s", method, self.path, exc.message)
            self._error(500, exc.message)

    def _dispatch(self, method: str, path: str, query: Mapping[str, list[str]]) -> None:
        """fleet's ServeMux (api/mux.go): the resources under both prefixes, then ``/``."""
        api = self.server.api
        prefix = next((p for p in PREFIXES if path == p or path.startswith(p + "/")), None)
        if prefix is None:
            raise HttpError(405 if path == "/" else 404, "")
        rest = path[len(prefix) :]
        if rest == "":
            raise HttpError(405, "")
        if rest == "/machines":
            self._machines(api, method, query)
            return
        resource, _, item = rest[1:].partition("/")
        if resource not in ("units", "state") or (item == "" and rest.endswith("/")):
            raise HttpError(404, "")
        if item and ("/" in item):
            raise HttpError(404, "")
        if resource == "units":
            self._units(api, method, item, query)
        elif not item:
            self._only(method, "GET")
            self._send(200, api.list_states(query))
        else:
            self._only(method, "GET")
            self._send(200, api.unit_state(item))

    def _machines(self, api: FleetApi, method: str, query: Mapping[str, list[str]]) -> None:
        if method == "GET":
            self._send(200, api.list_machines(query))
        elif method == "PATCH":
            self._send(api.patch_machines(self._body()))
        else:
            raise HttpError(405, "only GET and PATCH supported against this resource")

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise HttpError(405, f"only {allowed} supported against this resource")

    def _units(self, api: FleetApi, method: str, item: str, query: Mapping[str, list[str]]) -> None:
        if not item:
            self._only(method, "GET")
            self._send(200, api.list_units(query))
        elif method == "GET":
            self._send(200, api.get_unit(item))
        elif method == "DELETE":
            self._send(api.delete_unit(item))
        elif method == "PUT":
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != "application/json":
                raise HttpError(415, "only acceptable Content-Type is application/json")
            self._send(api.put_unit(item, self._body()))
        else:
            raise HttpError(405, "only GET, PUT and DELETE supported against this resource")

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        if length:
            self.rfile.read(length)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError as exc:
            raise HttpError(400, f"unable to decode body: {exc}") from None

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_POST(self) -> None:
        self._route("POST")

    def do_OPTIONS(self) -> None:
        self._route("OPTIONS")


class ApiServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves the API on an already listening socket (from systemd)."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, api: FleetApi) -> None:
        super().__init__(("", 0), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.api = api


def serve_activated_sockets(api: FleetApi, fds: list[int]) -> list[ApiServer]:
    """Start one server thread per passed socket."""
    servers: list[ApiServer] = []
    for fd in fds:
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        server = ApiServer(sock, api)
        thread = threading.Thread(target=server.serve_forever, name=f"fleetd-api-{fd}", daemon=True)
        thread.start()
        servers.append(server)
        log.info("Serving the fleet API on %s", sock.getsockname() or f"fd {fd}")
    return servers
