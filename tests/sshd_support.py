"""A real OpenSSH sshd on loopback that lets root in with a throw-away client key only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.loopback import free_port, listening, stop_process, wait_until_ready

SSHD = Path("/usr/sbin/sshd")
START_DEADLINE = 30.0


def keygen(path: Path, key_type: str = "ed25519") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "test", "-f", str(path)],
        check=True,
        timeout=60,
    )


def session_pids(listener: int) -> list[int]:
    """Per-connection sshd processes: the children of the listening sshd ``listener``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == listener:
            children.append(int(stat.parent.name))
    return children


@dataclass(frozen=True)
class LoopbackSshd:
    port: int
    pid: int
    workdir: Path  # host keys are workdir/host_<type>(.pub)
    client_key: Path
    log: Path

    def drop_connections(self) -> None:
        """Kill every per-connection sshd: clients see their connection drop."""
        for pid in session_pids(self.pid):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def loopback_sshd(
    work: Path, host_key_types: Sequence[str] = ("ed25519",)
) -> Iterator[LoopbackSshd]:
    """sshd on 127.0.0.1 on a free port with new host keys of ``host_key_types``; stopped after."""
    if not SSHD.exists():
        pytest.fail("openssh-server is not installed: apt-get install openssh-server")
    host_keys = "".join(f"HostKey {work}/host_{key_type}\n" for key_type in host_key_types)
    for key_type in host_key_types:
        keygen(work / f"host_{key_type}", key_type)
    keygen(work / "client")
    shutil.copy(work / "client.pub", work / "authorized_keys")
    port = free_port()
    config = work / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\n{host_keys}PidFile {work}/sshd.pid\n"
        f"AuthorizedKeysFile {work}/authorized_keys\nAllowUsers root\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel INFO\n"
        "Subsystem sftp internal-sftp\n"
    )
    # sshd's privilege separation needs this directory; it is the one the
    # openssh-server package uses, so it is left in place for other users.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = work / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(
            f"sshd on 127.0.0.1:{port}", proc, log, lambda: listening(port), START_DEADLINE
        )
        yield LoopbackSshd(port, proc.pid, work, work / "client", log)
    finally:
        stop_process(proc)
