"""A real etcd 3.4 behind a loopback proxy that stalls the first requests.

Slow guests make etcd miss fleet's 1 s request timeout now and then. Requests
that may safely run twice go round the endpoints once more; the others (a
create-only registration) must not, or a stall could turn into a false
"already registered".
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from provisioner.guest.fleet.errors import EtcdError
from provisioner.guest.fleet.etcd import EtcdClient
from provisioner.guest.fleet.model import MachineState
from provisioner.guest.fleet.registry import Registry
from tests.etcd_support import ETCD, EtcdMember

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ETCD.exists(), reason="needs etcd 3.4"),
    pytest.mark.timeout(120),
]

TIMEOUT = 0.5
STALL = 1.5


class StallingProxy:
    """Forwards TCP to etcd, except that the next ``stalls`` connections hang unanswered."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalls = 0
        self.stalled = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                stall = self.stalls > 0
                if stall:
                    self.stalls -= 1
                    self.stalled += 1
                else:
                    self.forwarded += 1
            target = self._hang if stall else self._forward
            threading.Thread(target=target, args=(conn,), daemon=True).start()

    def _hang(self, conn: socket.socket) -> None:
        with conn:
            self._closed.wait(STALL)

    def _forward(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        back.start()
        pump(conn, upstream)
        back.join(timeout=10)
        conn.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def proxy(etcd: EtcdMember) -> Iterator[StallingProxy]:
    port = int(etcd.client_url.rsplit(":", 1)[1])
    stalling = StallingProxy(port)
    try:
        yield stalling
    finally:
        stalling.close()


def test_idempotent_requests_survive_one_stall(proxy: StallingProxy) -> None:
    client = EtcdClient([proxy.url], timeout=TIMEOUT)
    registry = Registry(client)
    client.put("/fleet-test/k", "v")

    proxy.stalls = 1
    started = time.monotonic()
    found = client.get("/fleet-test/k")
    assert found is not None
    assert found.value == "v"
    assert proxy.stalled == 1
    assert TIMEOUT <= time.monotonic() - started < STALL

    proxy.stalls = 1
    assert registry.snapshot().machines == {}
    assert not registry.set_target_state("nothere.service", "launched")
    assert proxy.stalled == 2


def test_two_stalls_fail_and_create_only_requests_never_repeat(proxy: StallingProxy) -> None:
    client = EtcdClient([proxy.url], timeout=TIMEOUT)
    registry = Registry(client)

    proxy.stalls = 2
    with pytest.raises(EtcdError, match="failed on every endpoint"):
        client.get("/fleet-test/k")
    assert proxy.stalled == 2

    lease, _ = client.lease_grant(30)
    machine = MachineState("e" * 32, "10.0.0.5", (), "1.0.0")
    forwarded = proxy.forwarded
    proxy.stalls = 1
    with pytest.raises(EtcdError, match="failed on every endpoint"):
        registry.register_machine(machine, lease)
    assert proxy.forwarded == forwarded  # tried once, not again
    assert registry.register_machine(machine, lease)
