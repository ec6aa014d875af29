"""The guest-side fleet runs on the guest's bare python3: standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import provisioner.guest.fleet

pytestmark = pytest.mark.unit

PACKAGE = Path(provisioner.guest.fleet.__file__).parent
# Importing provisioner.guest.fleet runs these package initialisers too.
PARENTS = [PACKAGE.parent / "__init__.py", PACKAGE.parent.parent / "__init__.py"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    [*sorted(PACKAGE.glob("*.py")), *PARENTS],
    ids=lambda p: str(p.relative_to(PACKAGE.parents[2])),
)
def test_only_stdlib_and_guest_modules(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top == "provisioner":
            assert name.startswith("provisioner.guest"), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{path.name} imports {name}, which the guest does not have"
            )


def test_entry_points_exist() -> None:
    from provisioner.guest.fleet import fleetctl, fleetd

    assert callable(fleetd.main)
    assert callable(fleetctl.main)
