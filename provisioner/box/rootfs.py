"""Stage 1: a configured Debian tree from a recipe (debootstrap + chroot steps).

Everything here works on a directory: no loop devices, no mounts of ours
(debootstrap mounts /proc and /sys in the target while it runs and unmounts
them itself; :func:`provisioner.box.cache.remove_tree` cleans up after a kill).
Paths inside the tree are resolved like the guest would resolve them, so an
absolute symlink in the image never leads a write onto the host.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from provisioner.box import dockerimage, dockerstore
from provisioner.box.buildlog import BuildLog
from provisioner.box.recipe import Recipe
from provisioner.errors import BoxError, HostError

DEBOOTSTRAP_TIMEOUT = 1800.0
DOCKER_IMAGES_DIR = "/usr/share/lab/docker-images"
BOOTLOADER_DIR = "bootloader"  # next to root/ in a rootfs cache entry
GRUB_MODULES = ("biosdisk", "part_msdos", "ext2", "normal", "linux", "boot", "echo", "test")
GRUB_PREFIX = "(hd0,msdos1)/boot/grub"
_MAX_LINKS = 40


def inside(root: Path, path: str | PurePosixPath) -> Path:
    """Host path of ``path`` as seen by the image rooted at ``root`` (symlinks kept inside).

    Every symlink on the way is resolved relative to ``root``; the last
    component is not followed, so callers can replace a symlink with a file.
    """
    parts = [p for p in PurePosixPath("/", path).parts[1:] if p not in ("", ".")]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if parts and candidate.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                raise BoxError(f"too many symlinks resolving {path} in {root}")
            target = PurePosixPath(candidate.readlink())
            rest = [p for p in target.parts if p not in ("", ".")]
            if target.is_absolute():
                current = root
                rest = rest[1:]
            parts = rest + parts
            continue
        current = candidate
    return current


def write_file(root: Path, path: str, data: bytes, mode: int = 0o644) -> Path:
    """Write a regular file into the image (replacing a symlink there), parents created."""
    target = inside(root, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        target.unlink()
    tmp = target.with_name(f".{target.name}.lab-tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.chown(tmp, 0, 0)
    tmp.replace(target)
    return target


def remove(root: Path, path: str) -> None:
    target = inside(root, path)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def copy_overlay(source: Path, root: Path) -> list[str]:
    """Copy a recipe's overlay folder over the image; returns the image paths written.

    Files become 0755 if executable in the overlay, else 0644, owned by root;
    symlinks are copied as symlinks.
    """
    written = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        base = Path(dirpath)
        rel_dir = base.relative_to(source).as_posix()
        names = sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]
        for name in names:
            item = base / name
            image_path = "/" + (f"{rel_dir}/{name}" if rel_dir != "." else name)
            if item.is_symlink():
                target = inside(root, image_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.is_file():
                    target.unlink()
                target.symlink_to(item.readlink())
                os.lchown(target, 0, 0)
            else:
                mode = 0o755 if item.stat().st_mode & 0o111 else 0o644
                write_file(root, image_path, item.read_bytes(), mode)
            written.append(image_path)
    return written


def debootstrap(recipe: Recipe, target: Path, debs: Path, log: BuildLog) -> None:
    """Run debootstrap for the recipe; its output goes to the build log."""
    if shutil.which("debootstrap") is None:
        raise HostError("debootstrap is not installed", hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise HostError(
            "building a box needs root (debootstrap and chroot)",
            hint="run `sudo lab box build`, or use a box recipe of kind 'url'",
        )
    include = ",".join(dict.fromkeys(recipe.packages + recipe.build_packages))
    command = [
        "debootstrap",
        f"--variant={recipe.debian.variant}",
        f"--components={','.join(recipe.debian.components)}",
        f"--include={include}",
        f"--cache-dir={debs.resolve()}",
        "--merged-usr",
        recipe.debian.suite,
        str(target),
        recipe.debian.mirror,
    ]

    def on_line(line: str) -> None:
        if line.startswith(("I: Retrieving", "I: Validating", "I: Installing", "I: Base")):
            log.progress(line[3:])

    log.run(command, timeout=DEBOOTSTRAP_TIMEOUT, on_line=on_line, what="debootstrap")


def configure(recipe: Recipe, root: Path, bootloader: Path, log: BuildLog) -> None:
    """Everything after debootstrap that depends only on the recipe."""
    write_file(root, "/usr/sbin/policy-rc.d", b"#!/bin/sh\nexit 101\n", 0o755)
    if recipe.overlay_dir is not None:
        written = copy_overlay(recipe.overlay_dir, root)
        log.info(f"overlay: {len(written)} files from {recipe.overlay_dir}")
    if recipe.initramfs_modules:
        _initramfs(recipe, root, log)
    for user in recipe.users:
        _add_user(root, user.name, user.groups, user.shell, user.sudo, log)
    _services(recipe, root, log)
    for image in recipe.docker_images:
        _docker_image(root, image.name, image.tag, image.busybox, log)
    _make_bootloader(root, bootloader, log)
    if recipe.build_packages:
        _purge_build_packages(recipe, root, log)
    clean(root, log)


def _initramfs(recipe: Recipe, root: Path, log: BuildLog) -> None:
    write_file(
        root,
        "/etc/initramfs-tools/conf.d/lab-modules.conf",
        b"# Only the modules listed in /etc/initramfs-tools/modules (lab box recipe).\n"
        b"MODULES=list\n",
    )
    modules = "".join(f"{name}\n" for name in recipe.initramfs_modules)
    header = "# Modules the initramfs needs to find the root disk (lab box recipe).\n"
    write_file(root, "/etc/initramfs-tools/modules", (header + modules).encode())
    log.chroot(root, "update-initramfs", "-u", "-k", "all", what="update-initramfs")
    for stale in inside(root, "/boot").glob("*.dpkg-bak"):
        stale.unlink()


def _add_user(
    root: Path, name: str, groups: tuple[str, ...], shell: str, sudo: str | None, log: BuildLog
) -> None:
    command = ["useradd", "--create-home", "--user-group", "--shell", shell]
    if groups:
        command += ["--groups", ",".join(groups)]
    log.chroot(root, *command, name, what=f"useradd {name}")
    # '*' : no password can match, yet the account is not "locked" for key logins
    log.chroot(root, "usermod", "--password", "*", name, what=f"usermod {name}")
    home = inside(root, f"/home/{name}")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    stat = home.stat()
    os.chown(ssh, stat.st_uid, stat.st_gid)
    if sudo:
        rule = f"{name} {sudo}\n".encode()
        write_file(root, f"/etc/sudoers.d/90-lab-{name}", rule, 0o440)
        log.chroot(root, "visudo", "-c", "-f", f"/etc/sudoers.d/90-lab-{name}", what="visudo")
    log.info(f"user {name} (groups: {', '.join(groups) or '-'}; sudo: {'yes' if sudo else 'no'})")


def _services(recipe: Recipe, root: Path, log: BuildLog) -> None:
    services = recipe.services
    if services.disable:
        log.chroot(root, "systemctl", "disable", *services.disable, what="systemctl disable")
    if services.enable:
        log.chroot(root, "systemctl", "enable", *services.enable, what="systemctl enable")
    if services.mask:
        log.chroot(root, "systemctl", "mask", *services.mask, what="systemctl mask")
    mask_generators(root, services.mask_generators)
    log.info(
        f"services: {len(services.enable)} enabled, {len(services.disable)} disabled, "
        f"{len(services.mask)} masked; {len(services.mask_generators)} generators masked"
    )


GENERATOR_MASK_DIR = "/etc/systemd/system-generators"


def mask_generators(root: Path, names: Sequence[str]) -> None:
    """Turn generators off the way systemd.generator(7) documents: a link to /dev/null."""
    if not names:
        return
    directory = inside(root, GENERATOR_MASK_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = directory / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")


def _docker_image(root: Path, name: str, tag: str, busybox_path: str, log: BuildLog) -> None:
    binary = inside(root, busybox_path)
    if not binary.is_file():
        raise BoxError(
            f"docker image {name}:{tag}: {busybox_path} is not in the image",
            hint="add busybox-static to the recipe's packages",
        )
    listing = log.chroot(root, busybox_path, "--list-full", what="busybox --list-full")
    image = dockerimage.busybox_image(
        binary.read_bytes(), dockerimage.parse_applets(listing), name, tag
    )
    # docker's store is seeded so the image is there the moment dockerd answers;
    # the tarball stays for `docker load` should /var/lib/docker ever be wiped.
    if inside(root, f"/{dockerstore.DOCKER_ROOT}") != root / dockerstore.DOCKER_ROOT:
        raise BoxError(f"/{dockerstore.DOCKER_ROOT} is a symlink in the image; cannot seed it")
    dockerstore.seed(root, image)
    stem = dockerimage.tar_file_name(name, tag)
    write_file(root, f"{DOCKER_IMAGES_DIR}/{stem}.tar", image.data)
    log.info(f"docker image {image.reference} ({len(image.data) // 1024} KiB, {image.image_id})")


def _make_bootloader(root: Path, bootloader: Path, log: BuildLog) -> None:
    """GRUB's boot.img and an i386-pc core.img that reads /boot/grub/grub.cfg from partition 1."""
    boot_img = inside(root, "/usr/lib/grub/i386-pc/boot.img")
    if not boot_img.is_file():
        raise BoxError(
            "GRUB's i386-pc files are missing from the image",
            hint="add grub-pc-bin to the recipe's build_packages",
        )
    log.chroot(
        root,
        "grub-mkimage",
        "--format=i386-pc",
        "--output=/tmp/lab-core.img",
        f"--prefix={GRUB_PREFIX}",
        *GRUB_MODULES,
        what="grub-mkimage",
    )
    bootloader.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(boot_img, bootloader / "boot.img")
    core = inside(root, "/tmp/lab-core.img")
    shutil.move(core, bootloader / "core.img")
    log.info(f"GRUB core.img: {(bootloader / 'core.img').stat().st_size // 1024} KiB")


