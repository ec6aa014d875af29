"""A ``lab up`` SIGKILLed with its whole process group during the boot: the ``vagrant up``
it started (in a process group of its own) survives it and holds Vagrant's machine
locks. The next ``lab up`` stops that vagrant and brings the lab up verified; ``lab
destroy`` then leaves nothing, checked through libvirt and the process table.

One node with little memory, in a lab of its own (the session lab stays as it is).
The same recovery without guests: tests/integration/test_vagrant_left_running.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import yaml

from provisioner.config import load_config
from provisioner.progress import JSONL_ENV, LAB, read_events
from tests.vm.conftest import UP_TIMEOUT, Lab, new_lab_dir

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

BOOT_SEEN_TIMEOUT = 1200.0  # the steps before the boot may upload the box first


@pytest.fixture
def small_lab() -> Iterator[Lab]:
    directory = new_lab_dir()
    (directory / "lab.yaml").write_text(yaml.safe_dump({"num_instances": 1, "vm_memory": 512}))
    lab = Lab(directory=directory, name=directory.name)
    try:
        yield lab
    finally:
        lab.run("destroy", check=False, timeout=600)
        shutil.rmtree(directory / ".vagrant", ignore_errors=True)


def start_up(lab: Lab, events: Path) -> subprocess.Popen[bytes]:
    """``lab up`` as a terminal runs it: a process group (and session) of its own."""
    argv = [sys.executable, "-m", "provisioner.cli", "-C", str(lab.directory), "up"]
    with (lab.directory / "killed-up.log").open("wb") as out:
        return subprocess.Popen(
            argv,
            env={**os.environ, JSONL_ENV: str(events)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_boot(up: subprocess.Popen[bytes], events: Path, lab: Lab) -> None:
    deadline = time.monotonic() + BOOT_SEEN_TIMEOUT
    while True:
        try:
            seen = read_events(events)
        except ValueError:  # its last line half written
            seen = []
        if any(e.subject == LAB and e.phase == "boot" and e.status == "running" for e in seen):
            return
        if up.poll() is not None or time.monotonic() > deadline:
            output = (lab.directory / "killed-up.log").read_text(errors="replace")
            raise AssertionError(f"`lab up` never reached the boot (exit {up.poll()}):\n{output}")
        time.sleep(1)


def lab_processes(directory: Path, gateway: str) -> list[str]:
    """vagrant or ruby working in the lab directory; the discovery etcd or a registry
    relay on the lab's gateway."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue
        names = {Path(arg).name for arg in argv[:2]}
        ruby_here = names & {"vagrant", "ruby"} and cwd == str(directory)
        on_gateway = names & {"etcd", "socat"} and any(gateway in arg for arg in argv)
        if ruby_here or on_gateway:
            found.append(f"{entry.name}: {' '.join(argv)}")
    return found


def libvirt_leftovers(lab_name: str) -> list[str]:
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
    return domains + networks + volumes


def test_sigkill_of_lab_up_during_the_boot_then_up_resumes_and_destroy_leaves_nothing(
    small_lab: Lab, tmp_path: Path
) -> None:
    lab = small_lab
    events = tmp_path / "progress.jsonl"
    up = start_up(lab, events)
    try:
        wait_for_boot(up, events, lab)
        time.sleep(5)  # vagrant up under way: the domain being made or booting
    finally:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait(timeout=30)
    config = load_config(lab.directory)
    left = [p for p in lab_processes(lab.directory, config.gateway) if "vagrant" in p]
    assert left, "no vagrant outlived the killed lab up: the test shows nothing"

    again = lab.run("up", timeout=UP_TIMEOUT)
    assert "left running by an interrupted lab" in again.stderr, again.stderr
    assert lab.node_status("core-01")["state"] == "running"
    lab.run("verify", timeout=900)

    destroyed = lab.run("destroy", timeout=600)
    assert "removed 1 domains" in destroyed.stdout, destroyed.stdout
    assert libvirt_leftovers(config.name) == []
    assert lab_processes(lab.directory, config.gateway) == []
    assert not (lab.directory / ".lab" / "state.json").exists()
    assert list((lab.directory / ".lab").glob("vagrant.*.pid")) == []
