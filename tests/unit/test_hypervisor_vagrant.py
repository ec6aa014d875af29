"""The pure parts of the vagrant driver: its environment and error excerpts."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.hypervisor.vagrant import log_tail, vagrant_env

pytestmark = pytest.mark.unit

# What vagrant-libvirt 0.11.2 writes while uploading a box, as captured in a lab log.
UPLOAD = (
    "==> core-01: Uploading base box image as volume into Libvirt storage...\n"
    + "".join(f"\r\x1b[KProgress: {p}%" for p in range(101))
    + "\r\x1b[K==> core-01: Creating image (snapshot of base box volume).\n"
)


def test_environment_pins_provider_uri_and_silences_checks() -> None:
    env = vagrant_env("qemu:///system", {"VAGRANT_HOME": "/srv/v"}, base={"PATH": "/usr/bin"})
    assert env == {
        "PATH": "/usr/bin",
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
        "LAB_DRIVING_VAGRANT": "1",  # the Vagrantfile leaves its hooks to lab
        "LIBVIRT_DEFAULT_URI": "qemu:///system",
        "VAGRANT_HOME": "/srv/v",
    }


def test_caller_environment_wins_over_the_defaults() -> None:
    env = vagrant_env(extra={"VAGRANT_DEFAULT_PROVIDER": "other"}, base={})
    assert env["VAGRANT_DEFAULT_PROVIDER"] == "other"


def test_tail_drops_progress_redraws_headers_and_blank_lines() -> None:
    text = "\n=== 2026-01-01 00:00:00 /usr/bin/vagrant up core-01\n" + UPLOAD + "\n\n"
    assert log_tail(text) == (
        "==> core-01: Uploading base box image as volume into Libvirt storage...\n"
        "==> core-01: Creating image (snapshot of base box volume)."
    )


def test_tail_keeps_the_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(40))
    assert log_tail(text, lines=3) == "line 37\nline 38\nline 39"


def test_vagrant_runs_niced_so_the_guests_keep_the_cpu() -> None:
    from provisioner.hypervisor.vagrant import VAGRANT_NICENESS, niced

    command = niced(["/usr/bin/vagrant", "up", "--no-provision"])
    assert Path(command[0]).name == "nice"
    assert command[1:] == ["-n", str(VAGRANT_NICENESS), "/usr/bin/vagrant", "up", "--no-provision"]