def _purge_build_packages(recipe: Recipe, root: Path, log: BuildLog) -> None:
    """Purge build-only packages and whatever only they needed.

    debootstrap marks nothing as automatically installed, so first mark every
    package automatic except the base system (priority required/important) and
    the recipe's packages; then apt's autoremove knows what only the build needed.
    """
    listing = log.chroot(
        root, "dpkg-query", "--show", "--showformat=${Package} ${Priority}\\n", what="dpkg-query"
    )
    keep = set(recipe.packages)
    everything = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 2 and re.match(r"^[a-z0-9][a-z0-9+.-]+$", fields[0]):
            everything.append(fields[0])
            if fields[1] in ("required", "important"):
                keep.add(fields[0])
    keep -= set(recipe.build_packages)
    log.chroot(root, "apt-mark", "auto", *everything, what="apt-mark auto")
    log.chroot(root, "apt-mark", "manual", *sorted(keep & set(everything)), what="apt-mark")
    log.chroot(
        root,
        "apt-get",
        "purge",
        "--yes",
        "--autoremove",
        *recipe.build_packages,
        what="apt-get purge (build packages)",
    )


# Files and folders that must not be shared by every machine made from the box.
_REMOVE = (
    "/usr/sbin/policy-rc.d",
    "/var/lib/dbus/machine-id",
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    "/root/.bash_history",
    "/etc/ssh/ssh_host_*",
    "/var/cache/apt/*",
    "/var/lib/apt/lists/*",
    "/var/cache/debconf/*-old",
    "/var/lib/dpkg/*-old",
    "/tmp/*",
    "/var/tmp/*",
)


