"""fleetctl's SSH to another machine, against a real OpenSSH sshd on loopback.

Follows coreos/fleet ssh/known_hosts.go (HostKeyChecker.Check, askToTrustHost,
HostKeyFile) and fleetctl/fleetctl.go (getChecker): with --strict-host-key-checking
a key listed in --known-hosts-file is accepted, a changed key is refused with the
"REMOTE HOST IDENTIFICATION HAS CHANGED" warning, an unknown key is asked about and,
once accepted, appended in plain ``host key`` form; without a terminal nobody can
answer and it is refused. Without strict checking no key is checked or recorded.
fleetctl authenticates with the agent's keys only (ssh/ssh.go sshClientConfig): the
commands run under the same per-invocation agent as ``lab ssh``, which is what a
forwarded agent gives fleetctl on a node. The remote command line is fleetctl ssh's
(fleetctl/ssh.go runSSH: arguments joined with spaces).
"""

from __future__ import annotations

import base64
import os
import pty
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.guest.fleet.remote import (
    SshOptions,
    ensure_known_hosts_dir,
    ssh_argv,
    ssh_command_line,
)
from provisioner.nodes import replace_file_argv
from provisioner.remote.hostkeys import sha256_fingerprint
from provisioner.remote.login import with_agent
from provisioner.remote.ssh import SSHRunner
from provisioner.remote.sshconfig import HostSpec, render_system_known_hosts
from tests.sshd_support import keygen, loopback_sshd

pytestmark = pytest.mark.integration

TIMEOUT = 60.0


@dataclass(frozen=True)
class Machine:
    port: int
    client_key: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    other_key: str  # a key the machine does not have

    @property
    def known_hosts_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    work = tmp_path_factory.mktemp("sshd")
    keygen(work / "other_ed25519")
    with loopback_sshd(work) as sshd:

        def public(name: str) -> str:
            return " ".join((work / f"{name}.pub").read_text().split()[:2])

        yield Machine(sshd.port, sshd.client_key, public("host_ed25519"), public("other_ed25519"))


def options(machine: Machine, known_hosts: Path, *, strict: bool = True) -> SshOptions:
    return SshOptions(
        username="root",
        port=machine.port,
        strict_host_key_checking=strict,
        known_hosts_file=str(known_hosts),
    )


def fleetctl_ssh(machine: Machine, opts: SshOptions, *words: str) -> list[str]:
    """What `fleetctl ssh MACHINE WORDS...` runs, under an agent holding the key."""
    ensure_known_hosts_dir(opts)
    argv = ssh_argv("127.0.0.1", ssh_command_line(list(words)), opts, tty=False)
    return with_agent(machine.client_key, argv)


