"""The benchmark's sampler: /proc readers and the arithmetic over samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.sampler import (
    average_rate,
    parse_cpu_busy_ticks,
    parse_mem_available_kib,
    parse_process_cpu_ticks,
    parse_vm_rss_kib,
    peak_used_mib,
    window_max,
)

pytestmark = pytest.mark.unit


# --- memory -------------------------------------------------------------------------

MEMINFO = """MemTotal:       24684012 kB
MemFree:        17580020 kB
MemAvailable:   20788316 kB
Buffers:          125956 kB
"""


def test_mem_available() -> None:
    assert parse_mem_available_kib(MEMINFO) == 20788316
    with pytest.raises(ValueError, match="MemAvailable"):
        parse_mem_available_kib("MemTotal: 1 kB\n")


def test_peak_is_above_the_level_at_the_start() -> None:
    samples = [(0.0, 10 * 1024**2), (1.0, 9 * 1024**2), (2.0, 8 * 1024**2), (3.0, 9 * 1024**2)]
    # From t=0.5 the baseline is the t=0 sample (10 GiB); the low point is 8 GiB.
    assert peak_used_mib(samples, 0.5, 3.0) == 2048
    assert peak_used_mib(samples, 2.0, 3.0) == 0  # it only went up from there
    assert peak_used_mib(samples, 5.0, 6.0) is None


def test_resident_memory_of_a_process() -> None:
    own = Path("/proc/self/status").read_text()
    assert parse_vm_rss_kib(own) > 0
    assert parse_vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n") == 0  # no VmRSS line


def test_busy_cpu_of_the_host() -> None:
    stat = "cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n"
    assert parse_cpu_busy_ticks(stat) == 100 + 5 + 50 + 1 + 2 + 3  # not idle, not iowait
    real = Path("/proc/stat").read_text()
    assert parse_cpu_busy_ticks(real) > 0


def test_cpu_of_a_process_with_an_awkward_name() -> None:
    # comm may contain spaces and ')'; utime=11 stime=22 are fields 14 and 15.
    stat = "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 11 22 0 0 20 0 3 0 5 6 7\n"
    assert parse_process_cpu_ticks(stat) == 33
    assert parse_process_cpu_ticks(Path("/proc/self/stat").read_text()) >= 0


def test_average_rate() -> None:
    samples = [(0.0, 0), (1.0, 100), (2.0, 300), (3.0, 300)]
    assert average_rate(samples, 0.0, 2.0) == 150.0
    assert average_rate(samples, 2.0, 3.0) == 0.0
    assert average_rate(samples, 2.5, 3.0) is None  # one sample is not a rate


def test_window_max() -> None:
    samples = [(0.0, 1), (1.0, 5), (2.0, 3)]
    assert window_max(samples, 0.0, 0.5) == 1
    assert window_max(samples, 0.5, 2.0) == 5
    assert window_max(samples, 3.0, 4.0) is None
