"""A lab on a hypervisor that is not this process's host: libvirt reached over SSH.

Everything lab does to the guests' disks, config drives, consoles and the box goes
through libvirt, so `lab up` works with a remote URI (lab.yaml's ``libvirt_uri``).
The "remote" host here is this machine behind an sshd of the test's own on
loopback, reached as ``qemu+libssh://root@127.0.0.1:PORT/system``: libvirt's libssh
transport checks the host key against the test's own known_hosts file (OpenSSH's
``qemu+ssh`` would read root's ~/.ssh/known_hosts instead). A 1-node lab comes up,
is verified and destroyed, with every libvirt call over that SSH connection.
Runs after test_lab.py has destroyed the session's lab, so it boots alone.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
import yaml

from provisioner.config import load_config
from tests.sshd_support import loopback_sshd
from tests.vm.conftest import Lab, new_lab_dir

pytestmark = pytest.mark.vm


def test_a_lab_on_a_libvirt_reached_over_ssh(tmp_path: Path) -> None:
    work = tmp_path / "sshd"
    work.mkdir()
    with loopback_sshd(work) as sshd:
        kind, key = (work / "host_ed25519.pub").read_text().split()[:2]
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
        uri = (
            f"qemu+libssh://root@127.0.0.1:{sshd.port}/system"
            f"?keyfile={sshd.client_key}&known_hosts={known_hosts}&sshauth=privkey"
        )
        directory = new_lab_dir()
        settings = {"num_instances": 1, "discovery": "static", "libvirt_uri": uri}
        (directory / "lab.yaml").write_text(yaml.safe_dump(settings))
        lab = Lab(directory=directory, name=directory.name)
        name = load_config(directory).name
        logins_before = sshd.log.read_text().count("Accepted publickey for root")
        try:
            lab.run("up", timeout=1800)
            node = lab.node_status("core-01")
            assert node["state"] == "running"
            assert node["etcd_healthy"] is True
            assert node["flannel_subnet"]
            verified = lab.run("verify", timeout=900)
            assert "checks passed" in verified.stdout
            # lab's libvirt calls (and Vagrant's) went through the test's sshd
            logins = sshd.log.read_text().count("Accepted publickey for root")
            assert logins > logins_before, sshd.log.read_text()[-2000:]
        finally:
            destroyed = lab.run("destroy", check=False, timeout=600)
        assert destroyed.returncode == 0, destroyed.stderr
    conn = libvirt.open("qemu:///system")
    try:
        prefix = f"lab-{name}_"
        assert not [d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix)]
        pool = conn.storagePoolLookupByName("default")
        pool.refresh(0)
        assert not [v for v in pool.listVolumes() if v.startswith(prefix)]
        assert f"lab-{name}" not in [n.name() for n in conn.listAllNetworks(0)]
    finally:
        conn.close()
