"""The guest-side flanneld runs on the guest's bare python3: standard library only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import provisioner.guest.flannel
from tests.unit.test_fleet_guest_imports import imported_modules

pytestmark = pytest.mark.unit

PACKAGE = Path(provisioner.guest.flannel.__file__).parent
ROOT = PACKAGE.parents[2]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.glob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_only_stdlib_and_guest_modules(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top == "provisioner":
            assert name.startswith("provisioner.guest"), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{path.name} imports {name}, which the guest does not have"
            )


def test_the_daemon_does_not_load_what_only_udp_or_ip_masq_need() -> None:
    code = (
        "import sys; import provisioner.guest.flannel.flanneld; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('provisioner'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert "provisioner.guest.flannel.udp" not in loaded
    assert "provisioner.guest.flannel.firewall" not in loaded
    assert not [m for m in loaded if m.startswith("provisioner.") and ".guest" not in m]


def test_entry_point_exists() -> None:
    from provisioner.guest.flannel import flanneld

    assert callable(flanneld.main)


def test_the_unit_reads_cloud_configs_options_and_notifies_readiness() -> None:
    unit = (PACKAGE / "units" / "flanneld.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    assert {
        "Type=notify",
        "EnvironmentFile=-/run/flannel/options.env",
        "ExecStart=/usr/bin/flanneld",
        "After=etcd.service etcd2.service etcd-gateway.service network-online.target",
        "Before=docker.service",
        "Restart=always",
    } <= lines


def test_readiness_reaches_systemds_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from provisioner.guest.flannel.flanneld import sd_notify

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        sd_notify("READY=1")
        assert listener.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    sd_notify("READY=1")  # no socket: nothing to do, no error
