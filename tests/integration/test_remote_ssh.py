"""SSHRunner against a real OpenSSH sshd on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.errors import RemoteError, WaitTimeout
from provisioner.remote import (
    LocalRunner,
    Runner,
    SSHRunner,
    parse_host_key_fingerprints,
    raise_for_failures,
    run_all,
)
from provisioner.remote.hostkeys import BEGIN_MARKER, END_MARKER
from tests.loopback import free_port
from tests.sshd_support import keygen, loopback_sshd, session_pids

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Sshd:
    port: int
    pid: int
    client_key: Path
    pins: dict[str, str]
    other_pins: dict[str, str]
    workdir: Path

    def runner(self, pins: dict[str, str] | None = None, **kwargs: float) -> SSHRunner:
        return SSHRunner(
            "loopback",
            "127.0.0.1",
            port=self.port,
            user="root",
            private_key=self.client_key,
            pinned_host_keys=self.pins if pins is None else pins,
            **kwargs,
        )

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes: the listener's children."""
        return session_pids(self.pid)


def fingerprint_block(*public_keys: Path) -> str:
    """What the box prints on its console: ssh-keygen -l of each host key."""
    lines = [BEGIN_MARKER]
    for key in public_keys:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(key)],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        lines.append(out.stdout.strip())
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    work = tmp_path_factory.mktemp("sshd")
    keygen(work / "other_ed25519")
    with loopback_sshd(work, ("ed25519", "rsa")) as running:
        pins = parse_host_key_fingerprints(
            fingerprint_block(work / "host_ed25519.pub", work / "host_rsa.pub")
        )
        other = parse_host_key_fingerprints(fingerprint_block(work / "other_ed25519.pub"))
        yield Sshd(running.port, running.pid, running.client_key, pins, other, work)


@pytest.fixture
def runner(sshd: Sshd) -> Iterator[SSHRunner]:
    r = sshd.runner()
    try:
        yield r
    finally:
        r.close()


def test_pins_cover_both_host_key_types(sshd: Sshd) -> None:
    assert set(sshd.pins) == {"ED25519", "RSA"}


def test_runs_a_command_and_returns_stdout(runner: SSHRunner) -> None:
    result = runner.run(["echo", "hello"])
    assert (result.rc, result.stdout, result.stderr) == (0, "hello\n", "")


def test_exit_code_and_stderr_are_kept(runner: SSHRunner) -> None:
    result = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.rc == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.failed


def test_arguments_reach_the_remote_side_unchanged(runner: SSHRunner) -> None:
    words = ["a b", "it's", "$HOME", "`id`", "semi;colon", "*"]
    result = runner.run(["printf", "%s\\n", *words])
    assert result.stdout.splitlines() == words


def test_stdin_is_fed_to_the_command(runner: SSHRunner) -> None:
    assert runner.run(["cat"], stdin="line one\nline two\n").stdout == "line one\nline two\n"


def test_large_output_on_both_streams(runner: SSHRunner) -> None:
    script = "head -c 300000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2"
    result = runner.run(["sh", "-c", script])
    assert len(result.stdout) == 300000
    assert len(result.stderr) == 200000


def test_output_that_outlives_the_exit_status_is_kept(runner: SSHRunner) -> None:
    # sshd reports the exit status when the shell exits; the output ends later.
    result = runner.run(["sh", "-c", "(sleep 1; echo late; echo late-err >&2) & echo early"])
    assert (result.rc, result.stdout, result.stderr) == (0, "early\nlate\n", "late-err\n")


