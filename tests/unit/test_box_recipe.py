"""Recipe parsing and validation: every error names the recipe file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.box.recipe import Recipe, find_recipe, load_recipe, parse_recipe
from provisioner.errors import ConfigError

pytestmark = pytest.mark.unit

CHECKOUT_BOXES = Path(__file__).resolve().parents[2] / "boxes"


def minimal() -> dict[str, Any]:
    return {"kind": "debootstrap", "packages": ["linux-image-cloud-amd64", "systemd"]}


def write(tmp_path: Path, data: Any, name: str = "mybox") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def parse(tmp_path: Path, data: Any) -> Recipe:
    return load_recipe(write(tmp_path, data))


def test_default_recipe_parses_with_the_required_guest_pieces() -> None:
    recipe = find_recipe("default", CHECKOUT_BOXES)
    assert recipe.kind == "debootstrap"
    assert recipe.name == "default"
    for package in (
        "linux-image-cloud-amd64",
        "systemd-sysv",
        "openssh-server",
        "etcd-server",
        "etcd-client",
        "docker.io",
        "python3-yaml",
        "busybox-static",
        "e2fsprogs",
    ):
        assert package in recipe.packages
    assert "etcd.service" in recipe.services.disable
    assert "docker.socket" in recipe.services.enable
    assert "docker.service" in recipe.services.disable
    assert "systemd-sysv-generator" in recipe.services.mask_generators
    assert "systemd-fstab-generator" not in recipe.services.mask_generators
    assert [u.name for u in recipe.users] == ["core"]
    assert recipe.users[0].sudo == "ALL=(ALL) NOPASSWD:ALL"
    assert "console=ttyS0,115200n8" in recipe.kernel_cmdline
    assert [i.reference for i in recipe.docker_images] == ["busybox:latest"]
    assert dict(recipe.guest.commands) == {
        "coreos-cloudinit": "provisioner.guest.cloudinit.main:main",
        "lab-configdrive-keys": "provisioner.guest.cloudinit.sshkeys:main",
        "fleetd": "provisioner.guest.fleet.fleetd:main",
        "fleetctl": "provisioner.guest.fleet.fleetctl:main",
        "flanneld": "provisioner.guest.flannel.flanneld:main",
    }
    assert recipe.overlay_dir is not None
    assert (recipe.overlay_dir / "usr/lib/systemd/system/etcd2.service").is_file()
    assert (recipe.overlay_dir / "usr/lib/systemd/system/etcd-member.service").is_symlink()
    assert (recipe.overlay_dir / "usr/lib/systemd/system/etcd-gateway.service").is_file()
    assert "curl" in recipe.packages


def test_minimal_recipe_gets_defaults(tmp_path: Path) -> None:
    recipe = parse(tmp_path, minimal())
    assert recipe.name == "mybox"
    assert recipe.debian.suite == "bookworm"
    assert recipe.debian.mirror == "http://deb.debian.org/debian"
    assert recipe.disk.size_gib == 8
    assert recipe.disk.compression == "zstd"
    assert recipe.overlay is None


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"packges": ["x"]}, "packges", "did you mean 'packages'"),
        ({"kind": "docker"}, "kind", "unknown kind"),
        ({"packages": "systemd"}, "packages", "expected a list"),
        ({"packages": ["Bad Name"]}, "packages[0]", "invalid value"),
        ({"packages": []}, "packages", "needs packages"),
        ({"disk": {"size_gib": 1}}, "disk.size_gib", "out of range"),
        ({"disk": {"size_gib": "8G"}}, "disk.size_gib", "expected an integer"),
        ({"disk": {"compression": "xz"}}, "disk.compression", "unknown compression"),
        ({"disk": {"size": 8}}, "disk.size", "unknown key"),
        ({"services": {"enable": ["ssh"]}}, "services.enable[0]", "invalid value"),
        ({"services": ["ssh.service"]}, "services", "expected a mapping"),
        ({"services": {"mask_generators": ["fstab"]}}, "services.mask_generators[0]", "invalid"),
        ({"users": [{"name": "Core"}]}, "users[0].name", "invalid value"),
        ({"users": [{"name": "core"}, {"name": "core"}]}, "users[1].name", "listed twice"),
        ({"users": [{"name": "core", "sudo": "a\nb"}]}, "users[0].sudo", "single sudoers rule"),
        ({"users": [{"name": "core", "shell": "bash"}]}, "users[0].shell", "absolute path"),
        ({"docker_images": [{"name": "busybox"}]}, "docker_images[0].busybox", "missing"),
        (
            {"docker_images": [{"name": "b", "busybox": "../x"}]},
            "docker_images[0].busybox",
            "absolute path",
        ),
        (
            {"guest": {"commands": {"fleetd": "not a target"}}},
            "guest.commands.fleetd",
            "invalid value",
        ),
        ({"guest": {"leave_disabled": ["fleet"]}}, "guest.leave_disabled[0]", "invalid value"),
        ({"debian": {"mirror": "ftp://x"}}, "debian.mirror", "invalid mirror"),
        ({"debian": {"variant": "fat"}}, "debian.variant", "unknown variant"),
        ({"overlay": "files"}, "overlay", "does not exist"),
        ({"overlay": "../elsewhere"}, "overlay", "next to the recipe"),
        ({"kernel_cmdline": ["quiet; reboot"]}, "kernel_cmdline[0]", "invalid value"),
        ({"url": "https://example.invalid/x.box"}, "url", "only recipes of kind 'url'"),
    ],
)
def test_bad_recipe_names_file_and_key(
    tmp_path: Path, change: dict[str, Any], key: str, words: str
) -> None:
    data = minimal() | change
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert info.value.path == str(path)
    assert info.value.key == key
    assert str(path) in str(info.value)
    assert words in str(info.value) + (info.value.hint or "")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: debootstrap\npackages: [a, b\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert info.value.path == str(path)
    assert info.value.key is not None
    assert info.value.key.startswith("line ")


def test_empty_recipe_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty"):
        load_recipe(write(tmp_path, ""))


def test_url_recipe(tmp_path: Path) -> None:
    sha = "a" * 64
    recipe = parse(tmp_path, {"kind": "url", "url": "https://example.invalid/b.box", "sha256": sha})
    assert recipe.kind == "url"
    assert recipe.sha256 == sha
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, {"kind": "url", "url": "https://example.invalid/b.box", "sha256": "xyz"})
    assert info.value.key == "sha256"
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, {"kind": "url", "url": "https://x/b.box", "sha256": sha, "packages": []})
    assert info.value.key == "packages"
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, {"kind": "url", "url": "ftp://x/b.box", "sha256": sha})
    assert info.value.key == "url"


def test_find_recipe_lists_known_boxes(tmp_path: Path) -> None:
    write(tmp_path, minimal(), "alpha")
    assert find_recipe("alpha", tmp_path).name == "alpha"
    with pytest.raises(ConfigError) as info:
        find_recipe("beta", tmp_path)
    assert "alpha" in (info.value.hint or "")
    with pytest.raises(ConfigError):
        find_recipe("../etc", tmp_path)


def test_parse_recipe_rejects_bad_folder_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid box name"):
        parse_recipe(minimal(), tmp_path / "Bad_Name" / "recipe.yaml")
