"""``lab ssh`` and ``lab exec``: how each passes its command, and the agent around ssh."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner import cli, operate
from provisioner.remote.login import (
    AGENT_SCRIPT,
    command_words,
    login_argv,
    remote_command_line,
    with_agent,
)
from provisioner.remote.runner import CommandResult

pytestmark = pytest.mark.unit

CONFIG = Path("/lab/.lab/ssh_config")
KEY = Path("/lab/.lab/ssh/id_ed25519")


def test_lab_ssh_joins_words_for_the_remote_shell_as_openssh_does() -> None:
    """`ssh host 'a | b'` and `ssh host a '|' b` send the same line: words joined by spaces."""
    assert remote_command_line(["echo a | wc -l"]) == "echo a | wc -l"
    assert remote_command_line(["echo", "a", "|", "wc", "-l"]) == "echo a | wc -l"
    argv = login_argv(CONFIG, "core-01", ["--", "ps aux", "|", "grep", "-c", "etcd"], KEY)
    assert argv[argv.index("core-01") :] == ["core-01", "--", "ps aux | grep -c etcd"]


def test_lab_ssh_forwards_an_agent_that_holds_the_lab_key_only() -> None:
    argv = login_argv(CONFIG, "core-01", [], KEY)
    assert argv == [
        "ssh-agent",
        "sh",
        "-c",
        AGENT_SCRIPT,
        str(KEY),
        "ssh",
        "-F",
        str(CONFIG),
        "-A",
        "core-01",
    ]
    assert with_agent(KEY, ["true"])[-2:] == [str(KEY), "true"]


def test_the_agent_script_adds_the_key_runs_ssh_and_kills_the_agent() -> None:
    steps = [step.strip() for step in AGENT_SCRIPT.split(";")]
    assert steps[0] == "trap : INT HUP"  # caught, not ignored: ssh must not inherit SIG_IGN
    assert steps[1:4] == ['if ssh-add -q "$0"', 'then "$@"', "status=$?"]
    assert steps[4:] == [
        "else status=255",
        "fi",
        'kill "$SSH_AGENT_PID" 2>/dev/null',
        'exit "$status"',
    ]


def test_command_words_drop_one_separator() -> None:
    assert command_words(["--", "ls", "--", "x"]) == ["ls", "--", "x"]
    assert command_words(["ls", "--", "x"]) == ["ls", "--", "x"]
    assert command_words([]) == []


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`lab exec`/`lab ssh` with the lab and the nodes replaced: what reaches operate."""
    found: dict[str, Any] = {}

    def exec_on(_lab: object, names: list[str], argv: list[str]) -> dict[str, object]:
        found["exec"] = (names, argv)
        return {name: CommandResult(0, "", "") for name in names}

    def ssh_argv(_lab: object, node: str, command: tuple[str, ...]) -> list[str]:
        found["ssh"] = (node, command)
        return ["true"]

    class Lab:
        nodes = (type("N", (), {"name": "core-01"})(), type("N", (), {"name": "core-02"})())

    monkeypatch.setattr(operate, "exec_on", exec_on)
    monkeypatch.setattr(operate, "ssh_argv", ssh_argv)
    monkeypatch.setattr(cli, "_load", lambda _ctx: Lab())
    monkeypatch.setattr(os, "execvp", lambda *_args: found.setdefault("execvp", _args))
    return found


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["core-01", "--", "sh", "-c", "a | b"], (["core-01"], ["sh", "-c", "a | b"])),
        (["core-01", "ls", "-l", "--", "x"], (["core-01"], ["ls", "-l", "--", "x"])),
        (["core-01", "--", "ls", "--", "x"], (["core-01"], ["ls", "--", "x"])),
        (["--all", "--", "hostname", "-f"], (["core-01", "core-02"], ["hostname", "-f"])),
    ],
)
def test_lab_exec_keeps_every_argument(
    seen: dict[str, Any], args: list[str], expected: tuple[list[str], list[str]]
) -> None:
    result = CliRunner().invoke(cli.main, ["exec", *args])
    assert result.exit_code == 0, result.output
    assert seen["exec"] == expected


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["core-01", "echo a | wc -l"], ("echo a | wc -l",)),
        (["core-01", "--", "ls", "-l", "--", "x"], ("--", "ls", "-l", "--", "x")),
        (["core-01", "uptime", "-p"], ("uptime", "-p")),
        (["core-01"], ()),
    ],
)
def test_lab_ssh_hands_every_word_after_the_node_on(
    seen: dict[str, Any], args: list[str], command: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(cli.main, ["ssh", *args])
    assert result.exit_code == 0, result.output
    assert seen["ssh"] == ("core-01", command)
    assert seen["execvp"] == ("true", ["true"])


def test_lab_fleetctl_runs_in_a_lab_ssh_session_with_each_argument_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`lab fleetctl ssh M "echo a; echo b"`: the node's fleetctl gets the line as one
    argument (and joins it for the far machine's shell, as fleet's ssh.go does)."""
    calls: list[tuple[str, list[str]]] = []

    class Node:
        name = "core-01"

    monkeypatch.setattr(operate, "pick_member", lambda _config: Node())

    def ssh_argv(_config: object, node: str, command: list[str]) -> list[str]:
        calls.append((node, command))
        return []

    monkeypatch.setattr(operate, "ssh_argv", ssh_argv)
    operate.fleetctl_argv(object(), ["ssh", "abc", "echo a; echo b"])  # type: ignore[arg-type]
    assert calls == [("core-01", ["fleetctl ssh abc 'echo a; echo b'"])]
