"""fleet's HTTP API on a socket-activated unix socket, as fleet.socket provides it.

fleetd receives a listening socket the way systemd passes it (``LISTEN_FDS``,
``LISTEN_PID``, fd 3); fleetctl uses its default API driver against it.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_support import ETCD
from tests.fleet_support import GUEST_PYTHON, FleetCluster, Machine, write_unit

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (ETCD.exists() and GUEST_PYTHON.exists()), reason="needs etcd 3.4 and python3"
    ),
    pytest.mark.timeout(180),
]

UNIT = "[Unit]\nDescription=api test\n\n[Service]\nExecStart=/bin/sleep 1000\n"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.path)
        self.sock = sock


def call(machine: Machine, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    assert machine.socket_path is not None
    conn = UnixConnection(machine.socket_path)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(
            method, "/fleet/v1" + path, json.dumps(body) if body is not None else None, headers
        )
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw.strip() else None


def api(cluster: FleetCluster, machine: Machine, *args: str) -> Any:
    return cluster.fleetctl(*args, driver_args=(f"--endpoint=unix://{machine.socket_path}",))


def test_fleetctl_default_driver_over_the_socket(cluster: FleetCluster, tmp_path: Path) -> None:
    one = cluster.start_machine("one", api_socket=True, metadata={"az": "1"})
    two = cluster.start_machine("two", api_socket=True)
    machines = api(cluster, one, "list-machines")
    assert machines.returncode == 0, machines.stderr
    expected = sorted(
        [
            f"{one.machine_id[:8]}...\t{one.public_ip}\taz=1",
            f"{two.machine_id[:8]}...\t{two.public_ip}\t-",
        ]
    )
    assert machines.stdout.splitlines() == ["MACHINE\t\tIP\t\tMETADATA", *expected]

    unit = write_unit(tmp_path, "api.service", UNIT)
    started = api(cluster, two, "start", "--block-attempts=40", str(unit))
    assert started.returncode == 0, started.stderr
    host = min((one, two), key=lambda m: m.machine_id)
    assert started.stdout == f"Unit api.service launched on {host.legend}\n"
    listed = api(cluster, one, "list-units", "--no-legend")
    assert listed.stdout == f"api.service\t{host.legend}\tactive\trunning\n"
    assert api(cluster, one, "cat", "api").stdout == UNIT
    assert api(cluster, two, "destroy", "api").stdout == "Destroyed api.service\n"


def test_api_answers_with_fleet_errors(cluster: FleetCluster) -> None:
    one = cluster.start_machine("one", api_socket=True)
    assert call(one, "GET", "/units/missing.service") == (
        404,
        {"error": {"code": 404, "message": "unit does not exist"}},
    )
    assert call(one, "PUT", "/units/x.service", {"desiredState": "launched"}) == (
        409,
        {"error": {"code": 409, "message": "unit does not exist and options field empty"}},
    )
    status, body = call(one, "PUT", "/units/bad.unit", {"options": []})
    assert (status, body["error"]["message"]) == (400, 'invalid unit type: "unit"')
    status, body = call(one, "PUT", "/units/a.service", {"name": "b.service"})
    assert status == 400
    assert body["error"]["message"] == (
        'name in URL "a.service" differs from unit name in request body "b.service"'
    )
    options = [
        {"section": "Service", "name": "ExecStart", "value": "/bin/true"},
        {"section": "X-Fleet", "name": "Global", "value": "true"},
        {"section": "X-Fleet", "name": "MachineID", "value": "abc"},
    ]
    status, body = call(one, "PUT", "/units/g.service", {"options": options})
    assert (status, body["error"]["message"]) == (400, "MachineID cannot be used with Global")

    good = [{"section": "Service", "name": "ExecStart", "value": "/bin/sleep 100"}]
    assert call(one, "PUT", "/units/ok.service", {"options": good}) == (201, None)
    assert call(one, "PUT", "/units/ok.service", {"options": good}) == (
        409,
        {"error": {"code": 409, "message": "must provide DesiredState to update existing unit"}},
    )
    assert call(one, "PUT", "/units/ok.service", {"desiredState": "loaded"}) == (204, None)
    status, body = call(one, "GET", "/units/ok.service")
    assert status == 200
    assert body["name"] == "ok.service"
    assert body["desiredState"] == "loaded"
    assert body["options"] == good
    assert call(one, "PUT", "/units/t@.service", {"options": good}) == (201, None)
    status, body = call(one, "PUT", "/units/t@.service", {"desiredState": "launched"})
    assert (status, body["error"]["message"]) == (400, 'cannot activate template "t@.service"')
    status, body = call(one, "GET", "/units?nextPageToken=garbage")
    assert (status, body["error"]["message"]) == (400, "invalid page token")
    status, body = call(one, "GET", "/machines")
    assert status == 200
    assert body["machines"] == [{"id": one.machine_id, "primaryIP": one.public_ip, "metadata": {}}]
    assert call(one, "DELETE", "/units/ok.service") == (204, None)
    assert call(one, "DELETE", "/units/ok.service")[0] == 404


def test_fd_forward_carries_an_api_request(cluster: FleetCluster) -> None:
    import subprocess

    from tests.fleet_support import guest_env

    one = cluster.start_machine("one", api_socket=True)
    request = b"GET /fleet/v1/machines HTTP/1.0\r\nHost: fleet\r\n\r\n"
    result = subprocess.run(
        [
            str(GUEST_PYTHON),
            "-m",
            "provisioner.guest.fleet.fleetctl",
            "fd-forward",
            str(one.socket_path),
        ],
        input=request,
        env=guest_env(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["machines"][0]["id"] == one.machine_id
