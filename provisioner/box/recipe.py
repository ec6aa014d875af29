"""Box recipes: ``boxes/NAME/recipe.yaml`` parsed into typed, validated data.

A recipe is data, not code. Two kinds exist:

``debootstrap``
    Build a bootable image from Debian's archive: the packages to install, the
    services to enable/disable, the users, a root-filesystem overlay directory
    (``files/`` next to the recipe), offline docker images, the disk size and
    the kernel command line.
``url``
    Fetch a ready ``.box`` from a URL and check its sha256.

Every error names the recipe file and the key path (``disk.size_gib``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from provisioner.errors import ConfigError

RECIPE_FILE = "recipe.yaml"

Kind = Literal["debootstrap", "url"]
Compression = Literal["zstd", "zlib"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_GENERATOR_RE = re.compile(r"^systemd-[a-z0-9-]+-generator$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|path|target|mount)$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ENTRY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_COMMAND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class DebianSource:
    """Where debootstrap takes the packages from."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    components: tuple[str, ...] = ("main",)


@dataclass(frozen=True)
class Services:
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    # systemd generators turned off (a /dev/null link in /etc/systemd/system-generators):
    # every boot and every daemon-reload runs each one, slowly under emulation
    mask_generators: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    shell: str = "/bin/bash"
    sudo: str | None = None  # a sudoers rule body, e.g. "ALL=(ALL) NOPASSWD:ALL"


@dataclass(frozen=True)
class DockerImage:
    """An image made at build time from the busybox binary inside the rootfs."""

    name: str
    tag: str
    busybox: str  # absolute path of the busybox binary inside the rootfs

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class GuestInstall:
    """How the project's guest software is installed into the image."""

    python_dir: str = "/usr/lib/python3/dist-packages"
    unit_dir: str = "/usr/lib/systemd/system"
    commands: tuple[tuple[str, str], ...] = ()  # (command name, "module:function")
    # units installed but not enabled although they have [Install]: cloud-config starts them
    leave_disabled: tuple[str, ...] = ()


@dataclass(frozen=True)
class Disk:
    size_gib: int = 8
    compression: Compression = "zstd"


@dataclass(frozen=True)
class Recipe:
    """One validated recipe. ``path`` is the recipe file; ``directory`` its folder."""

    name: str
    path: Path
    kind: Kind
    description: str = ""
    # kind: debootstrap
    debian: DebianSource = DebianSource()
    packages: tuple[str, ...] = ()
    build_packages: tuple[str, ...] = ()  # present while building, purged before packing
    initramfs_modules: tuple[str, ...] = ()
    services: Services = Services()
    users: tuple[User, ...] = ()
    overlay: str | None = None  # folder next to the recipe copied over the rootfs
    docker_images: tuple[DockerImage, ...] = ()
    guest: GuestInstall = GuestInstall()
    disk: Disk = Disk()
    kernel_cmdline: tuple[str, ...] = ()
    # kind: url
    url: str | None = None
    sha256: str | None = None

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def overlay_dir(self) -> Path | None:
        return self.directory / self.overlay if self.overlay else None


