"""``lab box build`` and ``lab box list``: build (or fetch) a box once, reuse it after.

A build runs in ``<cache>/tmp/`` and is renamed into ``<cache>/boxes/`` when it
is complete, so a box directory either is whole or does not exist; anything
an interrupted build leaves in ``tmp/`` is removed by the next build (under the
build lock, so never while another build uses it). With nothing changed,
:func:`build_box` only hashes the recipe and the guest software and returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.box import dockerimage, guest, image, package, rootfs
from provisioner.box.buildlog import BuildLog, Reporter, null_reporter
from provisioner.box.cache import (
    CachePaths,
    box_key,
    build_lock,
    cache_root,
    clean_debris,
    entry_name,
    remove_tree,
    rootfs_key,
    url_key,
)
from provisioner.box.recipe import Recipe, find_recipe
from provisioner.errors import BoxError, LabError

BUILD_INFO = "build.json"
BOX_IMAGE = "box.img"
LOCK_TIMEOUT = 3600.0
DOWNLOAD_TIMEOUT = 600.0
KEEP_BUILDS = 2  # per recipe: the new build and the one before it


@dataclass(frozen=True)
class BuiltBox:
    """A finished box in the cache."""

    recipe: str
    key: str
    directory: Path
    vagrant_name: str
    size_bytes: int  # of box.img (compressed qcow2)
    virtual_size: int  # bytes
    created: str  # ISO 8601, UTC
    cached: bool = False  # True when returned without building

    @property
    def image(self) -> Path:
        return self.directory / BOX_IMAGE

    @property
    def box_file(self) -> Path:
        return self.directory / f"{self.recipe}.box"

    @property
    def log(self) -> Path:
        return self.directory / "build.log"

    @property
    def added(self) -> bool:
        return package.is_added(self.vagrant_name)


def current_key(recipe: Recipe) -> str:
    """The cache key the recipe (and, for debootstrap, the guest software) gives now."""
    if recipe.kind == "url":
        return url_key(recipe)
    return box_key(recipe, guest.guest_hash())


def read_built(directory: Path, *, cached: bool = False) -> BuiltBox | None:
    """A cache entry from its build.json, or None if it is not a finished box."""
    try:
        info = json.loads((directory / BUILD_INFO).read_text())
        return BuiltBox(
            recipe=info["recipe"],
            key=info["key"],
            directory=directory,
            vagrant_name=info["vagrant_name"],
            size_bytes=(directory / BOX_IMAGE).stat().st_size,
            virtual_size=int(info["virtual_size"]),
            created=info["created"],
            cached=cached,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_boxes(cache: Path | None = None) -> list[BuiltBox]:
    """Every finished box in the cache, newest first."""
    paths = CachePaths(cache or cache_root())
    if not paths.boxes.is_dir():
        return []
    found = [read_built(child) for child in paths.boxes.iterdir() if not child.name.startswith(".")]
    return sorted((b for b in found if b), key=lambda b: b.created, reverse=True)


def build_box(
    name: str = "default",
    *,
    force: bool = False,
    reporter: Reporter = null_reporter,
    cache: Path | None = None,
    boxes_dir: Path | None = None,
    add_to_vagrant: bool = True,
    lock_timeout: float = LOCK_TIMEOUT,
) -> BuiltBox:
    """Build boxes/NAME (or fetch it, for kind ``url``) unless the cache has it already.

    Returns the cached box when recipe and guest software are unchanged. With
    ``add_to_vagrant`` the box is also added to Vagrant (once).
    """
    recipe = find_recipe(name, boxes_dir)
    paths = CachePaths(cache or cache_root())
    key = current_key(recipe)
    target = paths.box_dir(recipe.name, key)
    if not force:
        built = read_built(target, cached=True)
        if built is not None:
            if add_to_vagrant and not built.added:
                with build_lock(paths, lock_timeout):
                    _add_to_vagrant(built, reporter)
            return built
    with build_lock(paths, lock_timeout):
        paths.make()
        clean_debris(paths)
        if not force:  # another process may have built it while we waited for the lock
            built = read_built(target, cached=True)
            if built is not None:
                if add_to_vagrant and not built.added:
                    _add_to_vagrant(built, reporter)
                return built
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log = BuildLog(
            paths.logs / f"{entry_name(recipe.name, key)}-{stamp}.log", reporter, recipe.name
        )
        try:
            if recipe.kind == "url":
                built = _fetch(recipe, key, paths, log)
            else:
                built = _build(recipe, key, paths, log, force=force)
        finally:
            log.close()
        with contextlib.suppress(OSError):
            shutil.move(log.path, built.directory / "build.log")
        if add_to_vagrant:
            _add_to_vagrant(built, reporter)
        _prune(paths, recipe.name, keep=built.directory)
        return built


def _add_to_vagrant(built: BuiltBox, reporter: Reporter) -> None:
    log = BuildLog(built.directory / "vagrant.log", reporter, built.recipe)
    try:
        with log.step("vagrant", f"vagrant box add {built.vagrant_name}"):
            if not built.box_file.is_file():
                package.pack(built.directory, built.box_file)
            package.add(built.vagrant_name, built.box_file, log.path)
    finally:
        log.close()


def _build(recipe: Recipe, key: str, paths: CachePaths, log: BuildLog, *, force: bool) -> BuiltBox:
    started = time.monotonic()
    timings: dict[str, float] = {}
    rkey = rootfs_key(recipe)
    rdir = paths.rootfs_dir(recipe.name, rkey)
    if force or not (rdir / "done").is_file():
        step_started = time.monotonic()
        _build_rootfs(recipe, rdir, paths, log)
        timings["rootfs"] = time.monotonic() - step_started
    else:
        log.info(f"reusing the configured Debian tree {rdir}")
    work = Path(tempfile.mkdtemp(prefix=f"{entry_name(recipe.name, key)}-", dir=paths.tmp))
    try:
        root = work / "root"
        with log.step("copy", "copy the Debian tree"):
            log.run(["cp", "-a", "--reflink=auto", str(rdir / "root"), str(root)], timeout=900)
        with log.step("guest", "install lab's guest software"):
            plan = guest.install(root, recipe.guest, log)
        fs_uuid = image.filesystem_uuid(key)
        image.write_boot_config(root, fs_uuid, recipe.kernel_cmdline)
        rootfs.clean(root)
        problems = rootfs.hygiene_problems(root)
        if problems:
            raise BoxError(
                "the image is not clean: " + "; ".join(problems), hint=f"log: {log.path}"
            )
        out = work / "box"
        out.mkdir()
        raw = work / "disk.raw"
        with log.step("disk", f"make a {recipe.disk.size_gib} GiB disk (ext4 + GRUB)"):
            image.make_raw_disk(
                root,
                raw,
                recipe.disk.size_gib,
                fs_uuid,
                image.disk_signature(key),
                rdir / rootfs.BOOTLOADER_DIR,
                log,
            )
            remove_tree(root)
        with log.step("compress", f"compress the disk ({recipe.disk.compression} qcow2)"):
            step_started = time.monotonic()
            image.compress(raw, out / BOX_IMAGE, recipe.disk.compression, log)
            timings["compress"] = time.monotonic() - step_started
            raw.unlink()
        extra = {
            "rootfs_key": rkey,
            "guest_hash": guest.guest_hash(),
            "guest_commands": [c for c, _ in plan.commands],
            "guest_missing_commands": [c for c, _ in plan.missing_commands],
            "guest_units": [u.name for u in plan.units],
            "guest_units_enabled": [u.name for u in plan.units if u.enable],
            "filesystem_uuid": fs_uuid,
            "kernel_cmdline": list(recipe.kernel_cmdline),
        }
        timings["total"] = time.monotonic() - started
        return _finish(recipe, key, out, paths, log, extra | {"seconds": timings})
    finally:
        remove_tree(work)


def _build_rootfs(recipe: Recipe, rdir: Path, paths: CachePaths, log: BuildLog) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{rdir.name}-rootfs-", dir=paths.tmp))
    try:
        root = work / "root"
        with log.step(
            "debootstrap", f"debootstrap {recipe.debian.suite} ({len(recipe.packages)} packages)"
        ):
            rootfs.debootstrap(recipe, root, paths.debs, log)
        with log.step("configure", "configure the image (users, services, docker images, GRUB)"):
            rootfs.configure(recipe, root, work / rootfs.BOOTLOADER_DIR, log)
        (work / "done").write_text(datetime.now(UTC).isoformat() + "\n")
        _replace_dir(work, rdir)
    finally:
        remove_tree(work)


def _replace_dir(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing target is moved aside first, then removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    source.rename(target)
    if old is not None:
        remove_tree(old)


def _finish(
    recipe: Recipe,
    key: str,
    out: Path,
    paths: CachePaths,
    log: BuildLog,
    extra: dict[str, Any],
) -> BuiltBox:
    """Write metadata.json, the Vagrantfile and the .box into ``out``, then commit it."""
    with log.step("package", "write metadata.json, Vagrantfile and the .box"):
        size = image.virtual_size(out / BOX_IMAGE)
        (out / "metadata.json").write_text(package.metadata_json(size))
        (out / "Vagrantfile").write_text(package.BOX_VAGRANTFILE)
        package.pack(out, out / f"{recipe.name}.box")
    return _commit(recipe, key, out, paths, log, extra)


def _commit(
    recipe: Recipe,
    key: str,
    out: Path,
    paths: CachePaths,
    log: BuildLog,
    extra: dict[str, Any],
) -> BuiltBox:
    """Write build.json (last, it marks a finished box) and rename ``out`` into the cache."""
    info = {
        "recipe": recipe.name,
        "recipe_path": str(recipe.path),
        "kind": recipe.kind,
        "key": key,
        "vagrant_name": package.vagrant_box_name(recipe.name, key),
        "virtual_size": image.virtual_size(out / BOX_IMAGE),
        "size": (out / BOX_IMAGE).stat().st_size,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    } | extra
    (out / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    target = paths.box_dir(recipe.name, key)
    _replace_dir(out, target)
    built = read_built(target)
    if built is None:
        raise BoxError(f"the finished box in {target} cannot be read back", hint=f"log: {log.path}")
    log.info(f"box {built.vagrant_name}: {built.size_bytes / 1e6:.0f} MB in {target}")
    return built


def _fetch(recipe: Recipe, key: str, paths: CachePaths, log: BuildLog) -> BuiltBox:
    """Kind ``url``: download the .box, check its sha256, unpack it into the cache."""
    if recipe.url is None or recipe.sha256 is None:
        raise BoxError(f"{recipe.path}: a url recipe needs url and sha256")
    work = Path(tempfile.mkdtemp(prefix=f"{entry_name(recipe.name, key)}-", dir=paths.tmp))
    try:
        out = work / "box"
        out.mkdir()
        box_file = out / f"{recipe.name}.box"
        with log.step("download", f"fetch {recipe.url}"):
            digest = _download(recipe.url, box_file, log)
        if digest != recipe.sha256:
            raise BoxError(
                f"{recipe.url}: sha256 is {digest}, the recipe expects {recipe.sha256}",
                hint=f"check the URL, or update sha256 in {recipe.path}",
            )
        with log.step("unpack", "check and unpack the box"):
            _unpack(box_file, out, recipe)
        return _commit(recipe, key, out, paths, log, {"url": recipe.url, "sha256": recipe.sha256})
    finally:
        remove_tree(work)


def _download(url: str, target: Path, log: BuildLog) -> str:
    digest = hashlib.sha256()
    done = 0
    next_report = 0
    try:
        with (
            # the recipe's URL is checked to be http(s) or file:// when it is parsed
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,  # noqa: S310
            target.open("wb") as handle,
        ):
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(1 << 20):
                handle.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if done >= next_report:
                    of = f" of {total / 1e6:.0f}" if total else ""
                    log.progress(f"{done / 1e6:.0f}{of} MB")
                    next_report = done + 50 * 10**6
    except (urllib.error.URLError, OSError) as exc:
        raise BoxError(f"cannot download {url}: {exc}", hint=f"log: {log.path}") from exc
    log.info(f"downloaded {done} bytes, sha256 {digest.hexdigest()}")
    return digest.hexdigest()


def _unpack(box_file: Path, out: Path, recipe: Recipe) -> None:
    try:
        with tarfile.open(box_file) as tar:
            names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
            for needed in ("metadata.json", BOX_IMAGE):
                if needed not in names:
                    raise BoxError(
                        f"{recipe.url}: the box has no {needed}", hint="not a libvirt box"
                    )
            for member_name in ("metadata.json", BOX_IMAGE, "Vagrantfile"):
                member = names.get(member_name)
                if member is None:
                    continue
                source = tar.extractfile(member)
                assert source is not None
                with source, (out / member_name).open("wb") as handle:
                    shutil.copyfileobj(source, handle, 1 << 20)
    except tarfile.TarError as exc:
        raise BoxError(f"{recipe.url}: not a .box tarball ({exc})") from exc
    meta = json.loads((out / "metadata.json").read_text())
    if meta.get("provider") != "libvirt":
        raise BoxError(
            f"{recipe.url}: box provider is {meta.get('provider')!r}, lab needs 'libvirt'"
        )
    if not (out / "Vagrantfile").exists():
        (out / "Vagrantfile").write_text(package.BOX_VAGRANTFILE)


def _prune(paths: CachePaths, recipe_name: str, keep: Path) -> None:
    """Keep the newest :data:`KEEP_BUILDS` boxes of a recipe and its newest Debian tree."""
    mine = [b for b in list_boxes(paths.root) if b.recipe == recipe_name]
    survivors = {keep} | {b.directory for b in mine[:KEEP_BUILDS]}
    for old in mine:
        if old.directory in survivors:
            continue
        with contextlib.suppress(LabError, OSError):
            package.remove(old.vagrant_name)
        remove_tree(old.directory)
    if paths.rootfs.is_dir():
        trees = [
            d
            for d in paths.rootfs.iterdir()
            if d.name.rpartition("-")[0] == recipe_name and (d / "done").is_file()
        ]
        trees.sort(key=lambda d: (d / "done").stat().st_mtime, reverse=True)
        for old_tree in trees[1:]:
            remove_tree(old_tree)


def docker_archives(name: str, cache: Path | None = None) -> list[tuple[str, Path]]:
    """The box's docker images (``busybox:latest``) as the ``docker save`` tarballs its
    build left in the cached tree, ``(reference, path)``; those not on this host (a box
    fetched by URL, or a tree the cache let go) are left out."""
    recipe = find_recipe(name)
    if recipe.kind != "debootstrap":
        return []
    root = CachePaths(cache or cache_root()).rootfs_dir(recipe.name, rootfs_key(recipe)) / "root"
    found = []
    for docker_image in recipe.docker_images:
        stem = dockerimage.tar_file_name(docker_image.name, docker_image.tag)
        path = rootfs.inside(root, f"{rootfs.DOCKER_IMAGES_DIR}/{stem}.tar")
        if path.is_file():
            found.append((docker_image.reference, path))
    return found
