"""``lab ssh`` against a real OpenSSH sshd on loopback: the command line, the agent.

The loopback host plays node ``core-01`` (logging in as root) through the ssh_config
lab writes (provisioner.remote.sshconfig) and the argument list ``lab ssh`` executes
(provisioner.remote.login.login_argv). ``lab exec``'s rule, each argument one
argument, is tested on the same kind of sshd in test_remote_ssh.py
(test_arguments_reach_the_remote_side_unchanged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.remote.login import login_argv, with_agent
from provisioner.remote.sshconfig import HostSpec, write_ssh_config
from tests.sshd_support import loopback_sshd

pytestmark = pytest.mark.integration

NODE = "core-01"
TIMEOUT = 60.0


@dataclass(frozen=True)
class Node:
    ssh_config: Path
    key: Path  # the lab's key
    public_key: str  # "ssh-ed25519 AAAA..."


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    work = tmp_path_factory.mktemp("sshd")
    with loopback_sshd(work) as sshd:
        host_key = " ".join((work / "host_ed25519.pub").read_text().split()[:2])
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {host_key}\n")
        host = HostSpec(NODE, "127.0.0.1", sshd.port, "root")
        config = write_ssh_config(work / "ssh_config", [host], sshd.client_key, known_hosts)
        public = " ".join((work / "client.pub").read_text().split()[:2])
        yield Node(config, sshd.client_key, public)


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL
    )


def agent_pids(key: Path) -> list[int]:
    """ssh-agents started for ``key`` (command mode keeps the key path in their argv)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if words[0].endswith(b"ssh-agent") and str(key).encode() in words:
            found.append(int(cmdline.parent.name))
    return found


def alive(pid: int) -> bool:
    """The process runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(key: Path, within: float) -> list[int]:
    deadline = time.monotonic() + within
    while agent_pids(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    return agent_pids(key)


def test_the_remote_shell_runs_the_command_line(node: Node) -> None:
    """As `ssh host 'a | b'`: one quoted pipeline, or its words, run as a pipeline."""
    quoted = run(login_argv(node.ssh_config, NODE, ["echo a; echo b | tr b c"], node.key))
    assert (quoted.returncode, quoted.stdout) == (0, "a\nc\n"), quoted.stderr
    words = run(
        login_argv(node.ssh_config, NODE, ["--", "echo", "x", "|", "tr", "x", "y"], node.key)
    )
    assert (words.returncode, words.stdout) == (0, "y\n"), words.stderr
    failed = run(login_argv(node.ssh_config, NODE, ["exit 7"], node.key))
    assert failed.returncode == 7


def test_the_session_forwards_an_agent_with_the_lab_key(node: Node) -> None:
    """On the node, the forwarded agent lists the lab's key; the key file stays on the host."""
    script = 'test -S "$SSH_AUTH_SOCK" && ssh-add -L'
    result = run(login_argv(node.ssh_config, NODE, [script], node.key))
    assert result.returncode == 0, result.stderr
    listed = [" ".join(line.split()[:2]) for line in result.stdout.splitlines()]
    assert listed == [node.public_key]
    assert wait_gone(node.key, 5) == []


def test_the_agent_holds_the_key_while_the_command_runs_and_ends_with_it(
    node: Node, tmp_path: Path
) -> None:
    """The agent is local and private to one invocation; its socket goes with it."""
    report = tmp_path / "agent"
    go = tmp_path / "go"  # the command runs until the test has looked at the agent
    script = (
        f'echo "$SSH_AUTH_SOCK $SSH_AGENT_PID" > {report}.tmp; mv {report}.tmp {report}; '
        f"ssh-add -l > {report}.keys; "
        f"while [ ! -e {go} ]; do sleep 0.05; done"
    )
    proc = subprocess.Popen(with_agent(node.key, ["sh", "-c", script]))
    try:
        deadline = time.monotonic() + TIMEOUT
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        socket_path, pid = report.read_text().split()
        os.kill(int(pid), 0)  # the agent runs while the command does
        assert Path(socket_path).is_socket()
        go.touch()
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        proc.kill()
    assert (tmp_path / "agent.keys").read_text().count("\n") == 1
    deadline = time.monotonic() + 5
    while alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(int(pid)), "the agent outlived its command"
    assert not Path(socket_path).exists()


def test_a_key_that_cannot_be_added_runs_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    result = run(with_agent(missing, ["touch", str(tmp_path / "ran")]))
    assert result.returncode == 255
    assert not (tmp_path / "ran").exists()
    assert wait_gone(missing, 5) == []


def test_ctrl_c_ends_ssh_and_the_agent(node: Node) -> None:
    """SIGINT to the foreground process group (a Ctrl-C) ends ssh; the agent follows."""
    # A shell started in the background hands SIGINT down ignored; a terminal does not.
    # Caught here, it is back to its default in the child after exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            login_argv(node.ssh_config, NODE, ["echo started; sleep 60"], node.key),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) != 0
    finally:
        proc.kill()
    assert wait_gone(node.key, 3) == []
