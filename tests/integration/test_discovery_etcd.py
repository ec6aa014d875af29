"""Real etcd 3.4 members bootstrapping through the project's discovery service.

Every etcd runs on 127.0.0.1 with ports picked at run time and its own data
directory (:mod:`tests.etcd_support`), and is killed at teardown.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.discovery import DiscoveryServer, fetch_token, new_token
from provisioner.errors import DiscoveryError
from tests.etcd_support import ETCD, ETCDCTL, Etcds
from tests.loopback import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (ETCD.exists() and ETCDCTL.exists()), reason="needs etcd-server and etcd-client 3.4"
    ),
    pytest.mark.timeout(300),
]


@pytest.fixture
def etcds(tmp_path: Path) -> Iterator[Etcds]:
    launcher = Etcds(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DiscoveryServer]:
    with DiscoveryServer(("127.0.0.1", 0), tmp_path / "discovery", watch_timeout=1.0) as running:
        yield running


def etcdctl(endpoints: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ETCDCTL), "--endpoints", ",".join(endpoints), "--dial-timeout", "2s", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "ETCDCTL_API": "3"},
        check=False,
    )


class RequestLog(logging.Handler):
    """Collects the service's request log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def request_log() -> Iterator[RequestLog]:
    handler = RequestLog()
    logger = logging.getLogger("provisioner.discovery.server")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def test_three_members_bootstrap_and_a_fourth_is_refused(
    server: DiscoveryServer, etcds: Etcds, request_log: RequestLog
) -> None:
    url = new_token(server.url, 3)
    token = url.rsplit("/", 1)[1]
    members = []
    for n in range(3):
        members.append(etcds.start(f"m{n}", "--discovery", url))
        time.sleep(1.5)  # longer than the service's 1 s watch timeout: the first ones re-poll
    endpoints = [m.client_url for m in members]

    def healthy() -> bool:
        for member in members:
            if member.process.poll() is not None:
                pytest.fail(f"{member.name} exited: {member.output()[-2000:]}")
        return etcdctl(endpoints, "endpoint", "health").returncode == 0

    wait_for(healthy, 60, "3 healthy etcd members", interval=0.2)

    listed = etcdctl(endpoints[:1], "member", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split(", ") for line in listed.stdout.strip().splitlines()]
    assert sorted(row[2] for row in rows) == ["m0", "m1", "m2"]
    assert {row[1] for row in rows} == {"started"}
    assert sorted(row[3] for row in rows) == sorted(m.peer_url for m in members)

    put = etcdctl(endpoints[:1], "put", "/lab/probe", "through-m0")
    assert put.returncode == 0, put.stderr
    got = etcdctl(endpoints[2:], "get", "/lab/probe", "--print-value-only")
    assert got.stdout.strip() == "through-m0"

    state = fetch_token(url)
    assert state.size == 3
    assert [m.value for m in state.members] == [f"{m.name}={m.peer_url}" for m in members]
    # A member that waited past the 1 s watch timeout got an empty answer and asked again.
    watches = [
        line for line in request_log.lines if "wait=true" in line and "recursive=true" in line
    ]
    assert len(watches) > len(set(watches)), watches

    fourth = etcds.start("m3", "--discovery", url, "--discovery-fallback", "exit")
    status = fourth.process.wait(timeout=30)
    assert status != 0
    assert "discovery: cluster is full" in fourth.output()
    assert token in fourth.output()
    assert len(fetch_token(url).members) == 3  # the refused member never registered

    proxy = etcds.start("m4", "--discovery", url)  # default fallback: become a v2 proxy
    wait_for(
        lambda: "falling back to proxy" in proxy.output() or proxy.process.poll() is not None,
        30,
        "the fifth member to fall back to proxy",
        interval=0.2,
    )
    assert "discovery cluster full, falling back to proxy" in proxy.output()
    assert proxy.process.poll() is None


@pytest.mark.parametrize("form", ["short", "v2keys"])
def test_unknown_token_stops_etcd_with_a_clear_error(
    server: DiscoveryServer, etcds: Etcds, form: str
) -> None:
    token = "0123456789abcdef0123456789abcdef"
    url = (
        f"{server.url}/{token}"
        if form == "short"
        else f"{server.url}/v2/keys/_etcd/registry/{token}"
    )
    member = etcds.start("lost", "--discovery", url)
    status = member.process.wait(timeout=30)
    assert status != 0
    output = member.output()
    # etcd 3.4 reports the registry's own error, naming the missing token.
    assert f"100: Key not found (/_etcd/registry/{token})" in output
    assert "failed to join discovery cluster" in output


