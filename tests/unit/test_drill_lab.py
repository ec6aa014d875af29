"""`lab drill` on the lab's side without a lab: where the delayed scenarios put
netem, the levers each fault pulls, and bad input refused before anything changes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from provisioner import cli
from provisioner.drill.plan import Fault
from provisioner.faults.plan import Lever
from provisioner.lifecycle import drill as lab_drill
from provisioner.lifecycle import faults as lab_faults
from provisioner.lifecycle import teardown
from provisioner.remote.runner import CommandResult

pytestmark = pytest.mark.unit


class ScriptedRunner:
    """Answers each command by its first two words; records what it ran."""

    name = "host"

    def __init__(self, answers: dict[str, CommandResult]) -> None:
        self.answers = answers
        self.ran: list[list[str]] = []

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        self.ran.append(list(argv))
        return self.answers.get(" ".join(argv[:3]), CommandResult(0, "", ""))

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_delayed_scenarios_run_in_the_guest_when_the_host_cannot_and_probe_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_ifb = CommandResult(2, "", "Error: Unknown device type.")
    host = ScriptedRunner({"ip link add": no_ifb})
    monkeypatch.setattr(lab_faults, "check_host", lambda config: None)
    levers: list[Lever | None] = []
    monkeypatch.setattr(lab_faults, "netem", lambda c, n, s, **kw: levers.append(kw["on"]))
    progress = Recorded()
    injector = lab_drill.LabInjector(cast(Any, None), cast(Any, progress), runner=host)
    assert injector.unavailable(Fault.DELAY) is None
    assert injector.unavailable(Fault.DELAY) is None
    injector.inject(Fault.DELAY, ["core-02"])
    injector.inject(Fault.DELAY, ["core-01"])
    assert [argv[:3] for argv in host.ran] == [["ip", "link", "add"]]  # one probe
    assert levers == [Lever.GUEST, Lever.GUEST]
    assert progress.details == [
        "in the guest (`ip link add ... type ifb` failed on this host: Error: Unknown device type.)"
    ]


def test_delayed_scenarios_stay_on_the_host_when_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    host = ScriptedRunner({})
    monkeypatch.setattr(lab_faults, "check_host", lambda config: None)
    progress = Recorded()
    injector = lab_drill.LabInjector(cast(Any, None), cast(Any, progress), runner=host)
    assert injector.unavailable(Fault.DELAY) is None
    assert injector.delay_on is Lever.HOST
    assert progress.details == ["on the host"]


class Recorded:
    """A progress display that keeps the details it was shown."""

    def __init__(self) -> None:
        self.details: list[str] = []

    def update(self, subject: str, phase: str, status: str, detail: str = "") -> None:
        self.details.append(detail)


def test_each_fault_pulls_the_labs_lever(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any, Any]] = []
    monkeypatch.setattr(teardown, "kill", lambda c, n, b: calls.append(("kill", n, None)))
    monkeypatch.setattr(teardown, "start", lambda c, n, p, b: calls.append(("start", n, None)))
    monkeypatch.setattr(
        lab_faults,
        "partition",
        lambda c, n, **kw: calls.append(("partition", n, kw["allow_quorum_loss"])),
    )
    monkeypatch.setattr(lab_faults, "netem", lambda c, n, s, **kw: calls.append(("netem", n, s)))
    monkeypatch.setattr(lab_faults, "heal", lambda c, n, **kw: calls.append(("heal", n, None)))

    class Config:
        members = ("core-01", "core-02", "core-03")

    injector = lab_drill.LabInjector(Config(), progress=None)  # type: ignore[arg-type]
    injector.inject(Fault.KILL, ["core-02"])
    injector.recover(Fault.KILL, ["core-02"])
    injector.inject(Fault.PARTITION, ["core-01"])
    injector.inject(Fault.PARTITION, ["core-01", "core-02"])
    injector.recover(Fault.PARTITION, ["core-01", "core-02"])
    injector.inject(Fault.DELAY, ["core-03"])
    assert calls == [
        ("kill", ["core-02"], None),
        ("start", ["core-02"], None),
        ("partition", ["core-01"], False),
        ("partition", ["core-01", "core-02"], True),  # a quorum: the drill asks for it
        ("heal", ["core-01", "core-02"], None),
        ("netem", "core-03", lab_drill.DELAY),
    ]


def test_an_unknown_scenario_fails_before_the_lab_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lab(*args: object, **kwargs: object) -> None:
        raise AssertionError("the lab was loaded")

    monkeypatch.setattr(cli, "_load", no_lab)
    result = CliRunner().invoke(cli.main, ["drill", "leader-killed", "leader-melted"])
    assert result.exit_code == 2
    assert "no drill scenario 'leader-melted'" in result.output
    assert "hint: scenarios: follower-killed, leader-killed" in result.output
