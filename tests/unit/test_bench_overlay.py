"""The overlay benchmark's readings of busybox ping, dd and flanneld's journal."""

from __future__ import annotations

import pytest

from benchmarks.overlay import (
    OverlayFigures,
    PathFigures,
    parse_dd_mb_per_s,
    parse_lease_seconds,
    parse_rtt_ms,
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
    dd = "50+0 records out\n50000000 bytes (47.7MB) copied, 2.000000 seconds, 23.8MB/s\n"
    assert parse_dd_mb_per_s(dd) == 25.0
    coreutils = "20000000 bytes (20 MB, 19 MiB) copied, 0.5 s, 40.0 MB/s\n"
    assert parse_dd_mb_per_s(coreutils) == 40.0
    with pytest.raises(LabError, match="no round-trip summary"):
        parse_rtt_ms("ping: sendto: Network unreachable")
    journal = (
        "[    9.120001] core-01 flanneld[309]: INFO network 10.1.0.0/16\n"
        "[   12.503311] core-01 flanneld[309]: INFO Allocated lease (10.1.43.0/24) to node\n"
    )
    assert parse_lease_seconds(journal) == 12.503311
    assert parse_lease_seconds("-- No entries --") is None


def test_ratios_are_overlay_over_underlay() -> None:
    figures = OverlayFigures("vxlan", {"core-01": 12.5}, PathFigures(1.0, 100.0),
                             PathFigures(2.0, 80.0))  # fmt: skip
    assert figures.throughput_ratio == 0.8
    assert figures.rtt_ratio == 2.0
