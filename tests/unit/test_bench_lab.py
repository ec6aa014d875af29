"""What the benchmark reads from `lab up`: its progress events and its final timing line."""

from __future__ import annotations

import dataclasses
import io

import pytest

from benchmarks.lab import lab_milestones, lab_phase_seconds, parse_phase_summary
from provisioner.progress import LAB, JsonLines, Progress, ProgressEvent

pytestmark = pytest.mark.unit


def lab_events(updates: list[tuple[str, str, str, str]]) -> list[ProgressEvent]:
    """What lab's own Progress writes as JSON lines for ``updates``, read back."""
    stream = io.StringIO()
    progress = Progress(JsonLines(stream))
    for subject, phase, status, detail in updates:
        progress.update(subject, phase, status, detail)  # type: ignore[arg-type]
    return [ProgressEvent.from_json(line) for line in stream.getvalue().splitlines()]


def stamped(events: list[ProgressEvent], at: list[float]) -> list[ProgressEvent]:
    return [dataclasses.replace(e, at=t) for e, t in zip(events, at, strict=True)]


# --- progress events ------------------------------------------------------------


def test_progress_events_written_by_lab_read_back() -> None:
    events = lab_events(
        [
            (LAB, "nodes", "running", ""),
            (LAB, "nodes", "ok", "all running"),
            ("core-01", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"),
            (LAB, "boot", "failed", "vagrant up: exit 1"),
        ]
    )
    assert [e.subject for e in events] == [LAB, LAB, "core-01", LAB]
    running, ok, banner, failed = events
    assert running.status == "running"
    assert running.elapsed == 0.0
    assert ok.phase == "nodes"
    assert ok.detail == "all running"
    assert ok.elapsed is not None
    assert ok.elapsed >= 0
    assert banner.phase == "ssh banner"
    assert banner.detail.startswith("SSH-2.0-")
    assert failed.status == "failed"
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_phase_seconds_come_from_the_lab_rows_only() -> None:
    events = lab_events(
        [
            (LAB, "render", "running", ""),
            (LAB, "render", "ok", "4 files"),
            ("core-01", "systemd", "running", ""),
            ("core-01", "systemd", "ok", "running"),
            (LAB, "box", "running", ""),
            (LAB, "box", "ok", "lab/default-abc (cached)"),
        ]
    )
    assert list(lab_phase_seconds(events)) == ["render", "box"]


def test_milestones_are_when_the_events_happened() -> None:
    events = lab_events(
        [
            ("core-02", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1"),
            ("core-01", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1"),
            (LAB, "cluster", "running", ""),
            ("core-03", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1"),
            (LAB, "cluster", "running", "3/3 members healthy"),
            (LAB, "cluster", "running", "/lab/ready written on core-01, read on 3 nodes"),
        ]
    )
    at = [10.0, 12.5, 13.0, 20.0, 31.0, 33.0]
    marks = lab_milestones(stamped(events, [100.0 + t for t in at]), nodes=3, since=100.0)
    assert (marks.first_banner, marks.all_banners, marks.etcd_healthy) == (10.0, 20.0, 31.0)


def test_milestones_missing_when_not_every_node_got_there() -> None:
    events = lab_events([("core-01", "ssh banner", "ok", "SSH-2.0-x")])
    marks = lab_milestones(stamped(events, [5.0]), nodes=3, since=0.0)
    assert (marks.first_banner, marks.all_banners, marks.etcd_healthy) == (5.0, None, None)


# --- the CLI's final timing line ------------------------------------------------------

SUMMARY = (
    "accel tcg; render 0.0s, host 0.0s, box 1.4s, network 0.3s, discovery 0.5s, "
    "drives 0.2s, boot 61.0s, nodes 13.4s, cluster 6.1s"
)


def test_final_timing_line() -> None:
    parsed = parse_phase_summary("┏━━━━┓ table\n" + SUMMARY + "\n")
    assert parsed is not None
    accel, phases = parsed
    assert accel == "tcg"
    assert phases["boot"] == 61.0
    assert phases["cluster"] == 6.1
    assert next(iter(phases)) == "render"
    assert len(phases) == 9


def test_final_timing_line_wrapped_at_any_space() -> None:
    whole = parse_phase_summary(SUMMARY)
    spaces = [i for i, char in enumerate(SUMMARY) if char == " "]
    for i in spaces:
        assert parse_phase_summary(SUMMARY[:i] + "\n" + SUMMARY[i + 1 :]) == whole, i


def test_no_final_line_after_an_already_up_lab() -> None:
    assert parse_phase_summary("lab x is already up; nothing changed\n") is None
