"""The agent ships to the guest: stdlib + PyYAML only, and boot units that call it right."""

from __future__ import annotations

import ast
import shlex
import sys
from pathlib import Path

import pytest

import provisioner.guest.cloudinit
from provisioner.guest.cloudinit.main import parse_args
from provisioner.guest.cloudinit.unitcheck import check_unit_text, sections

pytestmark = pytest.mark.unit

PACKAGE = Path(provisioner.guest.cloudinit.__file__).parent
UNITS = sorted((PACKAGE / "units").iterdir())


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    [*sorted(PACKAGE.glob("*.py")), PACKAGE.parent / "__init__.py"],
    ids=lambda path: path.name if path.parent == PACKAGE else "guest/__init__.py",
)
def test_only_stdlib_yaml_and_the_agent_itself(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top == "provisioner":
            assert name.startswith("provisioner.guest.cloudinit"), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top in ("__future__", "yaml"), (
                f"{path.name} imports {name}, which the guest does not have"
            )


def unit_values(text: str, key: str) -> list[str]:
    prefix = key + "="
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_units_are_well_formed(unit: Path) -> None:
    text = unit.read_text()
    assert check_unit_text(text, unit.suffix.lstrip(".")) == []
    assert "Unit" in sections(text)


AGENT_SERVICES = [u for u in UNITS if u.suffix == ".service" and u.name.startswith("coreos-")]


def test_the_early_keys_service_runs_beside_the_agent_on_the_same_drive() -> None:
    text = (PACKAGE / "units" / "lab-configdrive-keys.service").read_text()
    agent = (PACKAGE / "units" / "coreos-cloudinit-configdrive.service").read_text()
    assert unit_values(text, "Before") == []
    assert "lab-configdrive-keys" not in " ".join(unit_values(agent, "After"))
    assert unit_values(text, "Type") == ["oneshot"]
    (condition,) = unit_values(agent, "ConditionPathExists")
    assert unit_values(text, "ConditionPathExists") == [condition]
    (command,) = unit_values(text, "ExecStart")
    assert shlex.split(command) == ["/usr/bin/lab-configdrive-keys", condition]


@pytest.mark.parametrize("unit", AGENT_SERVICES, ids=lambda path: path.name)
def test_services_run_the_agent_with_flags_it_accepts(unit: Path) -> None:
    text = unit.read_text()
    assert unit_values(text, "Type") == ["oneshot"]
    assert unit_values(text, "EnvironmentFile") == ["-/etc/environment"]
    (command,) = unit_values(text, "ExecStart")
    program, *args = shlex.split(command)
    assert program == "/usr/bin/coreos-cloudinit"
    options = parse_args(args)
    assert options.from_file or options.from_configdrive
    assert not options.validate


def test_vagrant_path_starts_the_vagrant_service() -> None:
    text = (PACKAGE / "units" / "coreos-cloudinit-vagrant.path").read_text()
    service = (PACKAGE / "units" / "coreos-cloudinit-vagrant.service").read_text()
    (watched,) = unit_values(text, "PathExists")
    assert unit_values(text, "Unit") == ["coreos-cloudinit-vagrant.service"]
    assert unit_values(service, "ConditionFileNotEmpty") == [watched]
    assert f"--from-file={watched}" in unit_values(service, "ExecStart")[0]