class _Checker:
    """Type and key checks that raise ConfigError naming the file and the key path."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=str(self.source), key=key or None, hint=hint)

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        for item in value:
            if not isinstance(item, str) or item not in allowed:
                close = difflib.get_close_matches(str(item), allowed, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
                )
                raise self.fail(_join(key, str(item)), "unknown key", hint)
        return value

    def string(self, value: Any, key: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"invalid value {value!r}", f"must match {pattern.pattern}")
        return value

    def strings(
        self, value: Any, key: str, pattern: re.Pattern[str] | None = None
    ) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return tuple(self.string(item, f"{key}[{i}]", pattern) for i, item in enumerate(value))

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"{value} is out of range", f"use {low}..{high}")
        return value

    def absolute(self, value: Any, key: str) -> str:
        text = self.string(value, key)
        path = PurePosixPath(text)
        if not path.is_absolute() or ".." in path.parts:
            raise self.fail(key, f"{text!r} is not an absolute path inside the image")
        return text


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


_TOP_KEYS = (
    "kind",
    "description",
    "debian",
    "packages",
    "build_packages",
    "initramfs_modules",
    "services",
    "users",
    "overlay",
    "docker_images",
    "guest",
    "disk",
    "kernel_cmdline",
    "url",
    "sha256",
)
_URL_KEYS = ("kind", "description", "url", "sha256")


def parse_recipe(raw: Any, path: Path, name: str | None = None) -> Recipe:
    """Validate a loaded YAML document; ``name`` defaults to the recipe's folder name."""
    check = _Checker(path)
    box_name = name or path.parent.name
    if not _NAME_RE.match(box_name):
        raise check.fail("", f"invalid box name {box_name!r}", "use lowercase letters, digits, -")
    top = check.mapping(raw, "", _TOP_KEYS)
    if not top:
        raise check.fail("", "the recipe is empty", "start with 'kind: debootstrap'")
    kind = top.get("kind", "debootstrap")
    if kind not in ("debootstrap", "url"):
        raise check.fail("kind", f"unknown kind {kind!r}", "one of: debootstrap, url")
    description = "" if top.get("description") is None else str(top["description"])
    if kind == "url":
        check.mapping(top, "", _URL_KEYS)
        url = check.string(top.get("url"), "url")
        if not re.match(r"^(https?|file)://", url):
            raise check.fail("url", f"unsupported URL {url!r}", "use http://, https:// or file://")
        sha = check.string(top.get("sha256"), "sha256", _SHA256_RE)
        return Recipe(
            name=box_name, path=path, kind="url", description=description, url=url, sha256=sha
        )
    for key in ("url", "sha256"):
        if key in top:
            raise check.fail(key, "only recipes of kind 'url' take this key")
    packages = check.strings(top.get("packages"), "packages", _PACKAGE_RE)
    if not packages:
        raise check.fail("packages", "a debootstrap recipe needs packages (a kernel at least)")
    overlay = top.get("overlay")
    if overlay is not None:
        overlay = check.string(overlay, "overlay")
        if PurePosixPath(overlay).is_absolute() or ".." in PurePosixPath(overlay).parts:
            raise check.fail("overlay", "must be a folder next to the recipe")
        if not (path.parent / overlay).is_dir():
            raise check.fail("overlay", f"folder {path.parent / overlay} does not exist")
    return Recipe(
        name=box_name,
        path=path,
        kind="debootstrap",
        description=description,
        debian=_parse_debian(check, top.get("debian")),
        packages=packages,
        build_packages=check.strings(top.get("build_packages"), "build_packages", _PACKAGE_RE),
        initramfs_modules=check.strings(
            top.get("initramfs_modules"), "initramfs_modules", re.compile(r"^[a-z0-9_-]+$")
        ),
        services=_parse_services(check, top.get("services")),
        users=_parse_users(check, top.get("users")),
        overlay=overlay,
        docker_images=_parse_images(check, top.get("docker_images")),
        guest=_parse_guest(check, top.get("guest")),
        disk=_parse_disk(check, top.get("disk")),
        kernel_cmdline=check.strings(
            top.get("kernel_cmdline"), "kernel_cmdline", re.compile(r"^[^\s'\"\\;]+$")
        ),
    )


def _parse_debian(check: _Checker, raw: Any) -> DebianSource:
    data = check.mapping(raw, "debian", ("suite", "mirror", "variant", "components"))
    default = DebianSource()
    mirror = check.string(data.get("mirror", default.mirror), "debian.mirror")
    if not re.match(r"^(https?|file)://\S+$", mirror):
        raise check.fail("debian.mirror", f"invalid mirror URL {mirror!r}")
    variant = data.get("variant", default.variant)
    if variant not in ("minbase", "buildd", "-"):
        raise check.fail("debian.variant", f"unknown variant {variant!r}", "use minbase")
    components = check.strings(
        data.get("components", list(default.components)), "debian.components", _SUITE_RE
    )
    return DebianSource(
        suite=check.string(data.get("suite", default.suite), "debian.suite", _SUITE_RE),
        mirror=mirror.rstrip("/"),
        variant=variant,
        components=components or default.components,
    )


def _parse_services(check: _Checker, raw: Any) -> Services:
    data = check.mapping(raw, "services", ("enable", "disable", "mask", "mask_generators"))
    return Services(
        enable=check.strings(data.get("enable"), "services.enable", _UNIT_RE),
        disable=check.strings(data.get("disable"), "services.disable", _UNIT_RE),
        mask=check.strings(data.get("mask"), "services.mask", _UNIT_RE),
        mask_generators=check.strings(
            data.get("mask_generators"), "services.mask_generators", _GENERATOR_RE
        ),
    )


