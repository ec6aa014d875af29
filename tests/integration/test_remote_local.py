"""LocalRunner runs real processes on this machine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provisioner.errors import HostError, WaitTimeout
from provisioner.remote import LocalRunner, run_all

pytestmark = pytest.mark.integration


def test_output_exit_code_and_stderr() -> None:
    result = LocalRunner().run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (result.rc, result.stdout, result.stderr) == (4, "out\n", "err\n")


def test_arguments_are_not_interpreted_by_a_shell() -> None:
    words = ["a b", "$HOME", "`id`", "*"]
    assert LocalRunner().run(["printf", "%s\\n", *words]).stdout.splitlines() == words


def test_stdin_cwd_and_env(tmp_path: Path) -> None:
    runner = LocalRunner(cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "GREETING": "hi"})
    assert runner.run(["cat"], stdin="fed\n").stdout == "fed\n"
    assert runner.run(["pwd"]).stdout.strip() == str(tmp_path)
    assert runner.run(["sh", "-c", "echo $GREETING"]).stdout == "hi\n"


def test_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"did not finish within 0\.3s"):
        LocalRunner().run(["sleep", "10"], timeout=0.3)
    assert time.monotonic() - started < 5


def test_missing_program_is_a_host_error() -> None:
    with pytest.raises(HostError, match="no-such-program-here not found"):
        LocalRunner().run(["no-such-program-here"])


def test_upload_copies_and_sets_mode(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.write_text("data")
    LocalRunner().upload(source, str(tmp_path / "b"), mode=0o600)
    assert (tmp_path / "b").read_text() == "data"
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600


def test_run_all_runs_hosts_concurrently() -> None:
    runners = [LocalRunner(name=f"h{i}") for i in range(4)]
    started = time.monotonic()
    outcomes = run_all(runners, ["sleep", "1"])
    assert time.monotonic() - started < 3.5
    assert sorted(outcomes) == ["h0", "h1", "h2", "h3"]
    assert all(not isinstance(o, Exception) and o.rc == 0 for o in outcomes.values())
