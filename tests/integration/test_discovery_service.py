"""The discovery service as real HTTP servers and real background processes."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.discovery import (
    DiscoveryServer,
    check_health,
    delete_token,
    ensure_running,
    fetch_token,
    new_token,
    stop_daemon,
)
from provisioner.discovery.__main__ import main
from provisioner.discovery.daemon import is_running, read_pidfile
from provisioner.errors import DiscoveryError
from tests.loopback import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def register(discovery_url: str, member_id: str, value: str) -> int:
    """PUT a member the way etcd's discovery client does; returns the HTTP status."""
    parts = urllib.parse.urlsplit(discovery_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(
            "PUT",
            f"{parts.path}/{member_id}?prevExist=false",
            body=urllib.parse.urlencode({"value": value}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DiscoveryServer]:
    with DiscoveryServer(("127.0.0.1", 0), tmp_path / "state", watch_timeout=0.5) as running:
        yield running


def test_tokens_survive_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = DiscoveryServer(("127.0.0.1", 0), state_dir)
    first.start()
    try:
        url = new_token(first.url, 3)
        assert register(url, "aaaa", "m1=http://10.0.0.1:2380") == 201
        assert register(url, "bbbb", "m2=http://10.0.0.2:2380") == 201
        before = fetch_token(url)
        index_before = check_health(first.url)
        assert index_before is not None
        first_url = first.url
    finally:
        first.stop()

    port = int(first_url.rsplit(":", 1)[1])
    with DiscoveryServer(("127.0.0.1", port), state_dir) as second:
        assert second.url == first_url
        after = fetch_token(url)  # the same URL works against the new process
        assert after == before
        assert after.size == 3
        assert [m.value for m in after.members] == [
            "m1=http://10.0.0.1:2380",
            "m2=http://10.0.0.2:2380",
        ]
        assert register(url, "aaaa", "again") == 412  # still registered
        assert register(url, "cccc", "m3=http://10.0.0.3:2380") == 201
        newest = fetch_token(url).members[-1]
        assert newest.created_index > index_before.index  # the index never went back


def test_a_watch_sends_headers_at_once_and_wakes_on_a_member(tmp_path: Path) -> None:
    # With a 60 s watch timeout, headers that waited for the event would only come
    # after the member below is registered, which happens after they arrive.
    with DiscoveryServer(("127.0.0.1", 0), tmp_path / "state", watch_timeout=60) as server:
        url = new_token(server.url, 2)
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.netloc, timeout=10)
        try:
            conn.request("GET", f"{parts.path}?recursive=true&wait=true")
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Transfer-Encoding") == "chunked"
            index = response.getheader("X-Etcd-Index")
            assert index is not None
            body: list[bytes] = []
            reader = threading.Thread(target=lambda: body.append(response.read()))
            reader.start()
            time.sleep(0.2)
            assert reader.is_alive()  # no event yet
            started = time.monotonic()
            assert register(url, "abcd", "m1=http://10.0.0.1:2380") == 201
            reader.join(timeout=10)
            assert not reader.is_alive()
            assert time.monotonic() - started < 5
        finally:
            conn.close()
    event = json.loads(body[0])
    assert event["action"] == "create"
    assert event["node"]["key"].endswith("/abcd")
    assert event["node"]["createdIndex"] == int(index) + 1


def test_a_watch_times_out_with_an_empty_body(server: DiscoveryServer) -> None:
    url = new_token(server.url, 2)
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        started = time.monotonic()
        conn.request("GET", f"{parts.path}?recursive=true&wait=true")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b""  # etcd's client treats this as "ask again"
        assert 0.4 < time.monotonic() - started < 5
    finally:
        conn.close()


def test_stop_ends_pending_watches(tmp_path: Path) -> None:
    server = DiscoveryServer(("127.0.0.1", 0), tmp_path / "state", watch_timeout=60)
    server.start()
    try:
        url = new_token(server.url, 2)
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.netloc, timeout=10)
        conn.request("GET", f"{parts.path}?recursive=true&wait=true")
        response = conn.getresponse()
        assert response.status == 200
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 5
    assert response.read() == b""
    conn.close()