def clean(root: Path, log: BuildLog | None = None) -> None:
    """Image hygiene: empty machine-id, no host keys, no apt caches, no logs."""
    removed = 0
    for pattern in _REMOVE:
        parent, _, glob = pattern.rpartition("/")
        folder = inside(root, parent)
        if not folder.is_dir():
            continue
        for item in sorted(folder.glob(glob)):
            remove(root, str(PurePosixPath(parent, item.name)))
            removed += 1
    for dirpath, _dirs, files in os.walk(inside(root, "/var/log")):
        for name in files:  # logs go, their folders stay
            (Path(dirpath) / name).unlink()
            removed += 1
    write_file(root, "/etc/machine-id", b"", 0o444)
    for partial in ("/var/lib/apt/lists/partial", "/var/cache/apt/archives/partial"):
        inside(root, partial).mkdir(parents=True, exist_ok=True)
    if log is not None:
        log.info(f"cleaned: {removed} cache/log/identity entries removed, machine-id emptied")


def hygiene_problems(root: Path) -> list[str]:
    """What would make machines from this tree share identity or carry build debris."""
    problems = []
    machine_id = inside(root, "/etc/machine-id")
    if not machine_id.is_file() or machine_id.stat().st_size != 0:
        problems.append("/etc/machine-id is not an empty file")
    if inside(root, "/var/lib/dbus/machine-id").exists():
        problems.append("/var/lib/dbus/machine-id exists")
    keys = sorted(inside(root, "/etc/ssh").glob("ssh_host_*"))
    if keys:
        problems.append(f"SSH host keys present: {', '.join(k.name for k in keys)}")
    for folder in ("/var/cache/apt", "/var/lib/apt/lists"):
        leftovers = [p for p in inside(root, folder).rglob("*") if p.is_file() and p.name != "lock"]
        if leftovers:
            problems.append(f"{folder} is not empty ({len(leftovers)} files)")
    if inside(root, "/usr/sbin/policy-rc.d").exists():
        problems.append("/usr/sbin/policy-rc.d is still there")
    for name in ("authorized_keys", "authorized_keys2"):
        for home in [inside(root, "/root"), *inside(root, "/home").glob("*")]:
            if (home / ".ssh" / name).exists():
                problems.append(f"{home.name}/.ssh/{name} exists (keys come from cloud-config)")
    return problems
