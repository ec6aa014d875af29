"""Pure pieces of the lifecycle: host-key pins, uploads for fleetctl, progress lines."""

from __future__ import annotations

import io
import re
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from provisioner.config import Overrides, build_config
from provisioner.errors import HostKeyError, LabError, WaitTimeout
from provisioner.lifecycle import Run
from provisioner.nodes import check_pins, pinned_pairs, stored_pins
from provisioner.operate import UPLOAD_DIR, etcdctl_argv, fleetctl_args
from provisioner.progress import PlainProgress
from provisioner.readiness import NodeFacts
from provisioner.waits import wait_for


def test_pins_round_trip_through_state() -> None:
    printed = {"ED25519": "SHA256:aaa", "ECDSA": "SHA256:bbb"}
    assert dict(pinned_pairs(stored_pins(printed))) == printed


def test_a_changed_host_key_is_refused() -> None:
    check_pins("core-01", {"ED25519": "SHA256:aaa"}, {"ED25519": "SHA256:aaa"})
    with pytest.raises(HostKeyError, match="core-01: the ED25519 host key changed"):
        check_pins("core-01", {"ED25519": "SHA256:aaa"}, {"ED25519": "SHA256:zzz"})


def test_local_unit_files_are_uploaded_and_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = tmp_path / "myapp.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    monkeypatch.chdir(tmp_path)
    args, uploads = fleetctl_args(["start", "./myapp.service", "other.service", "--no-block"])
    assert args == ["start", f"{UPLOAD_DIR}/myapp.service", "other.service", "--no-block"]
    assert uploads == [unit.resolve()]


def test_unit_names_that_are_not_local_files_pass_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args, uploads = fleetctl_args(["status", "hello.service"])
    assert args == ["status", "hello.service"]
    assert uploads == []


def test_plain_progress_lines_are_timestamped() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.update("core-01", "boot", "running")
    progress.update("core-01", "boot", "ok", "booted")
    lines = out.getvalue().splitlines()
    assert re.match(r"^\d\d:\d\d:\d\d core-01\s+boot\s+running$", lines[0])
    assert re.match(r"^\d\d:\d\d:\d\d core-01\s+boot\s+ok after \d+\.\ds: booted$", lines[1])
    assert ("core-01", "boot") in progress.phase_times


class _PieceByPiece(io.StringIO):
    """A stream that yields the GIL inside every write, as a terminal or pipe can."""

    def write(self, text: str) -> int:
        for char in text:
            super().write(char)
            time.sleep(0)
        return len(text)


def test_plain_progress_lines_stay_whole_when_nodes_report_at_once() -> None:
    out = _PieceByPiece()
    progress = PlainProgress(out)

    def report(node: str) -> None:
        for _ in range(20):
            progress.update(node, "ssh banner", "running")

    threads = [threading.Thread(target=report, args=(f"core-0{i}",)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 80
    for line in lines:
        assert re.match(r"^\d\d:\d\d:\d\d core-0\d\s+ssh banner\s+running$", line), line


def test_a_wait_names_what_it_waited_for() -> None:
    with pytest.raises(
        WaitTimeout, match=r"core-02: gave up waiting for an SSH banner; last: no answer yet"
    ):
        wait_for("core-02", "an SSH banner", 0.0, lambda: None, interval=0.0)
    assert wait_for("core-02", "a value", 10.0, lambda: "ready", interval=0.0) == "ready"


def test_a_cancelled_wait_stops_before_its_deadline() -> None:
    calls: list[int] = []
    flag = {"cancelled": False}

    def attempt() -> None:
        calls.append(1)
        flag["cancelled"] = len(calls) == 2  # the boot fails while the second try runs

    with pytest.raises(LabError, match=r"core-01: stopped waiting for a login: the lab's boot"):
        wait_for(
            "core-01", "a login", 1e12, attempt, interval=0.0, cancelled=lambda: flag["cancelled"]
        )
    assert len(calls) == 2


def test_later_verbs_use_the_flags_the_lab_was_rendered_with(tmp_path: Path) -> None:
    from provisioner.config import Overrides, load_config
    from provisioner.lab import load_lab, remember_flags

    (tmp_path / "lab.yaml").write_text("num_instances: 5\n")
    up = load_lab(tmp_path, Overrides(num_instances=1, discovery="static"))
    remember_flags(up, Overrides(num_instances=1, discovery="static"), None)
    later = load_lab(tmp_path)
    assert later.num_instances == 1
    assert later.discovery == "static"
    assert load_lab(tmp_path, Overrides(num_instances=3)).num_instances == 3
    assert load_config(tmp_path).num_instances == 5


def _run(tmp_path: Path) -> Run:
    from provisioner.config import Overrides, build_config

    raw = {"name": "early", "subnet": "192.168.58.0/24", "num_instances": 2}
    return Run(build_config(raw, tmp_path, Overrides()), PlainProgress(io.StringIO()), "tcg")


def _done(value: NodeFacts | BaseException) -> Future[NodeFacts | BaseException]:
    future: Future[NodeFacts | BaseException] = Future()
    future.set_result(value)
    return future


def test_early_cluster_checks_start_once_every_node_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(tmp_path)
    seen: list[dict[str, str]] = []

    def check(machine_ids: dict[str, str]) -> str:
        seen.append(machine_ids)
        return "etcd 2/2; fleet 2 machines"

    monkeypatch.setattr(run, "check_cluster", check)
    ready = [_done(NodeFacts("aa", "running", ())), _done(NodeFacts("bb", "running", ()))]
    assert run._early_cluster(ready) == "etcd 2/2; fleet 2 machines"
    assert seen == [{"core-01": "aa", "core-02": "bb"}]

    # a node that failed: the nodes step reports it, the cluster is not checked
    failed = [_done(NodeFacts("aa", "running", ())), _done(LabError("core-02: no banner"))]
    assert run._early_cluster(failed) is None
    # abandoned (the boot failed): not checked either
    run.cancel.set()
    assert run._early_cluster(ready) is None
    assert len(seen) == 1


def test_lab_etcdctl_speaks_the_labs_etcdctl_api_to_every_member(tmp_path: Path) -> None:
    raw = {"num_instances": 4, "workers": 1, "subnet": "192.168.58.0/24", "etcdctl_api": 2}
    config = build_config(raw, tmp_path, Overrides())
    assert etcdctl_argv(config, ["set", "/message", "Hello"]) == [
        "env",
        "ETCDCTL_API=2",
        "etcdctl",
        "--endpoints=http://192.168.58.101:2379,http://192.168.58.102:2379,"
        "http://192.168.58.103:2379",
        "set",
        "/message",
        "Hello",
    ]
