"""The record of a running vagrant and the decision whether a process is still that
vagrant (provisioner.hypervisor.vagrantpid). The real vagrant left running by a killed
lab, found and stopped, is in tests/integration/test_vagrant_left_running.py."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from provisioner.background import read_json, write_json
from provisioner.hypervisor import vagrantpid
from provisioner.hypervisor.vagrantpid import (
    ProcessView,
    VagrantRecord,
    is_vagrant,
    left_by_lab,
    parse_record,
    parse_stat,
    same_vagrant,
)

pytestmark = pytest.mark.unit

RECORD = VagrantRecord(4242, 4242, 987654, "/labs/a", "vagrant up")
VAGRANT = ProcessView(
    4242, 4242, 987654, ("/usr/bin/ruby", "/usr/bin/vagrant", "up"), "/labs/a", True
)


def stat_line(comm: str, state: str = "S", pgrp: int = 4242, start: int = 987654) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
    return (
        f"4242 ({comm}) {state} 1 {pgrp} {pgrp} 0 -1 4194560 100 0 0 0 5 3 0 0 30 10 2 0 "
        f"{start} 123456 789 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0\n"
    )


def test_parse_stat_reads_state_group_and_start_time() -> None:
    assert parse_stat(stat_line("ruby")) == ("S", 4242, 987654)


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    assert parse_stat(stat_line("odd) name (x", state="Z", pgrp=7, start=3)) == ("Z", 7, 3)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("/usr/bin/ruby", "/usr/bin/vagrant", "up", "core-01"), True),
        (("/usr/bin/ruby3.1", "/usr/bin/vagrant", "destroy", "--force"), True),
        (("vagrant", "up"), True),
        (("/usr/bin/nice", "-n", "10", "vagrant"), False),  # nice execs: never seen so
        (("/usr/bin/ruby", "/srv/vagrant-tools/run.rb", "vagrant"), False),
        (("sleep", "600"), False),
        ((), False),
    ],
)
def test_is_vagrant(argv: tuple[str, ...], expected: bool) -> None:
    assert is_vagrant(argv) is expected


def test_the_recorded_vagrant_is_still_that_vagrant() -> None:
    assert same_vagrant(RECORD, VAGRANT)


@pytest.mark.parametrize(
    "change",
    [
        {"start": 987655},  # the pid reused by a later process
        {"pgid": 1},  # no longer leads its group
        {"argv": ("/usr/bin/python3", "-m", "http.server")},
        {"cwd": "/labs/b"},  # another lab's vagrant
        {"cwd": None},  # its directory cannot be read: not ours to stop
        {"pid": 4243},
    ],
)
def test_a_process_that_differs_from_the_record_is_not_that_vagrant(
    change: dict[str, object],
) -> None:
    assert not same_vagrant(RECORD, replace(VAGRANT, **change))  # type: ignore[arg-type]


def test_an_unrecorded_vagrant_is_lab_s_when_lab_drove_it_in_this_directory() -> None:
    assert left_by_lab(VAGRANT, "/labs/a")
    assert not left_by_lab(VAGRANT, "/labs/b")
    # the user's own `vagrant up` in the lab directory: lab did not start it
    assert not left_by_lab(replace(VAGRANT, lab_driven=False), "/labs/a")
    # a child of a vagrant (its group's leader is the vagrant to stop)
    assert not left_by_lab(replace(VAGRANT, pgid=4000), "/labs/a")


def test_a_record_reads_back() -> None:
    assert parse_record(asdict(RECORD)) == RECORD


@pytest.mark.parametrize(
    "document",
    [None, {}, {"pid": "x", "pgid": 1, "start": 1, "root": "/", "command": "vagrant"}],
)
def test_what_is_not_a_record_is_none(document: dict[str, object] | None) -> None:
    assert parse_record(document) is None


def test_the_verb_leaves_options_out() -> None:
    argv = ("/usr/bin/ruby", "/usr/bin/vagrant", "up", "--no-provision", "core-02")
    assert vagrantpid._verb(argv) == ("up", "core-02")


def test_records_of_ended_or_reused_pids_are_removed_and_nothing_is_stopped(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / ".lab"
    state_dir.mkdir()
    mine = vagrantpid.view(os.getpid())
    assert mine is not None
    # this very process under a recorded pid: a reused pid (not vagrant, another start)
    reused = VagrantRecord(os.getpid(), mine.pgid, mine.start - 1, str(tmp_path), "vagrant up")
    write_json(state_dir / vagrantpid.record_name(os.getpid()), asdict(reused))
    (state_dir / vagrantpid.record_name(1)).write_text("{half")
    assert vagrantpid.stop_left_running(state_dir, tmp_path) == []
    assert list(state_dir.glob(vagrantpid.RECORD_GLOB)) == []


def test_remember_writes_what_proc_says_and_forget_removes_it(tmp_path: Path) -> None:
    path = vagrantpid.remember(tmp_path / ".lab", os.getpid(), tmp_path, "vagrant up")
    assert path == tmp_path / ".lab" / f"vagrant.{os.getpid()}.pid"
    record = parse_record(read_json(path))
    mine = vagrantpid.view(os.getpid())
    assert mine is not None
    assert record == VagrantRecord(
        os.getpid(), mine.pgid, mine.start, str(tmp_path.resolve()), "vagrant up"
    )
    vagrantpid.forget(path)
    assert not path.exists()
