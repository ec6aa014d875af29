"""The overlay benchmark's readings of busybox ping, dd and flanneld's journal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.overlay import (
    OverlayFigures,
    PathFigures,
    parse_lease_seconds,
    parse_rtt_ms,
    parse_transfer_mb_per_s,
    send,
)
from provisioner.errors import LabError

pytestmark = pytest.mark.unit


def test_busybox_outputs() -> None:
    ping = (
        "PING 10.1.93.2 (10.1.93.2): 56 data bytes\n\n--- 10.1.93.2 ping statistics ---\n"
        "20 packets transmitted, 20 packets received, 0% packet loss\n"
        "round-trip min/avg/max = 0.512/1.250/3.004 ms\n"
    )
    assert parse_rtt_ms(ping) == 1.25
    assert parse_transfer_mb_per_s("transfer 100.25 102.75\n", 50) == 20.0
    with pytest.raises(LabError, match="no transfer timing"):
        parse_transfer_mb_per_s("nc: can't connect to remote host", 50)
    with pytest.raises(LabError, match="no round-trip summary"):
        parse_rtt_ms("ping: sendto: Network unreachable")
    journal = (
        "[    9.120001] core-01 flanneld[309]: INFO network 10.1.0.0/16\n"
        "[   12.503311] core-01 flanneld[309]: INFO Allocated lease (10.1.43.0/24) to node\n"
    )
    assert parse_lease_seconds(journal) == 12.503311
    assert parse_lease_seconds("-- No entries --") is None


def test_the_send_line_times_a_transfer_in_a_real_shell(tmp_path: Path) -> None:
    """The line runs in a POSIX shell as written; a stand-in nc reads the data."""
    fake_nc = tmp_path / "nc"
    fake_nc.write_text("#!/bin/sh\ncat > /dev/null\n")
    fake_nc.chmod(0o755)
    done = subprocess.run(["sh", "-c", send(3, str(fake_nc), "127.0.0.1")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert parse_transfer_mb_per_s(done.stdout, 3) > 0
    assert done.stderr == ""


def test_ratios_are_overlay_over_underlay() -> None:
    figures = OverlayFigures("vxlan", {"core-01": 12.5}, PathFigures(1.0, 100.0),
                             PathFigures(2.0, 80.0))  # fmt: skip
    assert figures.throughput_ratio == 0.8
    assert figures.rtt_ratio == 2.0