def run_detached(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """No terminal at all: a new session, stdin from /dev/null."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_a_known_key_is_accepted_and_the_quoted_line_runs(machine: Machine, tmp_path: Path) -> None:
    known = tmp_path / "fleetctl" / "known_hosts"
    known.parent.mkdir()
    known.write_text(f"{machine.known_hosts_name} {machine.host_key}\n")
    result = run_detached(fleetctl_ssh(machine, options(machine, known), "echo a; echo b"))
    assert (result.returncode, result.stdout) == (0, "a\nb\n"), result.stderr
    words = run_detached(
        fleetctl_ssh(machine, options(machine, known), "echo", "x", "|", "wc", "-c")
    )
    assert (words.returncode, words.stdout.strip()) == (0, "2"), words.stderr
    assert known.read_text() == f"{machine.known_hosts_name} {machine.host_key}\n"


def test_an_unknown_key_without_a_terminal_is_refused(machine: Machine, tmp_path: Path) -> None:
    known = tmp_path / "fleetctl" / "known_hosts"
    result = run_detached(
        fleetctl_ssh(machine, options(machine, known), "touch", str(tmp_path / "ran"))
    )
    assert result.returncode == 255
    assert "Host key verification failed." in result.stderr
    assert not (tmp_path / "ran").exists()
    assert not known.exists() or known.read_text() == ""


def test_a_changed_key_is_refused_with_fleets_warning(machine: Machine, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"{machine.known_hosts_name} {machine.other_key}\n")
    result = run_detached(
        fleetctl_ssh(machine, options(machine, known), "touch", str(tmp_path / "ran"))
    )
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    assert "Host key verification failed." in result.stderr
    assert not (tmp_path / "ran").exists()
    assert known.read_text() == f"{machine.known_hosts_name} {machine.other_key}\n"


def test_an_unknown_key_accepted_at_the_prompt_is_recorded_plainly(
    machine: Machine, tmp_path: Path
) -> None:
    """askToTrustHost on a terminal: 'yes' accepts; HostKeyFile.PutHostKey appends
    ``addr key`` unhashed (fleet cannot read hashed names)."""
    known = tmp_path / "fleetctl" / "known_hosts"
    argv = fleetctl_ssh(machine, options(machine, known), "echo", "connected")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    seen = b""
    answered = False
    try:
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"continue connecting" in seen:
                os.write(terminal, b"yes\n")
                answered = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    text = seen.decode(errors="replace")
    assert answered, text
    assert "The authenticity of host" in text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "connected" in text
    assert known.read_text() == f"{machine.known_hosts_name} {machine.host_key}\n"


def test_without_strict_checking_any_key_is_accepted_and_none_recorded(
    machine: Machine, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"{machine.known_hosts_name} {machine.other_key}\n")
    opts = options(machine, known, strict=False)
    result = run_detached(fleetctl_ssh(machine, opts, "echo", "ok"))
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" not in result.stderr
    assert known.read_text() == f"{machine.known_hosts_name} {machine.other_key}\n"


def effective_config(argv: list[str]) -> dict[str, str]:
    """OpenSSH's resolved settings for an ssh argument list (``ssh -G``)."""
    host = argv.index("127.0.0.1")
    out = subprocess.run(
        ["ssh", "-G", *argv[1:host], "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_the_system_known_hosts_counts_as_openssh_has_it(machine: Machine, tmp_path: Path) -> None:
    """The lab writes every node's key to /etc/ssh/ssh_known_hosts; fleetctl's ssh
    reads it as OpenSSH does, beside --known-hosts-file. Not strict: nothing is read."""
    known = tmp_path / "known_hosts"
    strict = effective_config(ssh_argv("127.0.0.1", "", options(machine, known), tty=False))
    assert "/etc/ssh/ssh_known_hosts" in strict["globalknownhostsfile"].split()
    assert strict["userknownhostsfile"] == str(known)
    assert (strict["stricthostkeychecking"], strict["hashknownhosts"]) == ("ask", "no")
    assert strict["preferredauthentications"] == "publickey"
    loose = effective_config(
        ssh_argv("127.0.0.1", "", options(machine, known, strict=False), tty=False)
    )
    assert loose["globalknownhostsfile"] == "/dev/null"
    assert loose["userknownhostsfile"] == "/dev/null"
    assert loose["stricthostkeychecking"] in ("no", "false")


def test_a_key_in_the_nodes_system_known_hosts_is_accepted(
    machine: Machine, tmp_path: Path
) -> None:
    """What lab writes to every node's /etc/ssh/ssh_known_hosts (through the node's
    pinned SSH connection, provisioner.nodes.share_host_keys) lets fleetctl's ssh in
    with an empty --known-hosts-file, which stays empty. The file is written here to
    a scratch path, and ssh pointed at it as the node's ssh reads /etc/ssh's."""
    lab_known_hosts = f"{machine.known_hosts_name} {machine.host_key}\n"
    text = render_system_known_hosts(
        [HostSpec("core-02", "127.0.0.1", machine.port)], lab_known_hosts
    )
    system = tmp_path / "ssh_known_hosts"
    pins = {"ED25519": sha256_fingerprint(base64.b64decode(machine.host_key.split()[1]))}
    runner = SSHRunner(
        "core-02",
        "127.0.0.1",
        port=machine.port,
        user="root",
        private_key=machine.client_key,
        pinned_host_keys=pins,
    )
    try:
        written = runner.run(replace_file_argv(str(system)), stdin=text)
    finally:
        runner.close()
    assert written.rc == 0, written.stderr
    assert system.read_text() == text
    assert stat.S_IMODE(system.stat().st_mode) == 0o644
    known = tmp_path / "fleetctl" / "known_hosts"
    argv = fleetctl_ssh(machine, options(machine, known), "echo", "ok")
    at = argv.index("ssh") + 1
    argv[at:at] = ["-o", f"GlobalKnownHostsFile={system}"]
    result = run_detached(argv)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert not known.exists() or known.read_text() == ""