def _parse_users(check: _Checker, raw: Any) -> tuple[User, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise check.fail("users", f"expected a list, got {type(raw).__name__}")
    users = []
    for i, item in enumerate(raw):
        key = f"users[{i}]"
        data = check.mapping(item, key, ("name", "groups", "shell", "sudo"))
        sudo = data.get("sudo")
        if sudo is not None:
            sudo = check.string(sudo, f"{key}.sudo")
            if "\n" in sudo:
                raise check.fail(f"{key}.sudo", "must be a single sudoers rule")
        users.append(
            User(
                name=check.string(data.get("name"), f"{key}.name", _USER_RE),
                groups=check.strings(data.get("groups"), f"{key}.groups", _USER_RE),
                shell=check.absolute(data.get("shell", "/bin/bash"), f"{key}.shell"),
                sudo=sudo,
            )
        )
    names = [user.name for user in users]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise check.fail(f"users[{i}].name", f"user {name!r} is listed twice")
    return tuple(users)


def _parse_images(check: _Checker, raw: Any) -> tuple[DockerImage, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise check.fail("docker_images", f"expected a list, got {type(raw).__name__}")
    images = []
    for i, item in enumerate(raw):
        key = f"docker_images[{i}]"
        data = check.mapping(item, key, ("name", "tag", "busybox"))
        if "busybox" not in data:
            raise check.fail(
                f"{key}.busybox", "missing", "name the busybox binary, e.g. /bin/busybox"
            )
        images.append(
            DockerImage(
                name=check.string(data.get("name"), f"{key}.name", _IMAGE_RE),
                tag=check.string(data.get("tag", "latest"), f"{key}.tag", _TAG_RE),
                busybox=check.absolute(data["busybox"], f"{key}.busybox"),
            )
        )
    return tuple(images)


def _parse_guest(check: _Checker, raw: Any) -> GuestInstall:
    data = check.mapping(raw, "guest", ("python_dir", "unit_dir", "commands", "leave_disabled"))
    default = GuestInstall()
    commands_raw = data.get("commands") or {}
    if not isinstance(commands_raw, Mapping):
        raise check.fail("guest.commands", "expected a mapping of command name to module:function")
    commands = []
    for command, target in commands_raw.items():
        command = str(command)
        key = f"guest.commands.{command}"
        if not _COMMAND_RE.match(command):
            raise check.fail(key, f"invalid command name {command!r}")
        commands.append(
            (command, check.string(target, key, _ENTRY_RE)),
        )
    return GuestInstall(
        python_dir=check.absolute(data.get("python_dir", default.python_dir), "guest.python_dir"),
        unit_dir=check.absolute(data.get("unit_dir", default.unit_dir), "guest.unit_dir"),
        commands=tuple(commands),
        leave_disabled=check.strings(data.get("leave_disabled"), "guest.leave_disabled", _UNIT_RE),
    )


def _parse_disk(check: _Checker, raw: Any) -> Disk:
    data = check.mapping(raw, "disk", ("size_gib", "compression"))
    default = Disk()
    compression = data.get("compression", default.compression)
    if compression not in ("zstd", "zlib"):
        raise check.fail("disk.compression", f"unknown compression {compression!r}", "zstd|zlib")
    return Disk(
        size_gib=check.integer(data.get("size_gib", default.size_gib), "disk.size_gib", 2, 2048),
        compression=compression,
    )


def load_recipe(path: Path) -> Recipe:
    """Read and validate one recipe file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the recipe: {exc.strerror}", path=str(path)) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", path=str(path), key=where) from exc
    return parse_recipe(raw, path)


def find_recipe(name: str, boxes_dir: Path | None = None) -> Recipe:
    """Load ``boxes/NAME/recipe.yaml`` from the shipped boxes folder (or ``boxes_dir``)."""
    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid box name {name!r}", hint="use lowercase letters, digits, -")
    if boxes_dir is None:
        from provisioner.resources import boxes_dir as shipped

        boxes_dir = shipped()
    path = boxes_dir / name / RECIPE_FILE
    if not path.is_file():
        known = sorted(p.parent.name for p in boxes_dir.glob(f"*/{RECIPE_FILE}"))
        raise ConfigError(
            f"no box recipe named {name!r} (looked for {path})",
            hint=f"known boxes: {', '.join(known) or 'none'}",
        )
    return load_recipe(path)
