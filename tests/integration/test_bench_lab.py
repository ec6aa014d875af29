"""The benchmark runs the real `lab` and reads its progress events from the JSON lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.lab import lab_phase_seconds, run_lab
from provisioner.progress import LAB, plain_line

pytestmark = pytest.mark.integration

UNREACHABLE = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1


def test_lab_up_events_arrive_as_json_lines_beside_its_plain_lines(tmp_path: Path) -> None:
    # A hypervisor that does not answer: `lab up` renders, then stops at its host
    # checks before it creates anything, which is enough progress to read.
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "lab.yaml").write_text(f"libvirt_uri: {UNREACHABLE}\n")
    log = tmp_path / "up.log"
    run = run_lab(lab_dir, ["up", "--nodes", "1", "--discovery", "static"], log, 120, echo=False)
    assert run.returncode == 1
    assert [(e.subject, e.phase, e.status) for e in run.events] == [
        (LAB, "render", "running"),
        (LAB, "render", "ok"),
        (LAB, "host", "running"),
        (LAB, "host", "failed"),
    ]
    assert f"libvirt at {UNREACHABLE}" in run.events[-1].detail
    assert run.started_at <= run.events[0].at <= run.events[-1].at
    assert list(lab_phase_seconds(run.events)) == ["render", "host"]
    assert (tmp_path / "up.events.jsonl").is_file()
    # the terminal's plain lines are the same events, as before (the log adds its clock)
    shown = [re.sub(r"^ *\d+\.\d\d ", "", line) for line in log.read_text().splitlines()]
    for event in run.events:
        assert plain_line(event).rstrip("\n") in shown