def test_delete_token(server: DiscoveryServer) -> None:
    url = new_token(server.url, 1)
    assert register(url, "abcd", "m1=http://10.0.0.1:2380") == 201
    assert delete_token(url) is True
    with pytest.raises(DiscoveryError, match="not found") as caught:
        fetch_token(url)
    assert caught.value.hint is not None
    assert delete_token(url) is False
    plain = new_token(server.url, 1).replace(server.url, f"{server.url}/v2/keys/_etcd/registry")
    assert fetch_token(plain).size == 1  # the plain-etcd URL form reaches the same token
    assert delete_token(plain) is True


def test_unreachable_service_points_to_lab_discovery_serve() -> None:
    port = free_port()
    with pytest.raises(DiscoveryError, match="unreachable") as caught:
        new_token(f"http://127.0.0.1:{port}", 3, timeout=5)
    assert caught.value.hint is not None
    assert "lab discovery serve" in caught.value.hint


def test_one_server_per_state_dir_and_port(server: DiscoveryServer, tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="in use by another discovery server"):
        DiscoveryServer(("127.0.0.1", 0), tmp_path / "state").start()
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(DiscoveryError, match=r"cannot listen on 127\.0\.0\.1:") as caught:
        DiscoveryServer(("127.0.0.1", port), tmp_path / "other").start()
    assert caught.value.hint is not None
    assert new_token(server.url, 1)  # the running one is unharmed


def test_an_unusable_state_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DiscoveryError, match="cannot use discovery state directory") as caught:
        DiscoveryServer(("127.0.0.1", 0), blocker / "state").start()
    assert caught.value.hint == "choose a writable --state-dir"


def test_module_entry_point(server: DiscoveryServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "--server", server.url, "--size", "2"]) == 0
    url = capsys.readouterr().out.strip()
    assert register(url, "abcd", "m1=http://10.0.0.1:2380") == 201
    assert main(["show", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "size 2, 1 registered",
        "abcd m1=http://10.0.0.1:2380",
    ]
    assert main(["serve", "--listen", "nonsense", "--state-dir", "/nonexistent"]) == 1
    assert "error: invalid listen address 'nonsense'" in capsys.readouterr().err


@pytest.fixture
def daemon_dir(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "daemon"
    try:
        yield state_dir
    finally:
        info = read_pidfile(state_dir)
        stop_daemon(state_dir)
        if info is not None and is_running(info.pid):
            os.kill(info.pid, 9)


def test_ensure_running_starts_reuses_and_stops_a_daemon(daemon_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "discovery.log"
    url = ensure_running("127.0.0.1", port, daemon_dir, log_file, timeout=30)
    assert url == f"http://127.0.0.1:{port}"
    info = read_pidfile(daemon_dir)
    assert info is not None
    assert info.pid != os.getpid()
    assert is_running(info.pid)
    health = check_health(url)
    assert health is not None
    assert health.pid == info.pid
    assert health.state_dir == str(daemon_dir.resolve())
    token = new_token(url, 3)

    assert ensure_running("127.0.0.1", port, daemon_dir, log_file, timeout=30) == url
    again = read_pidfile(daemon_dir)
    assert again == info  # reused, not restarted
    with pytest.raises(DiscoveryError, match="already runs at"):
        ensure_running("127.0.0.1", free_port(), daemon_dir, log_file, timeout=10)

    assert stop_daemon(daemon_dir) is True
    assert not is_running(info.pid)
    assert read_pidfile(daemon_dir) is None
    assert check_health(url) is None
    assert stop_daemon(daemon_dir) is False
    assert "GET /new?size=3" in log_file.read_text()  # requests went to the log file

    restarted = ensure_running("127.0.0.1", port, daemon_dir, log_file, timeout=30)
    assert fetch_token(token).size == 3  # the token outlived its daemon
    assert restarted == url
    assert stop_daemon(daemon_dir) is True


def test_ensure_running_reports_a_daemon_that_cannot_start(
    daemon_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DiscoveryError, match="exited with status 1") as caught:
            ensure_running("127.0.0.1", port, daemon_dir, tmp_path / "d.log", timeout=30)
    assert time.monotonic() - started < 20
    assert "cannot listen" in str(caught.value)
    assert read_pidfile(daemon_dir) is None
