"""Results, quoting, failure messages and the fan-out (with fake runners)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from provisioner.errors import RemoteError, WaitTimeout
from provisioner.remote import CommandResult, Runner, check_result, quote_argv
from provisioner.remote.fanout import raise_for_failures, run_all
from provisioner.remote.runner import describe_failure

pytestmark = pytest.mark.unit


class FakeRunner:
    """Answers with a fixed outcome; records what it ran and on which thread."""

    def __init__(
        self, name: str, outcome: CommandResult | Exception, barrier: threading.Barrier
    ) -> None:
        self.name = name
        self.outcome = outcome
        self.barrier = barrier
        self.ran: list[Sequence[str]] = []

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        self.ran.append(argv)
        # Every runner waits for all others: passes only if they run concurrently.
        self.barrier.wait(timeout=5)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_fake_runner_satisfies_the_protocol() -> None:
    assert isinstance(FakeRunner("a", CommandResult(0, "", ""), threading.Barrier(1)), Runner)


def test_result_flags() -> None:
    assert CommandResult(0, "", "").succeeded
    assert CommandResult(2, "", "").failed


def test_quote_argv_quotes_every_word() -> None:
    assert quote_argv(["echo", "a b", "it's", "$X"]) == "echo 'a b' 'it'\"'\"'s' '$X'"


def test_quote_argv_refuses_empty() -> None:
    with pytest.raises(ValueError, match="empty command"):
        quote_argv([])


def test_check_result_passes_success_through() -> None:
    ok = CommandResult(0, "fine", "")
    assert check_result("core-01", ["true"], ok) is ok


def test_failure_message_names_host_command_code_and_stderr_tail() -> None:
    stderr = "\n".join(f"line {i}" for i in range(30))
    message = describe_failure(
        "core-01", ["systemctl", "start", "etcd"], CommandResult(5, "", stderr)
    )
    assert message.startswith("core-01: `systemctl start etcd` exited with 5: line 20")
    assert message.endswith("line 29")
    with pytest.raises(RemoteError, match="exited with 5"):
        check_result("core-01", ["systemctl"], CommandResult(5, "", stderr))


def test_run_all_runs_concurrently_and_keeps_every_outcome() -> None:
    barrier = threading.Barrier(3)
    ok = CommandResult(0, "up\n", "")
    runners = [
        FakeRunner("core-01", ok, barrier),
        FakeRunner("core-02", CommandResult(1, "", "boom"), barrier),
        FakeRunner("core-03", WaitTimeout("core-03", "no answer"), barrier),
    ]
    outcomes = run_all(runners, ["uptime"])
    assert outcomes["core-01"] is ok
    assert outcomes["core-02"] == CommandResult(1, "", "boom")
    assert isinstance(outcomes["core-03"], WaitTimeout)
    assert all(r.ran == [["uptime"]] for r in runners)


def test_run_all_refuses_duplicate_names() -> None:
    barrier = threading.Barrier(1)
    same = [FakeRunner("x", CommandResult(0, "", ""), barrier)] * 2
    with pytest.raises(ValueError, match="unique"):
        run_all(same, ["true"])


def test_run_all_of_nothing() -> None:
    assert run_all([], ["true"]) == {}


def test_raise_for_failures_reports_all_failures_at_once() -> None:
    outcomes: dict[str, CommandResult | Exception] = {
        "core-01": CommandResult(0, "", ""),
        "core-02": CommandResult(1, "", "boom"),
        "core-03": WaitTimeout("core-03", "no answer"),
        "core-04": RuntimeError("bug"),
    }
    with pytest.raises(RemoteError) as failure:
        raise_for_failures(["uptime"], outcomes)
    text = str(failure.value)
    assert text.splitlines() == [
        "3 of 4 hosts failed:",
        "core-02: `uptime` exited with 1: boom",
        "core-03: no answer",
        "core-04: RuntimeError: bug",
    ]


def test_raise_for_failures_returns_results_when_all_succeeded() -> None:
    ok = CommandResult(0, "a", "")
    assert raise_for_failures(["x"], {"core-01": ok}) == {"core-01": ok}
