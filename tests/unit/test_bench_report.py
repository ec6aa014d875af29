"""The benchmark's report: the verdict, the summary rows and the table."""

from __future__ import annotations

import pytest

from benchmarks.floor import BootTimes
from benchmarks.report import SUMMARY_HEADERS, format_table, summary_rows, verdict
from benchmarks.sampler import PartStats

pytestmark = pytest.mark.unit


# --- the summary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "start"),
    [(1.1, "meets the goal"), (1.2, "meets the goal"), (1.4, "meets the target"), (1.6, "misses")],
)
def test_verdict(ratio: float, start: str) -> None:
    assert verdict(ratio).startswith(start)


def test_summary_has_the_ratio_of_totals() -> None:
    floor = BootTimes(prep=2.0, first_banner=30.0, all_banners=40.0, healthy=48.0)
    assert floor.total == 50.0
    part = PartStats(
        seconds=75.0,
        peak_mib=1500.0,
        guests_peak_mib=2400.4,
        host_cpu=1.98,
        guests_cpu=1.2,
        load_before=(3.0, 2.0, 1.0),
        load_after=(4.0, 3.0, 2.0),
        other_domains=3,
    )
    lab_boot = BootTimes(prep=20.0, first_banner=35.0, all_banners=41.0, healthy=50.0)
    rows = summary_rows(floor, lab_boot, 75.0, {"boot": 60.0}, {"lab up": part})
    assert all(len(row) == len(SUMMARY_HEADERS) for row in rows)
    table = {row[0]: row for row in rows}
    assert table["ratio lab up / floor"][1] == "1.50"
    assert "meets the target" in table["ratio lab up / floor"][-1]
    assert table["lab up: boot"][1] == "60.0"
    assert table["lab up: first guest started"][1] == "20.0"
    assert table["lab up: after etcd healthy"][1] == "5.0"  # 75 - (20 + 50)
    assert table["lab up: total"][2:8] == ["1500", "2400", "1.98", "1.20", "3.0/4.0", "3"]
    assert table["lab verify"][1:4] == ["-", "-", "-"]


def test_summary_without_a_floor_has_no_ratio() -> None:
    rows = summary_rows(None, None, None, {}, {})
    assert all(not row[0].startswith("ratio") for row in rows)


def test_table_columns_line_up() -> None:
    text = format_table(("", "seconds", "note"), [["floor: total", "50.0", "x"], ["a", "1.5", ""]])
    header, rule, first, second = text.splitlines()
    assert rule.startswith("-" * len("floor: total") + "  ")
    assert first.index("50.0") + len("50.0") == second.index("1.5") + len("1.5")
    assert header.index("seconds") + len("seconds") == first.index("50.0") + len("50.0")
