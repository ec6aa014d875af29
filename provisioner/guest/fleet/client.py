"""What fleetctl talks to: the fleet HTTP API (default) or etcd directly.

Both drivers offer the same small interface (``FleetClient``), mirroring fleet's
``client.API``: list/get/create/replace/destroy units, set desired states, unit
states, machines.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

from provisioner.guest.fleet.errors import ApiError, FleetError, UnitValidationError
from provisioner.guest.fleet.etcd import EtcdClient, TlsFiles
from provisioner.guest.fleet.model import JOB_STATES, MachineState, UnitState
from provisioner.guest.fleet.registry import Registry, UnitView
from provisioner.guest.fleet.unitfile import (
    UnitFile,
    UnitOption,
    go_quote,
    unit_from_options,
    unit_name_info,
)

API_PREFIX = "/fleet/v1"

# fleet's fleetctl puts no deadline of its own on fleet API requests: its
# --request-timeout bounds the etcd driver's requests, and fleetd bounds its
# own etcd work (etcd_request_timeout per request, endpoints in turn), then
# answers, with an error if etcd did not. fleetctl here waits for that answer,
# but not for ever: a minute, or --request-timeout if that is longer.
API_ANSWER_TIMEOUT = 60.0


def api_answer_timeout(request_timeout: float) -> float:
    """How long the API driver waits for fleetd to answer one request."""
    return max(API_ANSWER_TIMEOUT, request_timeout)


class FleetClient(Protocol):
    """The operations fleetctl needs (fleet's client.API)."""

    def units(self) -> list[UnitView]: ...

    def unit(self, name: str) -> UnitView | None: ...

    def create_unit(self, name: str, unit: UnitFile) -> None: ...

    def replace_unit(self, name: str, unit: UnitFile, desired_state: str) -> None: ...

    def set_unit_target_state(self, name: str, state: str) -> None: ...

    def destroy_unit(self, name: str) -> bool: ...

    def unit_states(self) -> list[UnitState]: ...

    def machines(self) -> list[MachineState]: ...


def check_target_state(name: str, state: str) -> None:
    """The API refuses bad states and activating templates (HTTP 400)."""
    if state not in JOB_STATES:
        raise UnitValidationError(f"invalid value {go_quote(state)} for JobState")
    info = unit_name_info(name)
    if state != "inactive" and info is not None and info.is_template:
        raise UnitValidationError(f"cannot activate template {go_quote(name)}")


class RegistryClient:
    """The ``etcd`` driver: reads and writes the registry directly."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def units(self) -> list[UnitView]:
        return self.registry.unit_views(self.registry.snapshot())

    def unit(self, name: str) -> UnitView | None:
        for view in self.units():
            if view.name == name:
                return view
        return None

    def create_unit(self, name: str, unit: UnitFile) -> None:
        if not self.registry.create_unit(name, unit):
            raise FleetError(f"unit {name} already exists")

    def replace_unit(self, name: str, unit: UnitFile, desired_state: str) -> None:
        self.registry.replace_unit(name, unit)
        self.set_unit_target_state(name, desired_state)

    def set_unit_target_state(self, name: str, state: str) -> None:
        check_target_state(name, state)
        if not self.registry.set_target_state(name, state):
            raise FleetError(f"unit {name} does not exist")

    def destroy_unit(self, name: str) -> bool:
        return self.registry.destroy_unit(name)

    def unit_states(self) -> list[UnitState]:
        return list(self.registry.snapshot().unit_states.values())

    def machines(self) -> list[MachineState]:
        return list(self.registry.snapshot().machines.values())


# -- the HTTP API driver ----------------------------------------------------------------
class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class ApiEndpoint:
    """Where the fleet API is: a unix socket path or an http(s) base URL."""

    unix_path: str = ""
    base_url: str = ""


def parse_api_endpoint(endpoint: str) -> ApiEndpoint:
    """fleetctl's endpoint rules for the API driver."""
    parts = urllib.parse.urlsplit(endpoint)
    if not parts.scheme:
        raise FleetError("URL scheme undefined")
    if parts.scheme == "unix":
        if parts.netloc:
            raise FleetError(
                f'unable to connect to host "{parts.netloc}" with scheme "{parts.scheme}"'
            )
        return ApiEndpoint(unix_path=parts.path)
    if parts.scheme in ("http", "https"):
        return ApiEndpoint(base_url=endpoint.rstrip("/"))
    raise FleetError(f'unable to connect to host "{parts.netloc}" with scheme "{parts.scheme}"')


def options_to_json(unit: UnitFile) -> list[dict[str, str]]:
    return [{"section": o.section, "name": o.name, "value": o.value} for o in unit.options]


def options_from_json(data: Any) -> UnitFile:
    opts = [
        UnitOption(str(o.get("section", "")), str(o.get("name", "")), str(o.get("value", "")))
        for o in (data or [])
    ]
    return unit_from_options(opts)


class HttpApiClient:
    """The ``API`` driver: fleet's HTTP API v1 over a unix socket or TCP."""

    def __init__(self, endpoint: ApiEndpoint, *, timeout: float = API_ANSWER_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.endpoint.unix_path:
            return _UnixHTTPConnection(self.endpoint.unix_path, self.timeout)
        parts = urllib.parse.urlsplit(self.endpoint.base_url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.netloc, timeout=self.timeout)
        return http.client.HTTPConnection(parts.netloc, timeout=self.timeout)

    def _release(self, conn: http.client.HTTPConnection) -> None:
        """Done with ``conn`` after a request: closed here, kept by the tunnelled client."""
        conn.close()

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        base = urllib.parse.urlsplit(self.endpoint.base_url).path if self.endpoint.base_url else ""
        conn = self._connection()
        try:
            payload = json.dumps(body) if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, base + API_PREFIX + path, payload, headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            where = self.endpoint.unix_path or self.endpoint.base_url
            raise FleetError(
                f"fleet API at {where} did not answer {method} {path}: {exc}",
                hint="is fleetd (fleet.socket) running on this machine?",
            ) from None
        except BaseException:
            conn.close()
            raise
        self._release(conn)
        data: Any = json.loads(raw.decode("utf-8")) if raw.strip() else None
        if response.status >= 400:
            message = ""
            if isinstance(data, dict):
                message = str(data.get("error", {}).get("message", ""))
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return response.status, data

    def _pages(self, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        for _ in range(100000):
            query = f"?nextPageToken={urllib.parse.quote(token)}" if token else ""
            _, data = self._request("GET", path + query)
            data = data or {}
            items.extend(data.get(key) or [])
            token = str(data.get("nextPageToken") or "")
            if not token:
                break
        return items

    @staticmethod
    def _view(data: dict[str, Any]) -> UnitView:
        return UnitView(
            name=str(data.get("name", "")),
            unit=options_from_json(data.get("options")),
            desired_state=str(data.get("desiredState", "") or ""),
            current_state=str(data.get("currentState", "") or ""),
            machine_id=str(data.get("machineID", "") or ""),
        )

    def units(self) -> list[UnitView]:
        return sorted((self._view(u) for u in self._pages("/units", "units")), key=lambda v: v.name)

    def unit(self, name: str) -> UnitView | None:
        try:
            _, data = self._request("GET", "/units/" + urllib.parse.quote(name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return self._view(data or {})

    def create_unit(self, name: str, unit: UnitFile) -> None:
        body = {"name": name, "options": options_to_json(unit)}
        self._request("PUT", "/units/" + urllib.parse.quote(name), body)

    def replace_unit(self, name: str, unit: UnitFile, desired_state: str) -> None:
        body = {"name": name, "options": options_to_json(unit), "desiredState": desired_state}
        self._request("PUT", "/units/" + urllib.parse.quote(name), body)

    def set_unit_target_state(self, name: str, state: str) -> None:
        body = {"name": name, "desiredState": state}
        self._request("PUT", "/units/" + urllib.parse.quote(name), body)

    def destroy_unit(self, name: str) -> bool:
        try:
            self._request("DELETE", "/units/" + urllib.parse.quote(name))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def unit_states(self) -> list[UnitState]:
        states = [
            UnitState(
                name=str(s.get("name", "")),
                machine_id=str(s.get("machineID", "")),
                load_state=str(s.get("systemdLoadState", "")),
                active_state=str(s.get("systemdActiveState", "")),
                sub_state=str(s.get("systemdSubState", "")),
                unit_hash=str(s.get("hash", "")),
            )
            for s in self._pages("/state", "states")
        ]
        return sorted(states, key=lambda s: (s.name, s.machine_id))

    def machines(self) -> list[MachineState]:
        machines = [
            MachineState(
                id=str(m.get("id", "")),
                public_ip=str(m.get("primaryIP", "") or ""),
                metadata=tuple(
                    sorted((str(k), str(v)) for k, v in (m.get("metadata") or {}).items())
                ),
            )
            for m in self._pages("/machines", "machines")
        ]
        return sorted(machines, key=lambda m: m.id)


def encode_page_token(limit: int, page: int) -> str:
    raw = json.dumps({"limit": limit, "page": page}).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_page_token(token: str) -> tuple[int, int]:
    """(limit, page) of a nextPageToken; FleetError if it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8"))
        limit, page = int(data["limit"]), int(data["page"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise FleetError("invalid page token") from exc
    if limit < 1 or page < 1:
        raise FleetError("invalid page token")
    return limit, page


def make_client(
    *,
    driver: str,
    endpoint: str,
    key_prefix: str,
    request_timeout: float,
    tls: TlsFiles,
    warn: Any = None,
) -> FleetClient:
    """Build the client fleetctl's flags ask for; FleetError if they are unusable."""
    if driver == "etcd":
        etcd = EtcdClient(endpoint.split(","), timeout=request_timeout, tls=tls)
        return RegistryClient(Registry(etcd, key_prefix))
    if driver == "API":
        endpoints = [e for e in endpoint.split(",") if e]
        if not endpoints:
            raise FleetError("no endpoint given")
        if len(endpoints) > 1 and warn is not None:
            warn(f"multiple endpoints provided but only the first ({endpoints[0]}) is used")
        return HttpApiClient(
            parse_api_endpoint(endpoints[0]), timeout=api_answer_timeout(request_timeout)
        )
    raise FleetError(f"unrecognized driver {go_quote(driver)}")
