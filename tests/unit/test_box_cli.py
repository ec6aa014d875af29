"""`lab box build`'s rendering of the build's progress events, without a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from provisioner.box.cli import _reporter
from provisioner.progress import ProgressEvent

pytestmark = pytest.mark.unit


def test_steps_warnings_and_notes_as_plain_console_lines() -> None:
    out = io.StringIO()
    report = _reporter(Console(file=out, width=200, force_terminal=False), None)
    report(ProgressEvent("default", "rootfs", "running", "debootstrap bookworm", 0.0))
    report(ProgressEvent("default", "rootfs", "info", "I: Retrieving Release", 1.0))
    report(ProgressEvent("default", "rootfs", "warning", "slow mirror", 2.0))
    report(ProgressEvent("default", "rootfs", "ok", "debootstrap bookworm", 61.25))
    assert out.getvalue().splitlines() == [
        "rootfs: debootstrap bookworm ...",
        "! rootfs: slow mirror",
        "✓ debootstrap bookworm (61.2s)",
    ]
