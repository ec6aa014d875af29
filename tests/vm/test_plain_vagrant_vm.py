"""A rendered lab under plain Vagrant, as a coreos-vagrant user runs it: `lab render
--nodes 1`, then `vagrant up`, `vagrant ssh`, an edited user-data re-applied by
`vagrant provision`, `vagrant destroy -f`, and `lab destroy` leaving nothing behind.

Its own one-node lab (not the session's): every step is plain `vagrant` in the
directory, with the environment a user has (no LAB_DRIVING_VAGRANT); the Vagrantfile
calls lab itself through LAB_COMMAND, this checkout's `python -m provisioner.cli`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import libvirt
import pytest
import yaml

from provisioner.config import load_config
from provisioner.hypervisor.vagrant import vagrant_env
from tests.vm.conftest import Lab, new_lab_dir

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

UP_TIMEOUT = 1800.0
PROVISIONED = "/etc/lab-plain-vagrant"


def vagrant(lab: Lab, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Plain `vagrant ARGS` in the lab directory; its output appended to .lab/logs."""
    env = {k: v for k, v in vagrant_env().items() if k != "LAB_DRIVING_VAGRANT"}
    env["LAB_COMMAND"] = f"{sys.executable} -m provisioner.cli"
    result = subprocess.run(
        ["vagrant", *args],
        cwd=lab.directory,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lab.logs.mkdir(parents=True, exist_ok=True)
    with (lab.logs / "plain-vagrant.log").open("a") as log:
        log.write(f"=== vagrant {' '.join(args)} (exit {result.returncode})\n")
        log.write(result.stdout + result.stderr)
    return result


def check(result: subprocess.CompletedProcess[str], lab: Lab) -> str:
    if result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(map(str, result.args))}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}\n"
            f"logs: {lab.logs}"
        )
    return result.stdout + result.stderr


@pytest.fixture
def plain_lab() -> Iterator[Lab]:
    directory = new_lab_dir()
    lab = Lab(directory=directory, name=directory.name)
    try:
        yield lab
    finally:
        if (directory / ".vagrant").exists():
            vagrant(lab, "destroy", "-f", timeout=600)
        lab.run("destroy", check=False, timeout=600)
        shutil.rmtree(directory / ".vagrant", ignore_errors=True)


def lab_leftovers(lab_name: str) -> tuple[list[str], list[str], list[str]]:
    prefix = f"lab-{lab_name}_"
    conn = libvirt.open("qemu:///system")
    try:
        domains = [d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix)]
        networks = [n.name() for n in conn.listAllNetworks(0) if n.name() == f"lab-{lab_name}"]
        pool = conn.storagePoolLookupByName("default")
        pool.refresh(0)
        volumes = [v for v in pool.listVolumes() if v.startswith(prefix)]
    finally:
        conn.close()
    return domains, networks, volumes


def test_plain_vagrant_up_ssh_provision_destroy(plain_lab: Lab) -> None:
    lab = plain_lab
    lab.run("render", "--nodes", "1")
    lab_name = load_config(lab.directory).name

    check(vagrant(lab, "up", timeout=UP_TIMEOUT), lab)
    # `vagrant status` and `lab status` see the same running node
    assert "core-01                   running" in check(vagrant(lab, "status"), lab)
    node = lab.node_status("core-01")
    assert node["state"] == "running"
    assert node["machine_id"]

    # `vagrant ssh` with the lab's key and its pinned host key (known_hosts, strict)
    def healthy() -> str | None:
        result = vagrant(lab, "ssh", "core-01", "-c", "etcdctl endpoint health", timeout=120)
        text = result.stdout + result.stderr
        return text if result.returncode == 0 and "is healthy" in text else None

    lab.wait_for("etcd healthy through `vagrant ssh`", healthy, timeout=300, interval=5)
    assert (
        (lab.directory / ".lab" / "known_hosts")
        .read_text()
        .startswith(lab.status()["nodes"][0]["ip"])
    )

    # an edited user-data, re-applied to the running node by `vagrant provision`
    user_data = lab.directory / "nodes" / "core-01" / "user-data"
    data = yaml.safe_load(user_data.read_text())
    data["write_files"].append(
        {"path": PROVISIONED, "permissions": "0644", "content": "provisioned\n"}
    )
    user_data.write_text("#cloud-config\n" + yaml.safe_dump(data, sort_keys=False))
    assert "user-data applied" in check(vagrant(lab, "provision", "core-01"), lab)
    shown = check(vagrant(lab, "ssh", "core-01", "-c", f"cat {PROVISIONED}", timeout=120), lab)
    assert "provisioned" in shown

    # `vagrant destroy -f`, then `lab destroy` leaves nothing of the lab
    check(vagrant(lab, "destroy", "-f"), lab)
    time.sleep(1)
    result = lab.run("destroy", timeout=600)
    assert "removed" in result.stdout
    domains, networks, volumes = lab_leftovers(lab_name)
    assert (domains, networks, volumes) == ([], [], [])
    assert not (lab.directory / ".lab" / "state.json").exists()
    assert not (lab.directory / ".vagrant").exists()
    again = lab.run("destroy")
    assert "removed 0 domains, 0 volumes, 0 networks" in again.stdout
    assert json.loads(lab.run("snapshot", "list", "--json").stdout) == []
