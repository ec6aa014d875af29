"""Install the project's guest software (``provisioner/guest/``) into an image tree.

Generic over what exists: the package is copied as it is, a wrapper is made
for each configured command whose module exists (others are reported and
skipped), every unit file under ``provisioner/guest/*/units/`` is
installed; those with an ``[Install]`` section are enabled, except the ones the
recipe leaves to cloud-config (``guest.leave_disabled``); every drop-in
``*/units/<unit>.d/*.conf`` goes beside the units (e.g. flannel's
docker.service.d/40-flannel.conf); and every udev rule
under ``provisioner/guest/*/udev/`` goes to ``UDEV_RULES_DIR``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from provisioner.box.buildlog import BuildLog
from provisioner.box.cache import tree_hash
from provisioner.box.recipe import GuestInstall
from provisioner.box.rootfs import inside, write_file

UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".target",
)
UDEV_RULES_DIR = "/usr/lib/udev/rules.d"
PACKAGE_INIT = b'"""lab: the guest side (installed into the box by `lab box build`)."""\n'


def guest_source() -> Path:
    from provisioner.resources import guest_package_dir

    return guest_package_dir()


def guest_hash(source: Path | None = None) -> str:
    """The part of a box's cache key that covers the guest software."""
    return tree_hash(source or guest_source())


@dataclass(frozen=True)
class UnitFile:
    name: str
    source: Path
    enable: bool  # has an [Install] section and can be enabled as it is


@dataclass(frozen=True)
class GuestPlan:
    """What :func:`install` will do, decided from the source tree alone."""

    commands: tuple[tuple[str, str], ...]  # (command, "module:function") whose module exists
    missing_commands: tuple[tuple[str, str], ...]
    units: tuple[UnitFile, ...]
    udev_rules: tuple[Path, ...] = ()
    drop_ins: tuple[tuple[str, Path], ...] = ()  # ("docker.service.d/40-x.conf", source)


def has_install_section(text: str) -> bool:
    """True if a unit file has an ``[Install]`` section with at least one setting."""
    in_install = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            in_install = line == "[Install]"
            continue
        if in_install and "=" in line:
            return True
    return False


def can_enable(name: str, text: str) -> bool:
    """Enable-able as shipped: an [Install] section, and a template only with DefaultInstance."""
    if not has_install_section(text):
        return False
    if re.search(r"@\.[a-z]+$", name):
        return re.search(r"^\s*DefaultInstance\s*=\s*\S", text, re.MULTILINE) is not None
    return True


def module_file(source: Path, module: str) -> Path | None:
    """The file of ``provisioner.guest.x.y`` inside ``source`` (provisioner/guest), if any."""
    parts = module.split(".")
    if parts[:2] != ["provisioner", "guest"]:
        return None
    base = source.joinpath(*parts[2:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def plan(source: Path, install: GuestInstall) -> GuestPlan:
    commands: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    for command, target in install.commands:
        module = target.partition(":")[0]
        (commands if module_file(source, module) else missing).append((command, target))
    units = []
    for path in sorted(source.glob("*/units/*")):
        if path.is_file() and path.name.endswith(UNIT_SUFFIXES):
            text = path.read_text(encoding="utf-8")
            enable = can_enable(path.name, text) and path.name not in install.leave_disabled
            units.append(UnitFile(path.name, path, enable))
    rules = tuple(path for path in sorted(source.glob("*/udev/*.rules")) if path.is_file())
    drop_ins = tuple(
        (f"{path.parent.name}/{path.name}", path)
        for path in sorted(source.glob("*/units/*.d/*.conf"))
        if path.is_file() and path.parent.name[: -len(".d")].endswith(UNIT_SUFFIXES)
    )
    return GuestPlan(tuple(commands), tuple(missing), tuple(units), rules, drop_ins)


def wrapper_script(command: str, target: str) -> str:
    module, _, function = target.partition(":")
    return (
        "#!/usr/bin/python3\n"
        f'"""{command}: lab guest software ({target})."""\n'
        "import sys\n\n"
        f"from {module} import {function}\n\n"
        f"sys.exit({function}())\n"
    )


def install(
    root: Path, settings: GuestInstall, log: BuildLog, source: Path | None = None
) -> GuestPlan:
    """Copy the guest package, write command wrappers, install and enable units."""
    src = source or guest_source()
    decided = plan(src, settings)
    package = inside(root, f"{settings.python_dir}/provisioner")
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    write_file(root, f"{settings.python_dir}/provisioner/__init__.py", PACKAGE_INIT)
    shutil.copytree(
        src,
        package / "guest",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*"),
    )
    for command, target in decided.commands:
        write_file(root, f"/usr/bin/{command}", wrapper_script(command, target).encode(), 0o755)
    for command, target in decided.missing_commands:
        log.warning(f"no /usr/bin/{command}: {target.partition(':')[0]} is not in {src}")
    for unit in decided.units:
        write_file(root, f"{settings.unit_dir}/{unit.name}", unit.source.read_bytes())
    for name, path in decided.drop_ins:
        write_file(root, f"{settings.unit_dir}/{name}", path.read_bytes())
    for rule in decided.udev_rules:
        write_file(root, f"{UDEV_RULES_DIR}/{rule.name}", rule.read_bytes())
    enabled = [unit.name for unit in decided.units if unit.enable]
    if enabled:
        log.chroot(root, "systemctl", "enable", *enabled, what="systemctl enable (guest units)")
    log.chroot(
        root,
        "python3",
        "-m",
        "compileall",
        "-q",
        f"{settings.python_dir}/provisioner",
        what="compileall",
    )
    log.info(
        f"guest software: {len(decided.commands)} commands, {len(decided.units)} units "
        f"({len(enabled)} enabled), {len(decided.udev_rules)} udev rules"
    )
    return decided
