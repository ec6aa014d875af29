"""Real vagrant + vagrant-libvirt on a Vagrantfile rendered from Vagrantfile.j2 (no boot)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from provisioner.errors import LabError, NodeError, WaitTimeout
from provisioner.hypervisor.vagrant import VagrantLab, vagrant_env
from tests.hypervisor_support import sample_context, write_lab_dir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed"),
]


@pytest.fixture
def lab(tmp_path: Path) -> VagrantLab:
    root = write_lab_dir(tmp_path / "lab", sample_context())
    return VagrantLab(root, root / ".lab" / "vagrant.log")


def test_validate_and_status_show_the_rendered_machines(lab: VagrantLab) -> None:
    lab.validate()
    assert lab.status() == {
        "core-01": "not_created",
        "core-02": "not_created",
        "core-03": "not_created",
    }
    assert lab.status("core-02") == {"core-02": "not_created"}
    assert "validate" in lab.log_path.read_text()


def test_config_rb_honours_count_and_resources(lab: VagrantLab) -> None:
    (lab.root / "config.rb").write_text(
        '$num_instances = 2\n$vm_memory = 1024\n$vm_cpus = 2\n$update_channel = "alpha"\n'
        "$forwarded_ports = { 80 => 8080 }\n"
    )
    lab.validate()
    assert lab.status() == {"core-01": "not_created", "core-02": "not_created"}


def test_shared_folders_are_virtiofs(lab: VagrantLab, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (lab.root / "config.rb").write_text(f"$shared_folders = {{ '{shared}' => '/srv/shared' }}\n")
    lab.validate()


def test_more_instances_than_rendered_asks_for_a_rerender(lab: VagrantLab) -> None:
    (lab.root / "config.rb").write_text("$num_instances = 5\n")
    with pytest.raises(LabError) as failure:
        lab.status()
    assert "config.rb: $num_instances: asks for 5 nodes" in str(failure.value)
    assert "render --nodes 5` first" in str(failure.value)
    assert str(lab.log_path) in (failure.value.hint or "")


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ('$num_instances = "3"', "$num_instances: expected a whole number"),
        ('$instance_name_prefix = "node"', '$instance_name_prefix: "node" but the nodes'),
        ("$instance_name_prefix = :core", "$instance_name_prefix: expected a string"),
        ('$update_channel = "edge"', '$update_channel: unknown channel "edge"'),
        (
            "$new_discovery_url = 'https://discovery.etcd.io/new'",
            "$new_discovery_url: lab makes a fresh discovery token",
        ),
        ("$expose_docker_tcp = 2375", "$expose_docker_tcp: lab does not put docker"),
        ("$vm_gui = true", "$vm_gui: the nodes have no display"),
        ("$vm_memory = 256", "$vm_memory: expected MiB as a whole number of at least 384"),
        ('$vm_memory = "1G"', "$vm_memory: expected MiB"),
        ("$vm_cpus = 0", "$vm_cpus: expected a whole number of CPUs"),
        ("$enable_serial_logging = false", "$enable_serial_logging: false: lab reads"),
        ("$forwarded_ports = { 80 => 'http' }", "$forwarded_ports: expected { guest_port"),
        ("$forwarded_ports = [80]", "$forwarded_ports: expected { guest_port"),
        ('$share_home = "yes"', "$share_home: expected true or false"),
        ("$shared_folders = ['/tmp']", "$shared_folders: expected { 'host/path'"),
        ("$shared_folders = { '/no/such/dir' => '/x' }", "$shared_folders: /no/such/dir is not"),
    ],
)
def test_a_knob_lab_cannot_honour_is_refused_by_name(
    lab: VagrantLab, knob: str, message: str
) -> None:
    (lab.root / "config.rb").write_text(knob + "\n")
    with pytest.raises(LabError) as failure:
        lab.validate()
    assert f"config.rb: {message}" in str(failure.value)


def hook_recorder(tmp_path: Path, rc: int) -> tuple[Path, Path]:
    """A stand-in for `lab` that records its arguments and exits ``rc``."""
    calls = tmp_path / "calls"
    script = tmp_path / "fake-lab"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\necho "fake lab: no box here" >&2\nexit {rc}\n'
    )
    script.chmod(0o755)
    return script, calls


def plain_vagrant(root: Path, *args: str, lab_command: Path) -> subprocess.CompletedProcess[str]:
    """vagrant as a user runs it: not under lab (no LAB_DRIVING_VAGRANT)."""
    env = {k: v for k, v in vagrant_env().items() if k != "LAB_DRIVING_VAGRANT"}
    env["LAB_COMMAND"] = str(lab_command)
    return subprocess.run(
        ["vagrant", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plain_vagrant_up_has_lab_prepare_first_and_stops_on_its_failure(
    lab: VagrantLab, tmp_path: Path
) -> None:
    fake, calls = hook_recorder(tmp_path, rc=3)
    result = plain_vagrant(lab.root, "up", "core-02", lab_command=fake)
    assert result.returncode != 0
    assert calls.read_text().split("\n")[0] == f"-C {lab.root} vagrant-hook prepare --nodes 3"
    assert "fake lab: no box here" in result.stderr
    assert "vagrant-hook prepare --nodes 3` failed (exit 3)" in result.stderr + result.stdout
    assert not (lab.root / ".vagrant" / "machines" / "core-02" / "libvirt" / "id").exists()


def test_plain_vagrant_status_runs_no_hook(lab: VagrantLab, tmp_path: Path) -> None:
    fake, calls = hook_recorder(tmp_path, rc=0)
    (lab.root / "config.rb").write_text("$num_instances = 1\n")
    result = plain_vagrant(lab.root, "status", lab_command=fake)
    assert result.returncode == 0, result.stderr
    assert "core-01" in result.stdout
    assert "core-02" not in result.stdout
    assert not calls.exists()


def test_missing_lab_key_fails_validation(lab: VagrantLab) -> None:
    (lab.root / ".lab" / "id_ed25519").unlink()
    with pytest.raises(LabError, match="private_key_path"):
        lab.validate()


def test_unknown_machine_is_a_node_error(lab: VagrantLab) -> None:
    with pytest.raises(NodeError, match="not found configured"):
        lab.status("core-09")


def test_deadline_stops_vagrant(lab: VagrantLab) -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="did not finish within"):
        lab.validate(timeout=0.2)
    assert time.monotonic() - started < 30


def test_destroy_of_machines_never_created_is_harmless(lab: VagrantLab) -> None:
    lab.destroy("core-01")
    assert lab.status("core-01") == {"core-01": "not_created"}
