"""The discovery service as real etcd processes, in the foreground and in the background."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.discovery import (
    DiscoveryServer,
    check_health,
    delete_token,
    ensure_running,
    fetch_token,
    new_token,
    release_token,
    retire,
    service_dir,
    stop_daemon,
    stop_legacy_daemon,
)
from provisioner.discovery.client import list_tokens
from provisioner.discovery.service import is_running, read_pidfile, running_pids
from provisioner.errors import DiscoveryError
from tests.etcd_support import ETCD
from tests.loopback import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ETCD.exists(), reason="needs etcd-server 3.4"),
    pytest.mark.timeout(120),
]


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
    with DiscoveryServer(("127.0.0.1", free_port()), tmp_path / "state") as running:
        yield running


def test_tokens_survive_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = DiscoveryServer(("127.0.0.1", free_port()), state_dir)
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
    with DiscoveryServer(("127.0.0.1", free_port()), tmp_path / "state") as server:
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


def test_stop_ends_pending_watches(tmp_path: Path) -> None:
    server = DiscoveryServer(("127.0.0.1", free_port()), tmp_path / "state")
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
    # etcd cuts the stream: no event, and etcd's discovery client asks again elsewhere.
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert cut.value.partial == b""
    conn.close()


def test_delete_token(server: DiscoveryServer) -> None:
    url = new_token(server.url, 1)
    assert register(url, "abcd", "m1=http://10.0.0.1:2380") == 201
    assert delete_token(url) is True
    with pytest.raises(DiscoveryError, match="not found") as caught:
        fetch_token(url)
    assert caught.value.hint is not None
    assert delete_token(url) is False
    plain = new_token(server.url, 1)
    assert plain.startswith(f"{server.url}/v2/keys/_etcd/registry/")  # etcd's own URL form
    assert fetch_token(plain).size == 1
    assert delete_token(plain) is True
    assert list_tokens(server.url) == []


def test_unreachable_service_points_to_lab_discovery_serve() -> None:
    port = free_port()
    with pytest.raises(DiscoveryError, match="unreachable") as caught:
        new_token(f"http://127.0.0.1:{port}", 3, timeout=5)
    assert caught.value.hint is not None
    assert "lab discovery serve" in caught.value.hint


def test_one_server_per_state_dir_and_port(server: DiscoveryServer, tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="in use by another discovery server"):
        DiscoveryServer(("127.0.0.1", free_port()), tmp_path / "state").start()
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(DiscoveryError, match=r"cannot listen on 127\.0\.0\.1:") as caught:
        DiscoveryServer(("127.0.0.1", port), tmp_path / "other").start()
    assert caught.value.hint is not None
    assert new_token(server.url, 1)  # the running one is unharmed


def test_an_unusable_state_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DiscoveryError, match="cannot use discovery state directory") as caught:
        DiscoveryServer(("127.0.0.1", free_port()), blocker / "state").start()
    assert caught.value.hint == "choose a writable --state-dir"


def test_cli_entry_point(server: DiscoveryServer) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["discovery", "new", "--server", server.url, "--size", "2"])
    assert created.exit_code == 0, created.output
    url = created.stdout.strip().splitlines()[-1]
    assert register(url, "abcd", "m1=http://10.0.0.1:2380") == 201
    state = fetch_token(url)
    assert (state.size, [(m.id, m.value) for m in state.members]) == (
        2,
        [("abcd", "m1=http://10.0.0.1:2380")],
    )
    bad = runner.invoke(main, ["discovery", "serve", "--listen", "nonsense"])
    assert bad.exit_code == 1
    assert "error: invalid listen address 'nonsense'" in bad.stderr


def test_a_missing_etcd_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DiscoveryError, match="needs etcd") as caught:
        DiscoveryServer(("127.0.0.1", free_port()), tmp_path / "state").start()
    assert caught.value.hint is not None
    assert "apt-get install etcd-server" in caught.value.hint


def test_etcd_listens_only_on_its_address(server: DiscoveryServer) -> None:
    links = [fd.readlink() for fd in Path(f"/proc/{server.pid}/fd").iterdir()]
    inodes = {str(link).removeprefix("socket:[").rstrip("]") for link in links}
    listening = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                listening.append(fields[1])
    port = int(server.url.rsplit(":", 1)[1])
    assert listening == [f"0100007F:{port:04X}"]  # 127.0.0.1:port and nothing else


@pytest.fixture
def daemon_dir(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "daemon"
    try:
        yield state_dir
    finally:
        stop_daemon(state_dir)
        for pid in running_pids(state_dir):
            os.kill(pid, 9)


def test_ensure_running_starts_reuses_and_stops_a_daemon(daemon_dir: Path) -> None:
    port = free_port()
    url = ensure_running("127.0.0.1", port, daemon_dir, timeout=30)
    assert url == f"http://127.0.0.1:{port}"
    info = read_pidfile(daemon_dir)
    assert info is not None
    assert info.pid != os.getpid()
    assert is_running(info.pid, daemon_dir)  # an etcd on this directory's data
    assert os.getsid(info.pid) == info.pid  # in a session of its own: outlives `lab up`
    assert check_health(url) is not None
    token = new_token(url, 3)

    assert ensure_running("127.0.0.1", port, daemon_dir, timeout=30) == url
    again = read_pidfile(daemon_dir)
    assert again == info  # reused, not restarted
    with pytest.raises(DiscoveryError, match="already runs at"):
        ensure_running("127.0.0.1", free_port(), daemon_dir, timeout=10)

    assert stop_daemon(daemon_dir) is True
    assert not is_running(info.pid, daemon_dir)
    assert read_pidfile(daemon_dir) is None
    assert check_health(url) is None
    assert stop_daemon(daemon_dir) is False
    assert "serving client traffic" in (daemon_dir / "etcd.log").read_text()  # etcd's log

    restarted = ensure_running("127.0.0.1", port, daemon_dir, timeout=30)
    assert fetch_token(token).size == 3  # the token outlived its daemon
    assert restarted == url
    assert stop_daemon(daemon_dir) is True


def test_a_stale_pidfile_and_a_stray_etcd_are_handled(daemon_dir: Path) -> None:
    port = free_port()
    url = ensure_running("127.0.0.1", port, daemon_dir, timeout=30)
    info = read_pidfile(daemon_dir)
    assert info is not None
    (daemon_dir / "etcd.pid").unlink()  # an etcd whose pid file was lost is still found
    assert ensure_running("127.0.0.1", port, daemon_dir, timeout=30) == url
    assert running_pids(daemon_dir) == [info.pid]
    assert stop_daemon(daemon_dir) is True
    (daemon_dir / "etcd.pid").write_text(f'{{"pid": {os.getpid()}, "url": "{url}"}}')
    assert stop_daemon(daemon_dir) is False  # a pid that is not our etcd is never signalled
    assert ensure_running("127.0.0.1", port, daemon_dir, timeout=30) == url


def test_ensure_running_reports_a_daemon_that_cannot_start(daemon_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DiscoveryError, match="cannot listen") as caught:
            ensure_running("127.0.0.1", port, daemon_dir, timeout=30)
    assert time.monotonic() - started < 20
    assert f"127.0.0.1:{port}: Address already in use" in str(caught.value)
    assert caught.value.hint is not None
    assert read_pidfile(daemon_dir) is None

    daemon_dir.mkdir(parents=True, exist_ok=True)
    (daemon_dir / "data").write_text("not a directory")
    with pytest.raises(DiscoveryError, match="exited with status 1 at start: ") as exited:
        ensure_running("127.0.0.1", free_port(), daemon_dir, timeout=30)
    assert "data" in str(exited.value)  # the tail of etcd's own log
    assert read_pidfile(daemon_dir) is None


def test_retiring_one_address_leaves_the_others_alone(tmp_path: Path) -> None:
    port = free_port()
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    try:
        mine_url = ensure_running("127.0.0.1", port, mine, timeout=30)
        theirs_url = ensure_running("127.0.0.2", port, theirs, timeout=30)
        kept = new_token(theirs_url, 3)
        gone = new_token(mine_url, 3)
        assert retire("127.0.0.1", port, mine) is False  # still holds a token
        assert check_health(mine_url) is not None
        assert delete_token(gone) is True
        assert retire("127.0.0.1", port, mine) is True
        assert check_health(mine_url) is None
        assert not mine.exists()
        assert fetch_token(kept).size == 3  # the other address's service is untouched
    finally:
        stop_daemon(mine)
        stop_daemon(theirs)


def test_release_token_stops_the_service_with_the_last_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    port = free_port()
    directory = service_dir("127.0.0.1", port)
    assert directory == tmp_path / "lab" / "discovery" / f"127.0.0.1-{port}"
    try:
        url = ensure_running("127.0.0.1", port)
        first, second = new_token(url, 3), new_token(url, 1)
        assert release_token(first) is True
        assert check_health(url) is not None  # another lab's token is still there
        assert release_token(second) is True
        assert check_health(url) is None
        assert not directory.exists()
        assert release_token(second) is False  # no service for that address any more
    finally:
        stop_daemon(directory)


def test_the_per_lab_service_of_earlier_versions_is_stopped(tmp_path: Path) -> None:
    legacy = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-m", "provisioner.discovery"]
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "discovery.pid").write_text(json.dumps({"pid": legacy.pid, "url": "x"}))
        assert stop_legacy_daemon(tmp_path) is True
        legacy.wait(timeout=1)  # gone already: stop_legacy_daemon waited for it
        (tmp_path / "discovery.pid").write_text(json.dumps({"pid": other.pid, "url": "x"}))
        assert stop_legacy_daemon(tmp_path) is False  # not a discovery service: left alone
        assert other.poll() is None
    finally:
        for process in (legacy, other):
            process.kill()
            process.wait(timeout=10)
