"""Output for programs: every --json output matches its schema in docs/schema/, and tables
piped or redirected keep whole addresses and IDs. The library under the CLI is faked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import provisioner.lifecycle
import provisioner.operate
from provisioner.checks.runner import CheckOutcome, VerifyResult
from provisioner.cli import main
from provisioner.config import load_config
from provisioner.lifecycle import fastpath, snapshots
from provisioner.lifecycle.fastpath import Ready
from provisioner.lifecycle.snapshots import LabSnapshot, SnapshotResult
from provisioner.lifecycle.steps import NodeReport, UpResult
from provisioner.operate import NodeStatus
from provisioner.progress import Progress, ProgressEvent
from provisioner.reports import up_json, verify_json
from tests.schema_support import SCHEMA_DIR, check, problems

pytestmark = pytest.mark.unit

MACHINE_ID = "0123456789abcdef0123456789abcdef"


def checked(*outcomes: tuple[str | None, str, str], returncode: int = 0) -> VerifyResult:
    return VerifyResult(
        returncode=returncode,
        outcomes=tuple(
            CheckOutcome(
                nodeid=f"test_{check}.py::{check}[{node}]",
                node=node,
                check=check,
                outcome=outcome,  # type: ignore[arg-type]
                message="" if outcome == "passed" else f"{check} found a problem",
                duration=0.25,
            )
            for node, check, outcome in outcomes
        ),
        junit=None,
        output="",
    )


PASSED = checked(("core-01", "test_etcd_health", "passed"), ("core-02", "test_units", "skipped"))
FAILED = checked(
    ("core-01", "test_etcd_health", "passed"),
    ("core-02", "test_etcd_health", "failed"),
    (None, "test_mine", "error"),
    returncode=1,
)


def up_result(already_up: bool = False) -> UpResult:
    return UpResult(
        already_up=already_up,
        nodes=tuple(
            NodeReport(f"core-0{i}", f"192.168.130.10{i}", "member", MACHINE_ID, "running", ())
            for i in (1, 2, 3)
        ),
        phase_seconds={} if already_up else {"boot": 41.25, "cluster": 3.5},
        accel="tcg",
    )


def snapshot_result(name: str = "clean") -> SnapshotResult:
    return SnapshotResult(name, ("core-01", "core-02", "core-03"), 9.5, 2.25, "etcd 3/3")


# --- the schemas and the checker ------------------------------------------------------


def test_every_schema_is_json_and_names_its_required_keys() -> None:
    names = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))
    assert names == [
        "lab-snapshot-list.schema.json",
        "lab-status.schema.json",
        "lab-up.schema.json",
        "lab-verify.schema.json",
        "progress-event.schema.json",
    ]
    for name in names:
        schema = json.loads((SCHEMA_DIR / name).read_text())
        assert schema["$id"] == name
        objects = [schema, *schema.get("properties", {}).values()]
        for each in objects:
            for key in each.get("required", ()):
                assert key in each["properties"], f"{name}: {key} required but not described"


def test_the_checker_finds_missing_keys_wrong_types_and_undocumented_keys() -> None:
    good = verify_json(PASSED)
    assert problems(good, json.loads((SCHEMA_DIR / "lab-verify.schema.json").read_text())) == []
    bad: dict[str, Any] = {**good, "ok": "yes", "surprise": 1}
    del bad["totals"]
    bad["checks"] = [{**good["checks"][0], "outcome": "maybe"}]
    found = problems(bad, json.loads((SCHEMA_DIR / "lab-verify.schema.json").read_text()))
    assert sorted(found) == sorted(
        [
            "$: 'totals' is missing",
            "$.ok: 'yes' is not of type boolean",
            "$: 'surprise' is not documented in the schema",
            "$.checks[0].outcome: 'maybe' is not one of ['passed', 'failed', 'error', 'skipped']",
        ]
    )


# --- the JSON builders ----------------------------------------------------------------


def test_verify_json_has_each_check_and_the_totals() -> None:
    data = verify_json(FAILED)
    check(data, "lab-verify.schema.json")
    assert data["ok"] is False
    assert data["totals"] == {"passed": 1, "failed": 1, "error": 1, "skipped": 0, "total": 3}
    assert [(c["node"], c["name"], c["outcome"]) for c in data["checks"]] == [
        ("core-01", "test_etcd_health", "passed"),
        ("core-02", "test_etcd_health", "failed"),
        (None, "test_mine", "error"),
    ]
    assert data["checks"][1]["message"] == "test_etcd_health found a problem"


def test_up_json_of_a_boot_that_was_verified_and_saved(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    ready = Ready("clean", up=up_result(), verified=PASSED, saved=snapshot_result())
    data = up_json(config, ready)
    check(data, "lab-up.schema.json")
    assert data["nodes"][0] == {
        "name": "core-01",
        "ip": "192.168.130.101",
        "role": "member",
        "machine_id": MACHINE_ID,
        "system_state": "running",
        "failed_units": [],
    }
    assert (data["accel"], data["already_up"]) == ("tcg", False)
    assert data["phase_seconds"] == {"boot": 41.25, "cluster": 3.5}
    assert data["snapshot"]["action"] == "saved"
    assert data["verify"]["ok"] is True


def test_up_json_after_a_restore_has_nulls_where_nothing_was_measured(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    data = up_json(config, Ready("clean", restored=snapshot_result()))
    check(data, "lab-up.schema.json")
    assert data["accel"] is None
    assert data["verify"] is None
    assert data["snapshot"] == {
        "name": "clean",
        "action": "restored",
        "seconds": 9.5,
        "paused_seconds": 2.25,
        "detail": "etcd 3/3",
    }
    assert [(n["name"], n["system_state"], n["failed_units"]) for n in data["nodes"]] == [
        (f"core-0{i}", None, None) for i in (1, 2, 3)
    ]


def test_progress_events_match_their_schema() -> None:
    seen: list[ProgressEvent] = []
    progress = Progress(seen.append)
    progress.update("core-01", "ssh banner", "running")
    progress.update("core-01", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1")
    for event in seen:
        check(json.loads(event.to_json()), "progress-event.schema.json")


# --- the commands -----------------------------------------------------------------------


def run(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["-C", str(tmp_path), *args])


def statuses() -> list[NodeStatus]:
    return [
        NodeStatus(
            name=f"core-0{i}",
            ip=f"192.168.130.10{i}",
            role="member" if i < 3 else "worker",
            state="running",
            machine_id=MACHINE_ID,
            metadata={"rack": f"rack{i}"},
            etcd_member=i < 3,
            etcd_healthy=True if i < 3 else None,
            etcd_leader=i == 1,
            fleet_listed=True,
            failed_units=["a-long-unit-name-that-failed.service"] if i == 2 else [],
            flannel_subnet=f"10.1.{i}.0/24",
        )
        for i in (1, 2, 3)
    ]


def test_status_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioner.operate, "status", lambda config: statuses())
    result = run(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    check(data, "lab-status.schema.json")
    assert data["nodes"][2]["etcd_healthy"] is None


def test_status_table_keeps_addresses_and_ids_whole_when_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioner.operate, "status", lambda config: statuses())
    result = run(tmp_path, "status")  # CliRunner's stdout is not a terminal
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "core-0" in line]
    assert len(rows) == 3
    for i, row in enumerate(rows, start=1):
        assert f"192.168.130.10{i}" in row
        assert MACHINE_ID in row
        assert f"10.1.{i}.0/24" in row
    assert "a-long-unit-name-that-failed.service" in rows[1]
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_verify_json_exits_1_on_failures_with_pure_json_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioner.operate, "verify", lambda config, **kw: FAILED)
    result = run(tmp_path, "verify", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    check(data, "lab-verify.schema.json")
    assert data["totals"]["failed"] == 1
    assert "2 of 3 checks failed" in result.stderr


def test_up_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioner.lifecycle, "up", lambda config, progress, **kw: up_result())
    result = run(tmp_path, "up", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    check(data, "lab-up.schema.json")
    assert (data["snapshot"], data["verify"]) == (None, None)


def fake_fast_path(monkeypatch: pytest.MonkeyPatch, *, has: bool, verify: VerifyResult) -> None:
    taken = [LabSnapshot("clean", 1, ("core-01", "core-02", "core-03"), ())] if has else []
    monkeypatch.setattr(
        snapshots, "find", lambda config, name, backends=None: next(iter(taken), None)
    )
    monkeypatch.setattr(snapshots, "restore", lambda *a: snapshot_result())
    monkeypatch.setattr(snapshots, "save", lambda *a: snapshot_result())
    monkeypatch.setattr(fastpath, "up", lambda config, progress, **kw: up_result())
    monkeypatch.setattr(fastpath, "run_verify", lambda config: verify)


@pytest.mark.parametrize(("has", "action"), [(True, "restored"), (False, "saved")])
def test_up_snapshot_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has: bool, action: str
) -> None:
    fake_fast_path(monkeypatch, has=has, verify=PASSED)
    result = run(tmp_path, "up", "--snapshot", "clean", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    check(data, "lab-up.schema.json")
    assert data["snapshot"]["action"] == action
    assert (data["verify"] is None) is has


def test_up_snapshot_that_fails_verify_prints_the_summary_saves_nothing_and_names_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fast_path(monkeypatch, has=False, verify=FAILED)
    saved: list[str] = []
    monkeypatch.setattr(snapshots, "save", lambda config, name, *a: saved.append(name))
    result = run(tmp_path, "up", "--snapshot", "clean", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    check(data, "lab-up.schema.json")
    assert (data["snapshot"], data["verify"]["ok"]) == (None, False)
    assert saved == []
    assert "core-02 test_etcd_health (failed)" in result.stderr
    assert "collection test_mine (error)" in result.stderr


def test_snapshot_list_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = [LabSnapshot("clean", 1_700_000_000, ("core-01", "core-02"), ("core-03",))]
    monkeypatch.setattr(snapshots, "listed", lambda config: found)
    result = run(tmp_path, "snapshot", "list", "--json")
    assert result.exit_code == 0, result.output
    check(json.loads(result.stdout), "lab-snapshot-list.schema.json")
