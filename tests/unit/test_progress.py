"""Progress events: one event type, shown as plain lines, a live table or JSON lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from provisioner.progress import (
    JSONL_ENV,
    LAB,
    JsonLines,
    PlainLines,
    PlainProgress,
    Progress,
    ProgressEvent,
    RichProgress,
    make_progress,
    plain_line,
    read_events,
)

pytestmark = pytest.mark.unit


def test_every_consumer_gets_the_same_events() -> None:
    plain, jsonl = io.StringIO(), io.StringIO()
    seen: list[ProgressEvent] = []
    progress = Progress(PlainLines(plain), JsonLines(jsonl), seen.append)
    progress.update("core-01", "ssh banner", "running")
    progress.update("core-01", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1")
    written = [ProgressEvent.from_json(line) for line in jsonl.getvalue().splitlines()]
    assert written == seen
    assert plain.getvalue() == "".join(plain_line(e) for e in seen)
    running, ok = seen
    assert (running.subject, running.phase, running.status) == ("core-01", "ssh banner", "running")
    assert running.elapsed == 0.0  # the phase starts with its first update
    assert ok.elapsed is not None
    assert ok.elapsed >= 0
    assert ok.at >= running.at
    assert ("core-01", "ssh banner") in progress.phase_times


def test_a_new_detail_keeps_the_phase_start_and_a_new_phase_restarts_it() -> None:
    seen: list[ProgressEvent] = []
    progress = Progress(seen.append)
    progress.update(LAB, "box", "running")
    progress.update(LAB, "box", "running", "pool volume x")
    progress.update(LAB, "box", "ok", "lab/default-abc (cached; in the pool)")
    progress.update(LAB, "network", "running")
    box_ok, network = seen[2], seen[3]
    assert box_ok.elapsed is not None
    assert box_ok.elapsed >= seen[1].elapsed  # type: ignore[operator]
    assert network.elapsed == 0.0
    assert list(progress.phase_times) == [(LAB, "box")]


def test_plain_line_shape() -> None:
    event = ProgressEvent(LAB, "nodes", "ok", "all running", 13.44, at=0.0)
    line = plain_line(event)
    assert line.endswith(" lab        nodes        ok after 13.4s: all running\n")
    assert plain_line(ProgressEvent("core-01", "boot", "running", at=0.0)).endswith(
        " core-01    boot         running\n"
    )


def test_json_lines_round_trip(tmp_path: Path) -> None:
    events = [
        ProgressEvent(LAB, "render", "running", "", 0.0, at=100.0),
        ProgressEvent(LAB, "render", "ok", "4 files", 0.02, at=100.02),
        ProgressEvent("core-01", "systemd", "failed", "degraded: x.service", 3.5, at=104.0),
        ProgressEvent("default", "debootstrap", "info", "I: Retrieving Release", None, at=5.0),
    ]
    path = tmp_path / "events.jsonl"
    with path.open("w") as handle:
        write = JsonLines(handle)
        for event in events:
            write(event)
    assert read_events(path) == events
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "subject": "lab",
        "phase": "render",
        "status": "running",
        "detail": "",
        "elapsed": 0.0,
        "at": 100.0,
    }
    assert read_events(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize(
    "line", ['{"subject": "lab"}', "[]", '{"subject":"a","phase":"b","status":"done",'
    '"detail":"","elapsed":null,"at":1}', "17:50:32 lab        nodes        ok"],
)  # fmt: skip
def test_other_lines_are_not_events(line: str) -> None:
    with pytest.raises(ValueError, match="not a progress event"):
        ProgressEvent.from_json(line)


def test_make_progress_writes_json_lines_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(JSONL_ENV, str(path))
    shown = io.StringIO()
    progress = make_progress(shown)
    assert isinstance(progress, PlainProgress)
    progress.update("core-02", "boot", "running")
    progress.update("core-02", "boot", "ok")
    progress.close()
    events = read_events(path)
    assert [(e.subject, e.phase, e.status) for e in events] == [
        ("core-02", "boot", "running"),
        ("core-02", "boot", "ok"),
    ]
    assert shown.getvalue() == "".join(plain_line(e) for e in events)


def test_make_progress_without_the_variable_writes_no_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(JSONL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    progress = make_progress(io.StringIO())
    progress.update(LAB, "render", "ok", "4 files")
    progress.close()
    assert list(tmp_path.iterdir()) == []


def test_live_table_shows_one_row_per_subject() -> None:
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=120, force_terminal=False))
    progress.update("core-01", "boot", "running")
    progress.update("core-01", "ssh banner", "ok", "SSH-2.0-x")
    progress.update(LAB, "nodes", "running")
    progress.close()
    last = out.getvalue().split("node ")[-1]
    assert "core-01" in last
    assert "ssh banner" in last
    assert "SSH-2.0-x" in last
    assert "boot" not in last
    assert "nodes" in last
