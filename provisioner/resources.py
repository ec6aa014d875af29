"""Where the shipped templates, box recipes and Vagrantfile.j2 live.

In a checkout they sit at the top of the repository; in an installed package
``setup.py`` copies them to ``provisioner/data/``. Both are looked up the same way.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.errors import LabError

_PACKAGE = Path(__file__).resolve().parent


def data_root() -> Path:
    """The directory holding ``templates/``, ``boxes/`` and ``Vagrantfile.j2``."""
    for candidate in (_PACKAGE / "data", _PACKAGE.parent):
        if (candidate / "Vagrantfile.j2").is_file() and (candidate / "templates").is_dir():
            return candidate
    raise LabError(
        f"lab's templates are missing (looked in {_PACKAGE / 'data'} and {_PACKAGE.parent})",
        hint="reinstall lab: pip install --force-reinstall <lab checkout or wheel>",
    )


def templates_dir() -> Path:
    return data_root() / "templates"


def boxes_dir() -> Path:
    return data_root() / "boxes"


def vagrantfile_template() -> Path:
    return data_root() / "Vagrantfile.j2"


def guest_package_dir() -> Path:
    """The guest software (cloud-config agent, fleet) that goes into the box."""
    return _PACKAGE / "guest"
