"""A real ``vagrant up`` left running by a SIGKILLed lab, found and stopped by the next
lab command (provisioner.hypervisor.vagrantpid), without booting anything.

The lab directory is rendered from Vagrantfile.j2; its config.rb adds a trigger before
``up`` that waits while a file exists, so the real vagrant holds its machine lock (as
one booting a node does) for as long as the test wants. The "lab" is a Python process
that runs ``VagrantLab.up`` as ``lab up`` does (vagrant in a process group of its own)
and is SIGKILLed with its whole group. Real guests: tests/vm/test_interrupted_vm.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.background import read_json
from provisioner.config import LabConfig, Overrides, build_config
from provisioner.errors import LabError
from provisioner.hypervisor import vagrantpid
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.hypervisor.vagrant import VagrantLab
from provisioner.lifecycle import destroy
from provisioner.locks import file_lock
from tests.hypervisor_support import sample_context, write_lab_dir
from tests.lifecycle_support import TEST_URI, Fakes, FakeVagrant

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed"),
]

LOCKED = "another process is already executing an action on the machine"

HELD_UP = """\
Vagrant.configure("2") do |config|
  config.trigger.before :up do |trigger|
    trigger.name = "held"
    trigger.ruby do |env, machine|
      sleep 0.2 while File.exist?(File.join(__dir__, "hold"))
      raise "released"
    end
  end
end
"""

LAB_UP = """\
import sys
from pathlib import Path
from provisioner.hypervisor.vagrant import VagrantLab
root = Path(sys.argv[1])
VagrantLab(root, root / ".lab" / "logs" / "vagrant.log", uri=sys.argv[2]).up(
    "core-01", timeout=600, provision=False
)
"""


def held_lab_dir(root: Path) -> Path:
    write_lab_dir(root, sample_context(count=1))
    (root / "config.rb").write_text(HELD_UP)
    (root / "hold").touch()
    return root


def vagrant_log(root: Path) -> str:
    path = root / ".lab" / "logs" / "vagrant.log"
    return path.read_text(errors="replace") if path.exists() else ""


def kill_lab_during_up(root: Path) -> vagrantpid.VagrantRecord:
    """A "lab up" whose vagrant holds the machine lock, SIGKILLed with its process group;
    the record of the vagrant it left running."""
    lab = subprocess.Popen(
        [sys.executable, "-c", LAB_UP, str(root), TEST_URI],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "Running trigger: held" not in vagrant_log(root):
            assert lab.poll() is None, f"lab ended (exit {lab.returncode}): {vagrant_log(root)}"
            assert time.monotonic() < deadline, "vagrant never reached the trigger"
            time.sleep(0.2)
    finally:
        os.killpg(lab.pid, signal.SIGKILL)
        lab.wait(timeout=10)
    (path,) = (root / ".lab").glob(vagrantpid.RECORD_GLOB)
    record = vagrantpid.parse_record(read_json(path))
    assert record is not None
    return record


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    made = held_lab_dir(tmp_path / "lab")
    try:
        yield made
    finally:  # nothing of the test left running, whatever failed
        (made / "hold").unlink(missing_ok=True)
        vagrantpid.stop_left_running(made / ".lab", made, grace=5)


def test_a_vagrant_left_by_a_killed_lab_is_stopped_and_its_lock_released(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = kill_lab_during_up(root)
    assert record.command == "vagrant up core-01"
    assert record.root == str(root.resolve())
    seen = vagrantpid.view(record.pid)
    assert seen is not None, "the vagrant died with lab: the test shows nothing"
    assert vagrantpid.same_vagrant(record, seen)
    # the lab's own lock went with lab (flock): the next command takes it at once
    with file_lock(root / ".lab" / "lock", "the lab", timeout=1):
        pass

    # what the next `lab up` met before: Vagrant's machine lock, held by the orphan
    again = VagrantLab(root, root / "again.log", uri=TEST_URI)
    with pytest.raises(LabError) as failure:
        again.up("core-01", timeout=120, provision=False)
    assert LOCKED in str(failure.value)

    caplog.set_level(logging.WARNING)
    assert vagrantpid.stop_left_running(root / ".lab", root, grace=5) == [record.pgid]
    assert not vagrantpid.group_alive(record.pgid)
    assert list((root / ".lab").glob(vagrantpid.RECORD_GLOB)) == []
    assert (
        f"stopped a vagrant up core-01 left running by an interrupted lab (pid {record.pid})"
        in caplog.text
    )

    # Vagrant's machine lock went with it (flock): a new `vagrant up` gets to the trigger
    (root / "hold").unlink()
    with pytest.raises(LabError) as failure:
        again.up("core-01", timeout=120, provision=False)
    assert LOCKED not in str(failure.value)
    assert "released" in again.log_path.read_text()  # the trigger ran: it had the lock
    assert list((root / ".lab").glob(vagrantpid.RECORD_GLOB)) == []  # ended: forgotten


def test_an_unrecorded_vagrant_of_a_killed_lab_is_found_by_its_directory(root: Path) -> None:
    record = kill_lab_during_up(root)
    (root / ".lab" / vagrantpid.record_name(record.pid)).unlink()  # killed before writing it
    # another lab's directory: not this lab's vagrant
    assert vagrantpid.stop_left_running(root.parent / "other", root.parent / "other") == []
    assert vagrantpid.group_alive(record.pgid)
    assert vagrantpid.stop_left_running(root / ".lab", root, grace=5) == [record.pgid]
    assert not vagrantpid.group_alive(record.pgid)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabConfig]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the host lock
    name = f"t{uuid.uuid4().hex[:8]}"
    lab = held_lab_dir(tmp_path / "lab")
    made = build_config(
        {"name": name, "subnet": "10.201.11.0/24", "num_instances": 1},
        lab,
        Overrides(discovery="static"),
    )
    with LibvirtHost.open(TEST_URI) as keeper:
        try:
            yield made
        finally:
            (lab / "hold").unlink(missing_ok=True)
            vagrantpid.stop_left_running(made.state_dir, lab, grace=5)
            keeper.remove_lab(name, "default-pool")


def test_lab_destroy_stops_the_vagrant_a_killed_lab_up_left_running(
    config: LabConfig, caplog: pytest.LogCaptureFixture
) -> None:
    record = kill_lab_during_up(config.directory)
    caplog.set_level(logging.WARNING)
    destroy(config, Fakes(config, FakeVagrant(config)).backends())
    assert not vagrantpid.group_alive(record.pgid)
    assert f"left running by an interrupted lab (pid {record.pid})" in caplog.text
    assert list(config.state_dir.glob(vagrantpid.RECORD_GLOB)) == []
