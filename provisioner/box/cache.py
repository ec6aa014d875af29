"""Where built boxes live and how a build is recognised as already done.

``$XDG_CACHE_HOME/lab`` (default ``~/.cache/lab``) holds:

``boxes/<name>-<key12>/``
    one finished build: ``box.img`` (compressed qcow2), ``metadata.json``,
    ``Vagrantfile``, ``<name>.box`` (the tarball added to Vagrant),
    ``build.json`` (what went in) and ``build.log``.
``rootfs/<name>-<key12>/root/``
    the configured Debian tree a box is made from. It depends on the recipe
    only, so changing the guest software re-packs the image without re-running
    debootstrap.
``debs/``
    debootstrap's package cache.
``tmp/``
    builds in progress. Finished work is renamed into place, so whatever is in
    ``tmp/`` when no build holds the lock is debris and is removed.
``logs/``
    logs of failed builds.

The key of a box hashes the recipe (parsed form and every file of its folder),
the guest software (``provisioner/guest/``) and the builder's format version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from provisioner.box.recipe import Recipe
from provisioner.errors import BoxError
from provisioner.locks import file_lock

# Bump when the builder's output changes for the same inputs.
ROOTFS_FORMAT = 1
BOX_FORMAT = 1

KEY_LENGTH = 12
_SKIP_NAMES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def cache_root(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".cache")
    return Path(base) / "lab"


def _skipped(path: Path) -> bool:
    return path.name in _SKIP_NAMES or path.name.endswith(_SKIP_SUFFIXES)


def tree_hash(root: Path) -> str:
    """sha256 over every file's relative path, type, exec bit and content (or link target).

    Caches and compiled files (``__pycache__``, ``*.pyc``) are left out, so
    running the code does not change its hash.
    """
    digest = hashlib.sha256()
    if not root.exists():
        digest.update(b"missing")
        return digest.hexdigest()
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(Path(d)))
        base = Path(dirpath)
        entries.extend(base / d for d in dirnames if (base / d).is_symlink())
        entries.extend(base / f for f in filenames if not _skipped(Path(f)))
    for path in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(f"L {rel} -> {path.readlink()}\0".encode())
            continue
        mode = path.stat().st_mode
        digest.update(f"F {rel} {'x' if mode & 0o111 else '-'}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _recipe_fields(recipe: Recipe, *, exclude: tuple[str, ...]) -> dict[str, Any]:
    data = asdict(recipe)
    data.pop("path")
    for key in exclude:
        data.pop(key)
    return data


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# Fields used only when packing the image; changing them keeps the rootfs.
_BOX_ONLY_FIELDS = ("guest", "disk", "kernel_cmdline", "description")


def rootfs_key(recipe: Recipe) -> str:
    """Identity of the configured Debian tree: recipe minus packing details, overlay files."""
    overlay = recipe.overlay_dir
    return _digest(
        {
            "format": ROOTFS_FORMAT,
            "recipe": _recipe_fields(recipe, exclude=_BOX_ONLY_FIELDS),
            "overlay": tree_hash(overlay) if overlay else None,
        }
    )


def box_key(recipe: Recipe, guest_hash: str) -> str:
    """Identity of a finished box: the rootfs, the packing details and the guest software."""
    return _digest(
        {
            "format": BOX_FORMAT,
            "rootfs": rootfs_key(recipe),
            "recipe": {key: asdict(recipe)[key] for key in _BOX_ONLY_FIELDS},
            "guest": guest_hash,
        }
    )


def url_key(recipe: Recipe) -> str:
    return _digest({"format": BOX_FORMAT, "url": recipe.url, "sha256": recipe.sha256})


def entry_name(name: str, key: str) -> str:
    return f"{name}-{key[:KEY_LENGTH]}"


@dataclass(frozen=True)
class CachePaths:
    root: Path

    @property
    def boxes(self) -> Path:
        return self.root / "boxes"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock(self) -> Path:
        return self.root / "build.lock"

    def box_dir(self, name: str, key: str) -> Path:
        return self.boxes / entry_name(name, key)

    def rootfs_dir(self, name: str, key: str) -> Path:
        return self.rootfs / entry_name(name, key)

    def make(self) -> None:
        for path in (self.boxes, self.rootfs, self.debs, self.tmp, self.logs):
            path.mkdir(parents=True, exist_ok=True)


def build_lock(paths: CachePaths, timeout: float) -> AbstractContextManager[None]:
    """One build at a time per cache; waits up to ``timeout`` seconds for another to finish."""
    return file_lock(
        paths.lock,
        "the box build",
        timeout,
        error=BoxError,
        hint="another box build is running: wait for it to finish, or stop it and build again",
    )


def mounts_under(path: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    base = os.path.realpath(path)
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if point == base or point.startswith(base + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount anything left mounted below ``path`` (an interrupted debootstrap), then delete."""
    if not path.exists() and not path.is_symlink():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", str(point)], check=False, capture_output=True)
    if mounts_under(path):
        raise BoxError(f"cannot unmount everything below {path}", hint="umount it by hand")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def clean_debris(paths: CachePaths) -> list[Path]:
    """Remove unfinished builds. Call only while holding :func:`build_lock`."""
    removed = []
    if paths.tmp.is_dir():
        for child in sorted(paths.tmp.iterdir()):
            remove_tree(child)
            removed.append(child)
    for folder in (paths.boxes, paths.rootfs):
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name.startswith("."):  # half-renamed leftovers
                    remove_tree(child)
                    removed.append(child)
    return removed


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total
