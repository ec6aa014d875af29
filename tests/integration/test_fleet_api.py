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

from tests.etcd_support import ETCD, EtcdMember
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


def exchange(machine: Machine, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
    """(status, Content-Type, decoded body) of one request on the machine's API socket."""
    assert machine.socket_path is not None
    conn = UnixConnection(machine.socket_path)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    content_type = response.getheader("Content-Type", "")
    return response.status, content_type, json.loads(raw) if raw.strip() else None


def call(machine: Machine, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, decoded = exchange(machine, method, "/fleet/v1" + path, body)
    return status, decoded


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


def meta_op(kind: str, machine: Machine, key: str, value: str = "") -> dict[str, Any]:
    """One op as fleet's functional tests marshal machineMetadataOp (``Value`` untagged)."""
    return {"op": kind, "path": f"/{machine.machine_id}/metadata/{key}", "Value": {"value": value}}


def machines_by_id(machine: Machine) -> dict[str, Any]:
    status, body = call(machine, "GET", "/machines")
    assert status == 200
    return {m["id"]: m for m in body["machines"]}


def test_machines_patch_add_modify_and_delete(cluster: FleetCluster) -> None:
    """fleet functional/machines_test.go TestMachinesPatchAddModify and TestMachinesPatchDelete."""
    m0 = cluster.start_machine("m0", api_socket=True, metadata={"hostname": "smoke0"})
    m1 = cluster.start_machine("m1", api_socket=True, metadata={"hostname": "smoke1"})
    patch = [meta_op("add", m0, "foo", "bar"), meta_op("replace", m1, "ping", "splat")]
    assert exchange(m0, "PATCH", "/fleet/v1/machines", patch) == (204, "application/json", None)
    got = machines_by_id(m0)
    assert got[m0.machine_id] == {
        "id": m0.machine_id,
        "primaryIP": m0.public_ip,
        "metadata": {"foo": "bar", "hostname": "smoke0"},
    }
    assert got[m1.machine_id]["metadata"] == {"ping": "splat", "hostname": "smoke1"}
    listed = api(cluster, m1, "list-machines", "--no-legend", "--full", "--fields=machine,metadata")
    assert f"{m0.machine_id}\tfoo=bar,hostname=smoke0" in listed.stdout.splitlines()

    removal = [meta_op("remove", m0, "foo"), meta_op("remove", m1, "ping")]
    assert call(m0, "PATCH", "/machines", removal) == (204, None)
    got = machines_by_id(m1)
    assert got[m0.machine_id]["metadata"] == {"hostname": "smoke0"}
    assert got[m1.machine_id]["metadata"] == {"hostname": "smoke1"}
    # removing a key the machine itself set hides it too (registry/machine.go mergeMetadata)
    assert call(m0, "PATCH", "/machines", [meta_op("remove", m0, "hostname")]) == (204, None)
    assert machines_by_id(m0)[m0.machine_id]["metadata"] == {}


def test_machines_patch_bad(cluster: FleetCluster) -> None:
    """fleet functional/machines_test.go TestMachinesPatchBad: bad op, path and value are 400."""
    m0 = cluster.start_machine("m0", api_socket=True)
    cases = [
        (meta_op("noop", m0, "foo", "bar"), "invalid op: expect add, remove, or replace"),
        (
            {"op": "add", "path": f"/{m0.machine_id}/foo", "Value": {"value": "bar"}},
            "machine metadata path invalid",
        ),
        (meta_op("add", m0, "foo", ""), "invalid value: add and replace require a value"),
    ]
    for op, message in cases:
        assert exchange(m0, "PATCH", "/fleet/v1/machines", [op]) == (
            400,
            "application/json",
            {"error": {"code": 400, "message": message}},
        )
    assert machines_by_id(m0)[m0.machine_id]["metadata"] == {}


def test_machines_list_bad_next_page_token(cluster: FleetCluster) -> None:
    """fleet functional/machines_test.go TestMachinesList and TestMachinesListBadNextPageToken."""
    m0 = cluster.start_machine("m0", api_socket=True)
    assert exchange(m0, "GET", "/fleet/v1/machines")[:2] == (200, "application/json")
    status, content_type, _ = exchange(m0, "GET", "/fleet/v1/machines?nextPageToken=EwBMLg==")
    assert (status, content_type) == (400, "application/json")


def test_patched_metadata_moves_a_machine_metadata_unit(
    cluster: FleetCluster, tmp_path: Path
) -> None:
    """Dynamic metadata reaches the engine (fleet's api/machines.go + registry/machine.go):
    a ``MachineMetadata`` unit goes where the PATCH put the value and leaves when it goes."""
    one = cluster.start_machine("one", api_socket=True)
    two = cluster.start_machine("two", api_socket=True)
    unit = write_unit(
        tmp_path,
        "web.service",
        "[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nMachineMetadata=role=web\n",
    )
    started = api(cluster, one, "start", "--no-block", str(unit))
    assert started.returncode == 0, started.stderr
    assert call(one, "PATCH", "/machines", [meta_op("add", two, "role", "web")]) == (204, None)
    cluster.wait(lambda: two.machine_id in cluster.active_on("web.service"), 20, "web on two")
    patch = [meta_op("remove", two, "role"), meta_op("add", one, "role", "web")]
    assert call(one, "PATCH", "/machines", patch) == (204, None)
    cluster.wait(
        lambda: cluster.active_on("web.service") == [one.machine_id], 20, "web moved to one"
    )
    assert "web.service" not in two.running()


ROUTES = [
    ("GET", "/", 405, ""),
    ("GET", "/nothing", 404, ""),
    ("GET", "/fleet/v1", 405, ""),
    ("GET", "/fleet/v1/", 404, ""),
    ("GET", "/fleet/v1/units/", 404, ""),
    ("GET", "/fleet/v1/units/a/b", 404, ""),
    ("GET", "/fleet/v1/machines/x", 404, ""),
    ("POST", "/fleet/v1/units", 405, "only GET supported against this resource"),
    (
        "POST",
        "/fleet/v1/units/a.service",
        405,
        "only GET, PUT and DELETE supported against this resource",
    ),
    ("DELETE", "/fleet/v1/machines", 405, "only GET and PATCH supported against this resource"),
    ("PUT", "/fleet/v1/state", 405, "only GET supported against this resource"),
    ("GET", "/fleet/v1/state/none.service", 404, "unit state does not exist"),
]


def test_unknown_routes_and_methods(cluster: FleetCluster) -> None:
    """fleet's api/mux.go (``/`` 405, else 404; prefix alone 405) and each resource's ServeHTTP."""
    one = cluster.start_machine("one", api_socket=True)
    for method, path, status, message in ROUTES:
        assert exchange(one, method, path) == (
            status,
            "application/json",
            {"error": {"code": status, "message": message}},
        ), (method, path)


def test_the_v1_alpha_prefix_serves_the_same_api(cluster: FleetCluster) -> None:
    """api/mux.go wires every resource under both ``/v1-alpha`` and ``/fleet/v1``."""
    one = cluster.start_machine("one", api_socket=True)
    status, _, body = exchange(one, "GET", "/v1-alpha/machines")
    assert status == 200
    assert body["machines"][0]["id"] == one.machine_id


def test_503_while_another_fleetd_holds_the_machine_id(cluster: FleetCluster) -> None:
    """api/server.go: 503 until registered; a twin says why and waits (server/server.go Run)."""
    first = cluster.start_machine("first", api_socket=True)
    twin = cluster.start_machine("twin", machine_id=first.machine_id, api_socket=True, wait=False)
    cluster.wait(
        lambda: "is already registered by another live fleetd" in twin.log(), 30, "twin's reason"
    )
    status, _, body = exchange(twin, "GET", "/fleet/v1/units")
    assert status == 503
    assert body["error"]["message"].startswith(
        f"fleet server unable to register this machine: machine ID {first.machine_id} "
        "is already registered by another live fleetd"
    )
    refused = api(cluster, twin, "list-units")
    assert refused.returncode == 1
    assert "is already registered by another live fleetd" in refused.stderr
    assert twin.alive()
    assert cluster.terminate(first) == 0
    cluster.wait_registered(twin, timeout=30)
    assert exchange(twin, "GET", "/fleet/v1/units")[0] == 200


def test_503_while_etcd_cannot_be_reached(cluster: FleetCluster, etcd: EtcdMember) -> None:
    """api/server.go unavailableHdlr: fleet's words while etcd does not answer."""
    one = cluster.start_machine("one", api_socket=True)
    etcd.stop()
    cluster.wait(
        lambda: exchange(one, "GET", "/fleet/v1/machines")[0] == 503, 30, "the API to answer 503"
    )
    assert exchange(one, "GET", "/fleet/v1/machines") == (
        503,
        "application/json",
        {"error": {"code": 503, "message": "fleet server unable to communicate with etcd"}},
    )
    assert one.alive()
