"""Real etcd 3.4 members bootstrapping through the project's discovery service.

The service is itself an etcd (:class:`DiscoveryServer`); every member runs on
127.0.0.1 with ports picked at run time and its own data directory
(:mod:`tests.etcd_support`), and is killed at teardown.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.discovery import DiscoveryServer, fetch_token, new_token
from provisioner.discovery.client import list_tokens
from provisioner.errors import DiscoveryError
from tests.etcd_support import ETCD, ETCDCTL, Etcds
from tests.loopback import free_port, wait_for

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
    with DiscoveryServer(("127.0.0.1", free_port()), tmp_path / "discovery") as running:
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


def test_three_members_bootstrap_and_a_fourth_is_refused(
    server: DiscoveryServer, etcds: Etcds
) -> None:
    url = new_token(server.url, 3)
    token = url.rsplit("/", 1)[1]
    members = []
    for n in range(3):
        members.append(etcds.start(f"m{n}", "--discovery", url))
        time.sleep(1.5)  # the first ones wait on the token before the next registers
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


def test_unknown_token_stops_etcd_with_a_clear_error(server: DiscoveryServer, etcds: Etcds) -> None:
    token = "0123456789abcdef0123456789abcdef"
    url = f"{server.url}/v2/keys/_etcd/registry/{token}"
    member = etcds.start("lost", "--discovery", url)
    status = member.process.wait(timeout=30)
    assert status != 0
    output = member.output()
    # etcd 3.4 reports the registry's own error, naming the missing token.
    assert f"100: Key not found (/_etcd/registry/{token})" in output
    assert "failed to join discovery cluster" in output


def test_new_rejects_a_malformed_size(server: DiscoveryServer) -> None:
    refused = CliRunner().invoke(
        main, ["discovery", "new", "--server", server.url, "--size", "abc"]
    )
    assert refused.exit_code == 2
    assert "'abc' is not a valid integer" in refused.stderr
    with pytest.raises(DiscoveryError, match="at least 1 member"):
        new_token(server.url, 0)
    with pytest.raises(DiscoveryError, match="invalid size -1"):
        new_token(server.url, -1)
    assert list_tokens(server.url) == []  # nothing was created
    default = fetch_token(new_token(server.url))
    assert (default.size, default.members) == (3, ())
