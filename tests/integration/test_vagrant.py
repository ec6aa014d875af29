"""Real vagrant + vagrant-libvirt on a Vagrantfile rendered from Vagrantfile.j2 (no boot)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from provisioner.errors import LabError, NodeError, WaitTimeout
from provisioner.hypervisor.vagrant import VagrantLab
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


def test_config_rb_overrides_count_and_names(lab: VagrantLab) -> None:
    (lab.root / "config.rb").write_text(
        '$num_instances = 2\n$instance_name_prefix = "node"\n$vm_memory = 1024\n'
    )
    lab.validate()
    assert lab.status() == {"node-01": "not_created", "node-02": "not_created"}


def test_more_instances_than_rendered_asks_for_a_rerender(lab: VagrantLab) -> None:
    (lab.root / "config.rb").write_text("$num_instances = 5\n")
    with pytest.raises(LabError) as failure:
        lab.status()
    assert "run `lab render --nodes 5` first" in str(failure.value)
    assert str(lab.log_path) in (failure.value.hint or "")


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
