"""The SSH banner probe (lab up, box tests, benchmark) against a real sshd and slow peers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provisioner.readiness import ssh_banner
from tests.loopback import free_port
from tests.sshd_support import SSHD, loopback_sshd

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not SSHD.exists(), reason="openssh-server missing")
def test_a_real_sshd_sends_its_banner(tmp_path: Path) -> None:
    with loopback_sshd(tmp_path) as sshd:
        banner = ssh_banner("127.0.0.1", sshd.port)
    assert banner is not None
    assert banner.startswith("SSH-2.0-OpenSSH")


def test_nothing_listening_is_no_banner() -> None:
    assert ssh_banner("127.0.0.1", free_port(), timeout=1.0) is None


@contextmanager
def peer(answer: bytes, delay: float) -> Iterator[int]:
    """A listener that accepts, waits ``delay`` seconds, sends ``answer`` and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    port: int = server.getsockname()[1]

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            time.sleep(delay)
            connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.close()
        thread.join(timeout=10)


def test_a_slow_banner_is_waited_for_as_long_as_the_read_timeout_says() -> None:
    with peer(b"SSH-2.0-slow\r\n", delay=1.0) as port:
        assert ssh_banner("127.0.0.1", port, timeout=0.5, read_timeout=5.0) == "SSH-2.0-slow"
    with peer(b"SSH-2.0-slow\r\n", delay=1.0) as port:
        assert ssh_banner("127.0.0.1", port, timeout=0.3) is None


def test_a_peer_that_hangs_up_or_speaks_something_else_is_no_banner() -> None:
    # QEMU's user-mode forwarding accepts before the guest's sshd runs, then hangs up
    with peer(b"", delay=0.0) as port:
        assert ssh_banner("127.0.0.1", port, timeout=2.0) is None
    with peer(b"HTTP/1.1 400 Bad Request\r\n", delay=0.0) as port:
        assert ssh_banner("127.0.0.1", port, timeout=2.0) is None
