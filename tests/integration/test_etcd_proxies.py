"""etcd 3.4's own proxies in front of a real 3-member cluster on loopback, as a worker
runs them: they answer reads and writes, and keep answering when a member is stopped.

- ``etcd gateway start`` (etcdmain/gateway.go; Documentation/op-guide/gateway.md): a TCP
  proxy, so v2 HTTP and v3 gRPC pass through one port. A worker's 127.0.0.1:2379
  (boxes/default/files/usr/lib/systemd/system/etcd-gateway.service).
- the v2 proxy, ``etcd`` with ``ETCD_PROXY=on`` (etcdmain/etcd.go, startProxy;
  Documentation/v2/proxy.md): v2 only, its member list refreshed from the cluster.
  A worker's 127.0.0.1:4001 (etcd2.service with cloud-config's ``proxy: on``).
- ``etcd grpc-proxy start`` (etcdmain/grpc_proxy.go; Documentation/op-guide/grpc_proxy.md):
  gRPC only; any other HTTP request but /health and /metrics gets 404, which is why
  it cannot take a worker's 2379 where the tutorials' ``curl .../v2/keys`` must work.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.etcd_support import ETCD, ETCDCTL, EtcdMember, Etcds
from tests.loopback import free_port, listening, stop_process, tail, wait_for

pytestmark = pytest.mark.integration

MEMBERS = 3
SETTLE = 30.0  # seconds for a proxy to answer again once a member has gone


@dataclass
class Cluster:
    members: list[EtcdMember]

    @property
    def client_hosts(self) -> str:
        """``host:port,...`` as ``etcd gateway`` and ``etcd grpc-proxy`` take them."""
        return ",".join(m.client_url.removeprefix("http://") for m in self.members)

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three members with the v2 API on, as a lab's core nodes run them."""
    etcds = Etcds(tmp_path / "members")
    members = [EtcdMember(tmp_path / "members" / f"m{i}", f"m{i}") for i in range(MEMBERS)]
    etcds.members += members
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for member in members:
            member.start(f"--initial-cluster={initial}", "--enable-v2")
        wait_for(lambda: all(m.healthy() for m in members) or None, 60, "3 healthy members")
        yield Cluster(members)
    finally:
        etcds.stop_all()


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[list[Proxy]]:
    """Proxies started by a test, stopped afterwards."""
    started: list[Proxy] = []
    yield started
    for proxy in started:
        stop_process(proxy.process)


def start_proxy(
    started: list[Proxy],
    what: str,
    directory: Path,
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
) -> Proxy:
    directory.mkdir(parents=True)
    log = directory / "proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=directory, env=env
        )
    proxy = Proxy(f"http://127.0.0.1:{port}", process, log)
    started.append(proxy)
    wait_for(
        lambda: process.poll() is None and listening(port),
        30,
        f"{what} listening on {port}",
        detail=lambda: tail(log),
    )
    return proxy


def gateway(started: list[Proxy], tmp_path: Path, cluster: Cluster) -> Proxy:
    """As etcd-gateway.service runs it (a shorter retry delay for a quick test)."""
    port = free_port()
    argv = [str(ETCD), "gateway", "start", f"--listen-addr=127.0.0.1:{port}"]
    argv += [f"--endpoints={cluster.client_hosts}", "--retry-delay=1s"]
    return start_proxy(started, "etcd gateway", tmp_path / "gateway", argv, port)


def v2_proxy(started: list[Proxy], tmp_path: Path, cluster: Cluster) -> Proxy:
    """As etcd2.service runs it on a worker: configured only by the ETCD_* environment
    the unit and cloud-config's drop-in give it."""
    port = free_port()
    directory = tmp_path / "v2-proxy"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # etcd2.service
        "ETCD_DATA_DIR": str(directory / "data"),
        "ETCD_NAME": "0123456789abcdef0123456789abcdef",  # %m, the machine id
        "ETCD_ENABLE_V2": "true",
        # cloud-config's coreos.etcd2 on a worker
        "ETCD_INITIAL_CLUSTER": cluster.initial_cluster,
        "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{port}",
        "ETCD_PROXY": "on",
    }
    return start_proxy(started, "etcd's v2 proxy", directory, [str(ETCD)], port, env)


def grpc_proxy(started: list[Proxy], tmp_path: Path, cluster: Cluster) -> Proxy:
    port = free_port()
    argv = [str(ETCD), "grpc-proxy", "start", f"--listen-addr=127.0.0.1:{port}"]
    argv += [f"--endpoints={cluster.client_hosts}", f"--data-dir={tmp_path / 'grpc-data'}"]
    return start_proxy(started, "etcd grpc-proxy", tmp_path / "grpc-proxy", argv, port)