def test_command_timeout(runner: SSHRunner) -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"did not finish within 0\.5s"):
        runner.run(["sleep", "20"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert runner.run(["true"]).rc == 0


def test_upload_with_mode(runner: SSHRunner, tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_bytes(os.urandom(100_000))
    target = tmp_path / "uploaded"
    runner.upload(source, str(target), mode=0o640)
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o640


def test_upload_to_missing_directory_is_a_remote_error(runner: SSHRunner, tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_text("x")
    with pytest.raises(RemoteError, match="cannot upload"):
        runner.upload(source, str(tmp_path / "no" / "such" / "dir" / "file"))


def test_wrong_pinned_fingerprint_is_refused(sshd: Sshd) -> None:
    r = sshd.runner(pins=sshd.other_pins)
    try:
        with pytest.raises(RemoteError, match="does not match the pinned"):
            r.run(["true"])
    finally:
        r.close()


def test_only_pinned_key_types_are_negotiated(sshd: Sshd) -> None:
    r = sshd.runner(pins={"RSA": sshd.pins["RSA"]})
    try:
        assert r.run(["true"]).rc == 0
        public = (sshd.workdir / "host_rsa.pub").read_text().split()
        assert r.known_hosts_entry() == f"[127.0.0.1]:{sshd.port} ssh-rsa {public[1]}"
    finally:
        r.close()


def test_known_hosts_entry_matches_the_host_key(runner: SSHRunner, sshd: Sshd) -> None:
    entry = runner.known_hosts_entry()
    public = (sshd.workdir / "host_ed25519.pub").read_text().split()
    assert entry == f"[127.0.0.1]:{sshd.port} {public[0]} {public[1]}"


def test_refused_key_is_a_remote_error(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger", "ed25519")
    r = SSHRunner(
        "loopback",
        "127.0.0.1",
        port=sshd.port,
        user="root",
        private_key=tmp_path / "stranger",
        pinned_host_keys=sshd.pins,
    )
    with pytest.raises(RemoteError, match="refused the key"):
        r.run(["true"])


def test_connect_timeout_when_no_banner_comes(sshd: Sshd) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        r = SSHRunner(
            "silent",
            "127.0.0.1",
            port=port,
            private_key=sshd.client_key,
            pinned_host_keys=sshd.pins,
            connect_timeout=1.0,
        )
        started = time.monotonic()
        with pytest.raises(RemoteError, match="silent"):
            r.run(["true"])
        assert time.monotonic() - started < 10


def test_connection_refused_is_a_remote_error(sshd: Sshd) -> None:
    r = SSHRunner(
        "closed",
        "127.0.0.1",
        port=free_port(),
        private_key=sshd.client_key,
        pinned_host_keys=sshd.pins,
    )
    with pytest.raises(RemoteError, match="cannot connect"):
        r.run(["true"])


def test_reconnects_after_the_server_drops_the_connection(runner: SSHRunner, sshd: Sshd) -> None:
    first_session = int(runner.run(["sh", "-c", "echo $PPID"]).stdout)
    for pid in sshd.session_pids():
        os.kill(pid, signal.SIGKILL)
    second_session = int(runner.run(["sh", "-c", "echo $PPID"]).stdout)
    assert second_session != first_session


def test_reconnects_after_the_client_closed(runner: SSHRunner) -> None:
    assert runner.run(["true"]).rc == 0
    runner.close()
    assert runner.run(["echo", "again"]).stdout == "again\n"


def test_a_started_command_is_not_rerun_when_the_connection_breaks(
    runner: SSHRunner, sshd: Sshd, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    outcome: list[BaseException] = []

    def slow() -> None:
        try:
            runner.run(["sh", "-c", f"echo run >> {marker}; sleep 30"], timeout=20)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=slow)
    worker.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in sshd.session_pids():
        os.kill(pid, signal.SIGKILL)
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RemoteError)
    assert "was not retried" in (outcome[0].hint or "")
    assert marker.read_text() == "run\n"


def test_run_all_collects_every_host(sshd: Sshd) -> None:
    runners: list[Runner] = [sshd.runner(), LocalRunner(name="host")]
    bad = SSHRunner(
        "wrong-key",
        "127.0.0.1",
        port=sshd.port,
        user="root",
        private_key=sshd.client_key,
        pinned_host_keys=sshd.other_pins,
    )
    try:
        runners.append(bad)
        outcomes = run_all(runners, ["sh", "-c", "echo $0", "ok"])
        assert set(outcomes) == {"loopback", "host", "wrong-key"}
        assert outcomes["loopback"] == outcomes["host"]
        assert isinstance(outcomes["wrong-key"], RemoteError)
        with pytest.raises(RemoteError) as failure:
            raise_for_failures(["sh"], outcomes)
        assert "1 of 3 hosts failed" in str(failure.value)
        assert "wrong-key" in str(failure.value)
    finally:
        for r in runners:
            r.close()
