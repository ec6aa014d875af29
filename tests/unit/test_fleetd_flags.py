"""fleetd's command line as Go's flag package parses it for fleet (fleetd/fleetd.go Main)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.fleetd import (
    FlagError,
    check_config_path,
    main,
    parse_flags,
    usage,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], (None, False)),
        (["-config", "/etc/f.conf"], ("/etc/f.conf", False)),
        (["--config=/etc/f.conf"], ("/etc/f.conf", False)),
        (["-config=/a", "-config", "/b"], ("/b", False)),
        (["-version"], (None, True)),
        (["--version"], (None, True)),
        (["-version=false"], (None, False)),
        (["version"], (None, True)),
        (["-config", "x", "--", "version"], ("x", True)),
    ],
)
def test_flags_as_go_parses_them(argv: list[str], expected: tuple[str | None, bool]) -> None:
    assert parse_flags(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message", "status"),
    [
        (["-x"], "flag provided but not defined: -x", 2),
        (["-config"], "flag needs an argument: -config", 2),
        (["-version=maybe"], 'invalid boolean value "maybe" for -version: parse error', 2),
        (["---config=x"], "bad flag syntax: ---config=x", 2),
        (["start"], "takes no arguments. Did you mean to invoke fleetctl instead?", 1),
    ],
)
def test_refused_command_lines(argv: list[str], message: str, status: int) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags(argv)
    assert (str(caught.value), caught.value.status) == (message, status)


def test_usage_is_fleets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-nope"]) == 2
    err = capsys.readouterr().err
    assert err == "flag provided but not defined: -nope\n" + usage("fleetd")
    assert usage("fleetd").startswith(
        "fleetd is the server component of fleet, a simple orchestration system for "
        "scheduling systemd units in a cluster.\nUsage of fleetd:\n  -config string\n"
    )
    assert main(["run"]) == 1
    assert capsys.readouterr().err.startswith(
        "fleetd takes no arguments. Did you mean to invoke fleetctl instead?\n"
    )


def test_version_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["-version"], ["--version"], ["version"]):
        assert main(argv) == 0
        assert capsys.readouterr().out == "fleetd version 1.0.0\n"


def test_an_unusable_config_file_is_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.conf"
    with pytest.raises(FleetError, match=r"Unable to use config file .*no such file"):
        check_config_path(str(missing))
    with pytest.raises(FleetError, match="is a directory, not a file"):
        check_config_path(str(tmp_path))
    assert main(["-config", str(missing)]) == 1
    assert "fleetd: error: Unable to use config file" in capsys.readouterr().err
