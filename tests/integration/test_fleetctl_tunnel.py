"""Host-side ``fleetctl --tunnel NODE`` through a real OpenSSH sshd to a real fleetd.

fleetd (with etcd 3.4) serves the API on a socket-activated unix socket, as
fleet.socket does; sshd on loopback stands for the node. The host's fleetctl
(this project's, on the host's python) reaches it the way fleet's does
(fleetctl/fleetctl.go getHTTPClient with ``--tunnel``: ssh to the bastion running
``fleetctl fd-forward <socket>``), with the node's address, key and pinned host
key taken from the ssh_config ``lab ssh-config`` writes (``FLEETCTL_SSH_CONFIG``),
and one ssh for the whole command, however many API requests it makes. Follows
fleet's functional/fleetctl_test.go TestFleetctlWithEnv (endpoint from the
environment) and functional/client_test.go's list-units/start over the API.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.remote.sshconfig import HostSpec, render_ssh_config
from tests.etcd_support import ETCD
from tests.fleet_support import GUEST_PYTHON, ROOT, FleetCluster, Machine, write_unit
from tests.sshd_support import LoopbackSshd, loopback_sshd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (ETCD.exists() and GUEST_PYTHON.exists()), reason="needs etcd 3.4 and python3"
    ),
    pytest.mark.timeout(180),
]

UNIT = "[Unit]\nDescription=tunnel test\n\n[Service]\nExecStart=/bin/sleep 1000\n"


@dataclass(frozen=True)
class Node:
    """The sshd standing for a node, and what it logs of each ssh session it runs."""

    sshd: LoopbackSshd
    sessions: Path

    def session_count(self) -> int:
        return len(self.sessions.read_text().splitlines()) if self.sessions.exists() else 0


def host_key(sshd: LoopbackSshd, name: str = "host_ed25519") -> str:
    return " ".join((sshd.workdir / f"{name}.pub").read_text().split()[:2])


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    work = tmp_path / "sshd"
    work.mkdir()
    with loopback_sshd(work) as sshd:
        # The node's PATH has the project's fleetctl, as /usr/bin/fleetctl on a lab node;
        # every session is logged, which is how the test counts ssh connections.
        bindir = work / "bin"
        bindir.mkdir()
        wrapper = bindir / "fleetctl"
        wrapper.write_text(
            f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} "
            f'exec {GUEST_PYTHON} -m provisioner.guest.fleet.fleetctl "$@"\n'
        )
        wrapper.chmod(0o755)
        sessions = work / "sessions.log"
        forced = (
            f'echo \\"$SSH_ORIGINAL_COMMAND\\" >> {sessions}; '
            f'PATH={bindir}:$PATH; export PATH; eval \\"$SSH_ORIGINAL_COMMAND\\"'
        )
        public = (work / "client.pub").read_text().strip()
        (work / "authorized_keys").write_text(f'command="{forced}" {public}\n')
        yield Node(sshd, sessions)


def ssh_config(node: Node, directory: Path, pinned: str) -> Path:
    """What ``lab ssh-config`` writes, for one node called core-01 (root on the test sshd)."""
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{node.sshd.port} {pinned}\n")
    config = directory / "ssh_config"
    hosts = [HostSpec("core-01", "127.0.0.1", node.sshd.port, "root")]
    config.write_text(render_ssh_config(hosts, node.sshd.client_key, known_hosts))
    return config


def host_fleetctl(
    machine: Machine, config: Path, *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """The host's fleetctl (the host's python, not the guest's) with --tunnel core-01."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(cwd),
        "FLEETCTL_SSH_CONFIG": str(config),
        "FLEETCTL_ENDPOINT": f"unix://{machine.socket_path}",
    }
    argv = [sys.executable, "-m", "provisioner.guest.fleet.fleetctl", "--tunnel", "core-01"]
    return subprocess.run(
        [*argv, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_list_and_start_through_one_ssh_per_command(
    cluster: FleetCluster, node: Node, tmp_path: Path
) -> None:
    one = cluster.start_machine("one", api_socket=True)
    config = ssh_config(node, tmp_path, host_key(node.sshd))

    listed = host_fleetctl(one, config, "list-machines", "--no-legend", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"{one.machine_id[:8]}...\t{one.public_ip}\t-\n"
    assert node.session_count() == 1
    assert node.sessions.read_text() == f"fleetctl fd-forward {one.socket_path}\n"

    unit = write_unit(tmp_path, "tunnel.service", UNIT)
    started = host_fleetctl(one, config, "start", "--block-attempts=40", str(unit), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"Unit tunnel.service launched on {one.legend}\n"
    # create, set the state, then poll the unit and its state many times: one ssh
    assert node.session_count() == 2

    units = host_fleetctl(one, config, "list-units", "--no-legend", cwd=tmp_path)
    assert units.returncode == 0, units.stderr
    assert units.stdout == f"tunnel.service\t{one.legend}\tactive\trunning\n"
    assert node.session_count() == 3
    assert "tunnel.service" in one.running()


def test_a_host_key_other_than_the_pinned_one_is_refused(
    cluster: FleetCluster, node: Node, tmp_path: Path
) -> None:
    one = cluster.start_machine("one", api_socket=True)
    other = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=60
    )
    wrong = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    config = ssh_config(node, tmp_path, wrong)
    refused = host_fleetctl(one, config, "list-units", cwd=tmp_path)
    assert refused.returncode == 1
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    assert "Host key verification failed." in refused.stderr
    assert node.session_count() == 0
