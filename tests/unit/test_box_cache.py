"""Cache keys: what changes a box (recipe, overlay, guest software) and what does not."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from provisioner.box.cache import (
    CachePaths,
    box_key,
    cache_root,
    clean_debris,
    entry_name,
    mounts_under,
    rootfs_key,
    tree_hash,
    url_key,
)
from provisioner.box.guest import guest_hash
from provisioner.box.recipe import Recipe, find_recipe, parse_recipe

pytestmark = pytest.mark.unit

CHECKOUT_BOXES = Path(__file__).resolve().parents[2] / "boxes"


def make_tree(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "run").write_text("#!/bin/sh\n")
    return root


def test_tree_hash_ignores_compiled_files_but_sees_content_mode_and_links(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    first = tree_hash(root)
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    (root / "pkg" / "other.pyc").write_bytes(b"junk")
    assert tree_hash(root) == first
    (root / "pkg" / "run").chmod(0o755)
    second = tree_hash(root)
    assert second != first
    (root / "pkg" / "mod.py").write_text("x = 2\n")
    third = tree_hash(root)
    assert third != second
    (root / "pkg" / "link").symlink_to("mod.py")
    assert tree_hash(root) != third
    assert tree_hash(tmp_path / "missing") != third


def test_tree_hash_depends_on_names_not_on_walk_order(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a")
    b = tmp_path / "b"
    (b / "pkg").mkdir(parents=True)
    (b / "pkg" / "run").write_text("#!/bin/sh\n")
    (b / "pkg" / "mod.py").write_text("x = 1\n")
    assert tree_hash(a) == tree_hash(b)
    (b / "pkg" / "mod.py").rename(b / "pkg" / "mod2.py")
    assert tree_hash(a) != tree_hash(b)


def recipe_in(tmp_path: Path, **changes: object) -> Recipe:
    folder = tmp_path / "box"
    (folder / "files" / "etc").mkdir(parents=True, exist_ok=True)
    (folder / "files" / "etc" / "motd").write_text("hello\n")
    raw = {"packages": ["systemd"], "overlay": "files"} | changes
    return parse_recipe(raw, folder / "recipe.yaml")


def test_box_key_follows_recipe_overlay_and_guest(tmp_path: Path) -> None:
    recipe = recipe_in(tmp_path)
    base_rootfs, base_box = rootfs_key(recipe), box_key(recipe, "g1")
    assert box_key(recipe, "g1") == base_box  # stable
    assert box_key(recipe, "g2") != base_box  # guest software changed
    assert rootfs_key(recipe) == base_rootfs

    more = recipe_in(tmp_path, packages=["systemd", "sudo"])
    assert rootfs_key(more) != base_rootfs
    assert box_key(more, "g1") != base_box

    # packing details change the box, not the Debian tree
    cmdline = recipe_in(tmp_path, kernel_cmdline=["quiet"])
    assert rootfs_key(cmdline) == base_rootfs
    assert box_key(cmdline, "g1") != base_box
    disk = recipe_in(tmp_path, disk={"size_gib": 16})
    assert rootfs_key(disk) == base_rootfs
    assert box_key(disk, "g1") != base_box

    (tmp_path / "box" / "files" / "etc" / "motd").write_text("changed\n")
    assert rootfs_key(recipe) != base_rootfs
    assert box_key(recipe, "g1") != base_box


def test_key_does_not_depend_on_where_the_recipe_lives(tmp_path: Path) -> None:
    one = recipe_in(tmp_path / "one")
    two = recipe_in(tmp_path / "two")
    assert box_key(one, "g") == box_key(two, "g")


def test_url_key_follows_url_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "u" / "recipe.yaml"
    raw = {"kind": "url", "url": "https://example.invalid/a.box", "sha256": "a" * 64}
    recipe = parse_recipe(raw, path)
    assert url_key(recipe) == url_key(parse_recipe(raw, path))
    assert url_key(recipe) != url_key(dataclasses.replace(recipe, sha256="b" * 64))


def test_shipped_guest_software_is_part_of_the_key() -> None:
    recipe = find_recipe("default", CHECKOUT_BOXES)
    guest = guest_hash()
    assert len(guest) == 64
    assert box_key(recipe, guest) != box_key(recipe, guest_hash(Path("/nonexistent")))


def test_cache_root_honours_xdg(tmp_path: Path) -> None:
    assert cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "lab"
    assert cache_root({"HOME": "/home/x"}) == Path("/home/x/.cache/lab")
    paths = CachePaths(tmp_path / "lab")
    assert paths.box_dir("default", "ab" * 32) == tmp_path / "lab/boxes/default-abababababab"
    assert entry_name("default", "0123456789abcdef") == "default-0123456789ab"


def test_mounts_under_reads_mountinfo_deepest_first(tmp_path: Path) -> None:
    base = os.path.realpath(tmp_path)
    info = (
        f"36 25 0:5 / {base}/root/proc rw - proc proc rw\n"
        f"37 36 0:6 / {base}/root/proc/sys/fs/binfmt_misc rw - binfmt binfmt rw\n"
        f"38 25 0:7 / {base}/rootx rw - tmpfs tmpfs rw\n"
        "39 25 0:8 / /proc rw - proc proc rw\n"
    )
    found = mounts_under(tmp_path / "root", info)
    assert found == [
        Path(f"{base}/root/proc/sys/fs/binfmt_misc"),
        Path(f"{base}/root/proc"),
    ]


def test_clean_debris_removes_unfinished_builds_only(tmp_path: Path) -> None:
    paths = CachePaths(tmp_path)
    paths.make()
    (paths.tmp / "default-abc-x" / "root").mkdir(parents=True)
    (paths.boxes / ".default-abc.old-12").mkdir()
    (paths.boxes / "default-abcdef123456").mkdir()
    removed = clean_debris(paths)
    assert sorted(p.name for p in removed) == [".default-abc.old-12", "default-abc-x"]
    assert list(paths.tmp.iterdir()) == []
    assert [p.name for p in paths.boxes.iterdir()] == ["default-abcdef123456"]
