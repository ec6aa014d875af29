"""docs/ci.md's commands are real: each `lab ...` line parses with the real click CLI,
each `pytest --lab-...` line with the plugin's options, and the scripts it runs exist.
Nothing is run: click only parses, and the pytest lines collect an empty directory."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from provisioner.cli import main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "docs" / "ci.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SEPARATORS = {"&&", "||", ";", "|"}
NO_TESTS_COLLECTED = 5


def shell_texts(markdown: str) -> Iterator[str]:
    """Every sh block, and every `run:` of every yaml block (a GitHub Actions workflow)."""
    for language, body in FENCE.findall(markdown):
        if language == "sh":
            yield body
        elif language == "yaml":
            yield from _runs(yaml.safe_load(body))


def _runs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                yield value
            else:
                yield from _runs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _runs(item)


def commands(text: str) -> Iterator[list[str]]:
    """Simple commands: continuations joined, comments, env assignments, sudo and
    redirections dropped, split at && || ; and pipes."""
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        skip_next = False
        for word in [*lexer, ";"]:
            if skip_next:
                skip_next = False
            elif word in SEPARATORS:
                if words:
                    yield words
                words = []
            elif word in (">", ">>") or re.fullmatch(r"\d?>>?", word):
                skip_next = True  # the redirection's target
            elif not words and (re.fullmatch(r"[A-Z_]+=.*", word) or word in ("sudo", "-E")):
                continue
            else:
                words.append(word)


def recipe_commands() -> list[list[str]]:
    return [argv for text in shell_texts(RECIPE.read_text()) for argv in commands(text)]


def parse_lab(args: list[str]) -> list[str]:
    """Parse ``lab ARGS`` as click would, down to the verb; the verb's path."""
    command: click.Command = main
    name: str = "lab"
    parent: click.Context | None = None
    path: list[str] = []
    while True:
        ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
        rest = click.Command.parse_args(command, ctx, list(args))
        if not isinstance(command, click.Group):
            return path
        resolved, sub, args = command.resolve_command(ctx, rest)
        assert resolved is not None
        assert sub is not None
        name, parent, command = resolved, ctx, sub
        path.append(resolved)


def test_the_helpers_find_commands_in_blocks_and_workflows() -> None:
    text = "A=1 lab -C x up --json > out.json  # why\nsudo ./s.sh && echo 'a # b' | tee f\n"
    assert list(commands(text)) == [
        ["lab", "-C", "x", "up", "--json"],
        ["./s.sh"],
        ["echo", "a # b"],
        ["tee", "f"],
    ]
    workflow = "```yaml\njobs: {a: {steps: [{run: 'lab status'}, {uses: x}]}}\n```\n"
    assert list(shell_texts(workflow)) == ["lab status"]
    assert parse_lab(["-C", "d", "snapshot", "rm", "clean"]) == ["snapshot", "rm"]
    with pytest.raises(click.UsageError):
        parse_lab(["up", "--snapshots", "clean"])
    with pytest.raises(click.UsageError):
        parse_lab(["verify", "--junit"])


def test_every_lab_command_in_the_recipe_parses() -> None:
    lab_lines = [argv for argv in recipe_commands() if argv[0] == "lab"]
    verbs = {tuple(parse_lab(argv[1:])) for argv in lab_lines}
    # the job the issue asks for: up from a snapshot, verify, logs, destroy, with JSON
    assert {("doctor",), ("box", "build"), ("up",), ("verify",), ("status",), ("logs",)} <= verbs
    assert ("destroy",) in verbs
    joined = [" ".join(argv) for argv in lab_lines]
    assert any("up --snapshot clean --json" in line for line in joined)
    assert any("up --accel tcg" in line for line in joined)
    assert any("verify --junit" in line and "--json" in line for line in joined)


def test_the_scripts_the_recipe_runs_exist_and_are_executable() -> None:
    scripts = {argv[0] for argv in recipe_commands() if argv[0].startswith("./scripts/")}
    assert scripts == {"./scripts/setup.sh", "./scripts/test.sh", "./scripts/install.sh"}
    for script in scripts:
        assert os.access(ROOT / script, os.X_OK), script


def test_every_pytest_line_in_the_recipe_parses_with_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    lines = [argv for argv in recipe_commands() if argv[0] == "pytest"]
    assert len(lines) >= 2
    for argv in lines:
        assert any(word.startswith("--lab-") for word in argv)
        lab_dir = pytester.path / argv[argv.index("--lab-dir") + 1]
        lab_dir.mkdir(exist_ok=True)
        (lab_dir / "lab.yaml").write_text("{}\n")
        tests = [w for w in argv[1:] if not w.startswith("-") and "/" in w and "=" not in w]
        for directory in tests:
            (pytester.path / directory).mkdir(parents=True, exist_ok=True)
        result = pytester.runpytest("-p", "provisioner.pytest_plugin", "--co", *argv[1:])
        assert result.ret == NO_TESTS_COLLECTED, (argv, result.stderr.str())
