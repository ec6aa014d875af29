"""``lab verify``'s testinfra backend against a real OpenSSH sshd on loopback.

The backend is testinfra's API over :class:`provisioner.remote.ssh.SSHRunner`: these
tests drive it through ``testinfra.get_host`` with the lab's ssh_config and
known_hosts, as the checks' pytest run does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import testinfra
import testinfra.backend.base
import testinfra.host

import provisioner.checks.plugin  # noqa: F401 - registers the lab-paramiko backend
from provisioner.checks.backend import NAME, LabParamikoBackend
from provisioner.errors import HostKeyError, RemoteError, WaitTimeout
from provisioner.remote.sshconfig import HostSpec, write_ssh_config
from tests.sshd_support import LoopbackSshd, keygen, loopback_sshd

pytestmark = pytest.mark.integration

NODE = "core-01"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    work = tmp_path_factory.mktemp("sshd")
    keygen(work / "other_ed25519")
    keygen(work / "other_rsa", "rsa")
    with loopback_sshd(work) as running:
        yield running


@dataclass(frozen=True)
class Lab:
    """A lab's ssh_config and known_hosts for the loopback node."""

    sshd: LoopbackSshd
    ssh_config: Path
    known_hosts: Path
    opened: list[LabParamikoBackend] = field(default_factory=list)

    def pin(self, key_file: str, port: int | None = None) -> None:
        """Write known_hosts pinning the public key ``key_file`` (in sshd's workdir)."""
        key = " ".join((self.sshd.workdir / key_file).read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{port or self.sshd.port} {key}\n")

    def host(self, read_timeout_sec: float = 30) -> testinfra.host.Host:
        url = (
            f"{NAME}://{NODE}?ssh_config={quote(str(self.ssh_config), safe='/')}"
            f"&read_timeout_sec={read_timeout_sec:g}"
        )
        host = testinfra.get_host(url)
        self.opened.append(backend_of(host))
        return host

    def logins(self) -> int:
        return self.sshd.log.read_text().count("Accepted publickey")

    def connections(self) -> int:
        """Connections sshd logged as ending before a login."""
        return self.sshd.log.read_text().count("[preauth]")


@pytest.fixture
def lab(tmp_path: Path, sshd: LoopbackSshd) -> Iterator[Lab]:
    known_hosts = tmp_path / "known_hosts"
    node = HostSpec(NODE, "127.0.0.1", sshd.port, "root")
    made = Lab(
        sshd,
        write_ssh_config(tmp_path / "ssh_config", [node], sshd.client_key, known_hosts),
        known_hosts,
    )
    made.pin("host_ed25519.pub")
    try:
        yield made
    finally:
        for backend in made.opened:
            backend.close()


def backend_of(host: testinfra.host.Host) -> LabParamikoBackend:
    backend = host.backend
    assert isinstance(backend, LabParamikoBackend)
    return backend


def test_runs_a_command_and_returns_testinfras_result(lab: Lab) -> None:
    host = lab.host()
    result = host.run("echo out; echo err >&2; exit 3")
    assert isinstance(result, testinfra.backend.base.CommandResult)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.command == b"echo out; echo err >&2; exit 3"
    assert host.check_output("whoami") == "root"


def test_arguments_are_quoted_and_reach_the_node_unchanged(lab: Lab) -> None:
    host = lab.host()
    words = ["a b", "it's", "$HOME", "`id`", "semi;colon", "*", '"quoted"', "naïve"]
    placeholders = " ".join(["%s"] * len(words))
    result = host.run(f"printf %s {placeholders}", "%s\\n", *words)
    assert result.rc == 0, result.stderr
    assert result.stdout.splitlines() == words


def test_testinfra_modules_run_over_it(lab: Lab, tmp_path: Path) -> None:
    target = tmp_path / "it's here"
    target.write_text("pinned\n")
    host = lab.host()
    assert host.file(str(target)).contains("pinned")
    assert not host.file(str(tmp_path / "absent")).exists


def test_an_unknown_host_key_is_refused_before_logging_in(lab: Lab) -> None:
    lab.pin("host_ed25519.pub", port=lab.sshd.port + 1)  # pins another host only
    before = lab.logins()
    host = lab.host()
    with pytest.raises(HostKeyError, match="refusing to connect") as refused:
        host.run("true")
    assert str(refused.value).startswith(f"{NODE}: ")
    assert f"has no host key for [127.0.0.1]:{lab.sshd.port}" in str(refused.value)
    assert "`lab up`" in (refused.value.hint or "")
    assert lab.logins() == before


def test_a_changed_host_key_is_refused_loudly_and_stays_refused(lab: Lab) -> None:
    lab.pin("other_ed25519.pub")
    before, connections_before = lab.logins(), lab.connections()
    host = lab.host()
    with pytest.raises(HostKeyError, match="does not match the pinned") as refused:
        host.run("true")
    assert str(refused.value).startswith(f"{NODE} ")
    assert "refusing to connect" in str(refused.value)
    assert "`lab destroy` and `lab up`" in (refused.value.hint or "")
    deadline = time.monotonic() + 10
    while lab.connections() == connections_before and time.monotonic() < deadline:
        time.sleep(0.05)  # sshd logs the refused connection once it notices it closed
    assert lab.connections() == connections_before + 1
    with pytest.raises(HostKeyError, match="does not match the pinned"):
        host.run("true")
    time.sleep(0.5)  # sshd would have logged a second connection by now
    assert lab.connections() == connections_before + 1  # it never knocked again
    assert lab.logins() == before


def test_a_node_offering_no_pinned_key_type_is_refused(lab: Lab) -> None:
    lab.pin("other_rsa.pub")  # the node has an ED25519 key only
    host = lab.host()
    with pytest.raises(HostKeyError, match=r"offers no host key of a pinned type \(RSA\)"):
        host.run("true")


def test_reconnects_after_the_server_drops_the_connection(lab: Lab) -> None:
    host = lab.host()
    first = int(host.check_output("echo $PPID"))
    lab.sshd.drop_connections()
    second = int(host.check_output("echo $PPID"))
    assert second != first


def test_a_command_past_its_deadline_is_stopped(lab: Lab) -> None:
    host = lab.host(read_timeout_sec=3)
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"`sleep 20` did not finish within 3s"):
        host.run("sleep 20")
    assert time.monotonic() - started < 10
    assert host.run("true").rc == 0


def test_a_url_without_ssh_config_is_refused() -> None:
    with pytest.raises(RemoteError, match=r"needs \?ssh_config=PATH"):
        LabParamikoBackend(NODE)
