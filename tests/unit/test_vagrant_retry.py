"""`vagrant up` retried once when vagrant-libvirt met a network removed while it looked
at the host's networks (another lab's destroy); any other failure is not retried.
A stand-in `vagrant` on PATH prints what vagrant-libvirt printed in such a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.errors import LabError
from provisioner.hypervisor.vagrant import VagrantLab

pytestmark = pytest.mark.unit

RACED = (
    "An unexpected error occurred when executing the action on the\n'core-01' machine.\n"
    "Call to virNetworkGetBridgeName failed: Network not found: no network with matching "
    "uuid '4d0daa44-d3d5-4c67-9a44-d6f07e46cad2' (lab-other-191791)\n"
)


def fake_vagrant(tmp_path: Path, failures: str) -> Path:
    """A `vagrant` that prints each line of ``failures`` and exits 1, one per call, then 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "failures").write_text(failures)
    script = bin_dir / "vagrant"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/calls\n'
        f"n=$(wc -l < {tmp_path}/calls)\n"
        f'line=$(sed -n "${{n}}p" {tmp_path}/failures)\n'
        '[ -z "$line" ] && exit 0\n'
        'printf "%b" "$line"; exit 1\n'
    )
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("failures", "calls", "fails"),
    [
        (RACED.replace("\n", "\\n") + "\n", 2, False),  # raced once: retried, done
        ((RACED.replace("\n", "\\n") + "\n") * 2, 2, True),  # raced twice: reported
        ("Stderr: qemu-system-x86_64: cannot set up guest memory\\n\n", 1, True),
    ],
)
def test_up_retries_only_a_network_removed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: str, calls: int, fails: bool
) -> None:
    monkeypatch.setenv("PATH", f"{fake_vagrant(tmp_path, failures)}{os.pathsep}/usr/bin:/bin")
    lab = VagrantLab(tmp_path, tmp_path / "vagrant.log")
    if fails:
        with pytest.raises(LabError, match="`vagrant up` failed"):
            lab.up(timeout=30)
    else:
        lab.up(timeout=30)
    assert len((tmp_path / "calls").read_text().splitlines()) == calls