def test_new_rejects_a_malformed_size(server: DiscoveryServer) -> None:
    for size, message in (("abc", "invalid size 'abc'"), ("0", "at least 1 member")):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{server.url}/new?size={size}", timeout=10)
        with caught.value as answer:
            assert answer.code == 400
            assert message in answer.read().decode()
    with pytest.raises(DiscoveryError, match="refused to create a token: invalid size -1"):
        new_token(server.url, -1)
    default = fetch_token(new_token(server.url))
    assert (default.size, default.members) == (3, ())


# -- the same requests against a real etcd v2 store and this service ---------------------


@dataclass(frozen=True)
class Answer:
    status: int
    index: int | None
    body: Any


def call(base: str, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
    host = base.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=15)
    try:
        body = None
        headers = {}
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        index = response.getheader("X-Etcd-Index")
        return Answer(
            response.status,
            int(index) if index is not None else None,
            json.loads(raw) if raw.strip() else None,
        )
    finally:
        conn.close()


def normalise(value: Any, base: int) -> Any:
    """Shift etcd indexes so both stores count from their first write."""
    if isinstance(value, dict):
        return {
            k: (v - base if k in ("modifiedIndex", "createdIndex", "index") and v > base else v)
            if isinstance(v, int)
            else normalise(v, base)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v, base) for v in value]
    return value


def replay(base_url: str) -> list[tuple[int, int | None, Any]]:
    """A discovery-shaped session through the v2 keys API, indexes made relative."""
    tok = "/v2/keys/_etcd/registry/fidelity"
    first = call(base_url, "PUT", f"{tok}/_config/size?prevExist=false", {"value": "3"})
    base = first.body["node"]["createdIndex"] - 1
    answers = [first]

    def step(method: str, path: str, form: dict[str, str] | None = None) -> None:
        answers.append(call(base_url, method, path, form))

    member = {"value": "m1=http://127.0.0.1:2380"}
    step("GET", f"{tok}/_config/size?quorum=false&recursive=false&sorted=false")
    step("GET", f"{tok}?quorum=false&recursive=false&sorted=false")
    step("PUT", f"{tok}/abc?prevExist=false", member)
    step("PUT", f"{tok}/abc?prevExist=false", {"value": "x"})
    step("GET", f"{tok}?recursive=true&sorted=true")
    step("GET", f"{tok}/abc?recursive=false&wait=true&waitIndex={base + 2}")
    step("GET", f"{tok}/nope?quorum=false&recursive=false&sorted=false")
    step("PUT", f"{tok}/abc", {"value": "y"})
    step("PUT", f"{tok}/abc?prevExist=true", {"value": "z"})
    step("PUT", f"{tok}/abc?prevValue=q", {"value": "z2"})
    step("PUT", f"{tok}/abc?prevIndex={base + 4}&prevValue=z", {"value": "z3"})
    step("PUT", f"{tok}/abc?prevExist=maybe", {"value": "z"})
    step("GET", f"{tok}?wait=true&waitIndex=abc")
    step("GET", f"{tok}?wait=true&recursive=maybe")
    step("DELETE", tok)
    step("PUT", f"{tok}/abc/def", {"value": "z"})
    step("PUT", tok, {"value": "z"})
    step("PUT", f"{tok}/empty", {"value": ""})
    step("PUT", f"{tok}/sub?dir=true")
    step("GET", f"{tok}?recursive=true&sorted=true")
    step("DELETE", f"{tok}/abc")
    step("GET", f"{tok}?recursive=true&wait=true&waitIndex={base + 1}")
    step("GET", f"{tok}?recursive=true&wait=true&waitIndex={base + 3}")

    # A live recursive watch skips the hidden _config write and wakes on the member.
    live: list[Answer] = []
    watcher = threading.Thread(
        target=lambda: live.append(call(base_url, "GET", f"{tok}?recursive=true&wait=true"))
    )
    watcher.start()
    time.sleep(0.5)
    step("PUT", f"{tok}/_config/extra", {"value": "1"})
    step("PUT", f"{tok}/m2?prevExist=false", {"value": "m2=http://127.0.0.1:2381"})
    watcher.join(timeout=15)
    assert live, "the live watch never answered"
    answers.extend(live)

    step("DELETE", f"{tok}?recursive=true")
    step("GET", f"{tok}/_config/size?quorum=false&recursive=false&sorted=false")
    return [
        (
            a.status,
            a.index - base if a.index and a.index > base else a.index,
            normalise(a.body, base),
        )
        for a in answers
    ]


def test_keys_api_answers_like_a_real_etcd(server: DiscoveryServer, etcds: Etcds) -> None:
    real = etcds.start("v2store", "--enable-v2")
    wait_for(
        lambda: etcdctl([real.client_url], "endpoint", "health").returncode == 0,
        30,
        "etcd v2 API",
        interval=0.2,
    )
    expected = replay(real.client_url)
    actual = replay(server.url)
    assert len(actual) == len(expected)
    for number, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        assert ours == theirs, f"answer {number} differs"
