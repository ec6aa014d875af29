"""The systemd side: systemctl argument lists, ``systemctl show`` parsing, the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.guest.fleet.errors import UnitManagerError
from provisioner.guest.fleet.model import SystemdState
from provisioner.guest.fleet.unitfile import parse_unit_file
from provisioner.guest.fleet.unitmanager import (
    NOT_FOUND,
    CommandResult,
    FakeUnitManager,
    SystemctlUnitManager,
    parse_systemctl_show,
)

pytestmark = pytest.mark.unit

PLAIN = parse_unit_file("[Unit]\nDescription=plain\n\n[Service]\nExecStart=/bin/true\n")
INSTALLABLE = parse_unit_file(
    "[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=hello.service\n"
)

# The shape of `systemctl show --property=... -- a b c`: one block per unit, blank lines between.
SHOW = """Id=hello.service
LoadState=loaded
ActiveState=active
SubState=running

Id=missing.service
LoadState=not-found
ActiveState=inactive
SubState=dead

Id=broken.service
LoadState=loaded
ActiveState=failed
SubState=failed
"""


SHOW_ARGV = ["systemctl", "show", "--property=Id,LoadState,ActiveState,SubState", "--"]


class Recorder:
    """Records systemctl argument lists and answers with canned results."""

    def __init__(self, stdout: str = "", returncode: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.stdout = stdout
        self.returncode = returncode

    def __call__(self, argv: list[str], timeout: float) -> CommandResult:
        assert timeout > 0
        self.calls.append(argv)
        return CommandResult(tuple(argv), self.returncode, self.stdout, "boom")


def test_parse_systemctl_show_blocks_in_order() -> None:
    names = ["hello.service", "missing.service", "broken.service"]
    assert parse_systemctl_show(SHOW, names) == {
        "hello.service": SystemdState("loaded", "active", "running"),
        "missing.service": SystemdState("not-found", "inactive", "dead"),
        "broken.service": SystemdState("loaded", "failed", "failed"),
    }
    assert parse_systemctl_show("", ["x.service"]) == {}


def test_systemctl_manager_links_units_and_uses_argument_lists(tmp_path: Path) -> None:
    runner = Recorder()
    runtime = tmp_path / "run-systemd"
    runtime.mkdir()
    manager = SystemctlUnitManager(
        str(tmp_path / "units"), runner=runner, runtime_directory=str(runtime)
    )
    manager.load("hello.service", PLAIN)
    manager.load("discovery.service", INSTALLABLE)
    manager.reload()
    manager.start("hello.service")
    manager.stop("hello.service")
    (runtime / "hello.service").symlink_to(tmp_path / "units" / "hello.service")
    manager.unload("hello.service")
    unit_file = tmp_path / "units" / "discovery.service"
    assert runner.calls == [
        ["systemctl", "link", "--runtime", "--force", str(tmp_path / "units" / "hello.service")],
        ["systemctl", "enable", "--runtime", "--force", str(unit_file)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "start", "--no-block", "hello.service"],
        ["systemctl", "stop", "--no-block", "hello.service"],
        [*SHOW_ARGV, "hello.service"],
        ["systemctl", "disable", "--runtime", "hello.service"],
        ["systemctl", "reset-failed", "hello.service"],
    ]
    assert unit_file.read_text() == INSTALLABLE.text
    assert oct(unit_file.stat().st_mode & 0o777) == "0o644"
    assert not (tmp_path / "units" / "hello.service").exists()
    assert not (runtime / "hello.service").is_symlink()
    assert manager.loaded_units() == {"discovery.service": INSTALLABLE.hash}


def test_unload_waits_for_the_queued_stop_then_resets_failed(tmp_path: Path) -> None:
    """fleet's removeUnit resets a failed unit; a stop still running is waited for first,
    so a container killed by its ExecStop leaves no failed unit behind."""
    answers = iter(["deactivating", "deactivating", "failed"])

    class Stopping(Recorder):
        def __call__(self, argv: list[str], timeout: float) -> CommandResult:
            if argv[1] == "show":
                self.stdout = f"Id=x.service\nLoadState=loaded\nActiveState={next(answers)}\n"
            return super().__call__(argv, timeout)

    runner = Stopping()
    manager = SystemctlUnitManager(str(tmp_path), runner=runner, runtime_directory=str(tmp_path))
    manager.unload("x.service")
    assert [argv[1] for argv in runner.calls] == ["show", "show", "show", "disable", "reset-failed"]


def test_systemctl_manager_user_mode_and_states(tmp_path: Path) -> None:
    runner = Recorder(stdout=SHOW)
    manager = SystemctlUnitManager(
        str(tmp_path), user=True, runner=runner, runtime_directory=str(tmp_path)
    )
    states = manager.states(["hello.service", "missing.service", "broken.service"])
    assert states["broken.service"].active_state == "failed"
    assert runner.calls == [
        [
            "systemctl",
            "--user",
            "show",
            "--property=Id,LoadState,ActiveState,SubState",
            "--",
            "hello.service",
            "missing.service",
            "broken.service",
        ]
    ]
    assert manager.states([]) == {}


def test_systemctl_failures_raise_with_the_command(tmp_path: Path) -> None:
    manager = SystemctlUnitManager(
        str(tmp_path), runner=Recorder(returncode=5), runtime_directory=str(tmp_path)
    )
    with pytest.raises(UnitManagerError, match=r"systemctl start --no-block x.service failed"):
        manager.start("x.service")
    # A failing disable during unload is tolerated; the file still goes.
    (tmp_path / "x.service").write_text("x")
    manager.unload("x.service")
    assert not (tmp_path / "x.service").exists()


def test_fake_manager_records_states_and_operations(tmp_path: Path) -> None:
    fake = FakeUnitManager(str(tmp_path / "units"))
    assert fake.states(["hello.service"]) == {"hello.service": NOT_FOUND}
    with pytest.raises(UnitManagerError, match="not found"):
        fake.start("hello.service")
    fake.load("hello.service", PLAIN)
    assert fake.states(["hello.service"])["hello.service"] == SystemdState(
        "loaded", "inactive", "dead"
    )
    fake.start("hello.service")
    assert fake.states(["hello.service"])["hello.service"] == SystemdState(
        "loaded", "active", "running"
    )
    assert fake.loaded_units() == {"hello.service": PLAIN.hash}
    # A new instance over the same directory sees the same state (fleetd restarts).
    again = FakeUnitManager(str(tmp_path / "units"))
    assert again.states(["hello.service"])["hello.service"].active_state == "active"
    again.stop("hello.service")
    again.unload("hello.service")
    again.reload()
    assert again.loaded_units() == {}
    ops = [
        line.split(" ", 1)[1]
        for line in (tmp_path / "units" / ".fake-systemd.log").read_text().splitlines()
    ]
    assert ops == [
        "load hello.service",
        "start hello.service",
        "stop hello.service",
        "unload hello.service",
        "daemon-reload -",
    ]