# --- clients --------------------------------------------------------------------------


def etcdctl(url: str, *args: str, api: int = 3) -> subprocess.CompletedProcess[str]:
    deadlines = ("--command-timeout=5s", "--dial-timeout=3s") if api == 3 else ("--timeout=3s",)
    return subprocess.run(
        [str(ETCDCTL), f"--endpoints={url}", *deadlines, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "ETCDCTL_API": str(api)},
    )


def v3_round_trip(url: str, key: str, value: str) -> bool:
    """``etcdctl put`` then a linearizable ``get`` of ``key`` through ``url``."""
    put = etcdctl(url, "put", key, value)
    got = etcdctl(url, "get", "--print-value-only", key)
    return put.returncode == 0 and got.stdout.strip() == value


def v2_request(url: str, key: str, value: str | None = None) -> dict[str, object]:
    """The tutorials' ``curl -L URL/v2/keys/KEY [-XPUT -d value=VALUE]``."""
    data = urllib.parse.urlencode({"value": value}).encode() if value is not None else None
    method = "PUT" if value is not None else "GET"
    request = urllib.request.Request(f"{url}/v2/keys{key}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def v2_round_trip(url: str, key: str, value: str) -> bool:
    try:
        v2_request(url, key, value)
        node = v2_request(url, key)["node"]
    except (OSError, ValueError):
        return False
    return isinstance(node, dict) and node.get("value") == value


def stop_first_member(cluster: Cluster) -> None:
    """Stop the member every proxy lists first, so their clients must fail over."""
    cluster.members[0].stop()


# --- the tests ------------------------------------------------------------------------


def test_the_gateway_serves_v2_and_v3_on_one_port_and_outlives_a_member(
    tmp_path: Path, cluster: Cluster, proxies: list[Proxy]
) -> None:
    url = gateway(proxies, tmp_path, cluster).url
    assert v3_round_trip(url, "/greeting", "hello")
    assert etcdctl(url, "endpoint", "health").returncode == 0  # `etcdctl endpoint health`
    assert v2_round_trip(url, "/message", "Hello")  # `curl .../v2/keys/message -XPUT`
    # a CoreOS tutorial's sidekick: etcdctl (v2) set --ttl through the same port
    assert etcdctl(url, "set", "/services/web/core-04", "up", "--ttl", "60", api=2).returncode == 0
    assert etcdctl(url, "get", "/services/web/core-04", api=2).stdout.strip() == "up"

    stop_first_member(cluster)

    wait_for(lambda: v3_round_trip(url, "/greeting", "again"), SETTLE, "v3 through the gateway")
    wait_for(lambda: v2_round_trip(url, "/message", "Again"), SETTLE, "v2 through the gateway")
    assert etcdctl(url, "endpoint", "health").returncode == 0


def test_the_v2_proxy_answers_reads_and_writes_and_outlives_a_member(
    tmp_path: Path, cluster: Cluster, proxies: list[Proxy]
) -> None:
    url = v2_proxy(proxies, tmp_path, cluster).url
    wait_for(lambda: v2_round_trip(url, "/message", "Hello"), SETTLE, "v2 through the proxy")
    assert etcdctl(url, "ls", "/", api=2).stdout.split() == ["/message"]
    # the proxy learnt the members from the cluster and keeps them (its cluster file)
    known = json.loads((tmp_path / "v2-proxy" / "data" / "proxy" / "cluster").read_text())
    assert sorted(known["PeerURLs"]) == sorted(m.peer_url for m in cluster.members)

    stop_first_member(cluster)

    wait_for(lambda: v2_round_trip(url, "/message", "Again"), SETTLE, "v2 after a member stops")
    assert etcdctl(url, "get", "/message", api=2).stdout.strip() == "Again"


def test_the_grpc_proxy_answers_v3_and_outlives_a_member_but_serves_no_v2(
    tmp_path: Path, cluster: Cluster, proxies: list[Proxy]
) -> None:
    url = grpc_proxy(proxies, tmp_path, cluster).url
    assert v3_round_trip(url, "/greeting", "hello")
    assert etcdctl(url, "endpoint", "health").returncode == 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        v2_request(url, "/message")
    assert refused.value.code == 404  # so a worker's 2379 is the gateway's, not this

    stop_first_member(cluster)

    wait_for(lambda: v3_round_trip(url, "/greeting", "again"), SETTLE, "v3 through grpc-proxy")
