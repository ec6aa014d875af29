"""The host's registry for real: Debian's docker-registry on loopback, skopeo copies,
socat relays on 127.0.0.2 and 127.0.0.3 standing in for two labs' gateways."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import RegistryError
from provisioner.registry import host, service
from provisioner.registry.images import repositories_dir
from provisioner.registry.reference import ImageName
from tests.registry_support import (
    LoopRegistry,
    broken_archive,
    get_json,
    loop_registry,
    marker_in_image,
    missing,
    two_layer_archive,
)

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
    pytest.mark.timeout(300),
]

GATEWAY_A = "127.0.0.2"  # lab A's gateway, as a relay sees it
GATEWAY_B = "127.0.0.3"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LoopRegistry]:
    with loop_registry(tmp_path / "state" / "lab" / "registry") as running:
        host.start(running.root, running.port)
        yield running


def test_import_list_and_remove_a_two_layer_image(tmp_path: Path, registry: LoopRegistry) -> None:
    archive = tmp_path / "app.tar"
    archive.write_bytes(two_layer_archive("lab-test/app:1", "made by the test"))
    images = registry.images

    assert images.import_archive(archive) == [ImageName("lab-test/app", "1")]  # its own name
    assert images.import_archive(archive, "mongo:7") == [ImageName("library/mongo", "7")]

    listed = {row.name.familiar: row for row in images.rows()}
    assert sorted(listed) == ["lab-test/app:1", "mongo:7"]
    assert listed["mongo:7"].digest == listed["lab-test/app:1"].digest  # the same image
    assert listed["mongo:7"].size is not None
    assert listed["mongo:7"].size > 500_000
    # what a guest's docker asks its mirror for `docker pull mongo:7`: library/mongo:7
    status, manifest = get_json(f"{registry.url}/v2/library/mongo/manifests/7")
    assert status == 200
    assert len(manifest["layers"]) == 2
    assert marker_in_image(registry.url, "library/mongo", "7") == "made by the test"

    used = images.disk_use()
    assert images.remove(["lab-test/app:1"]) == [ImageName("lab-test/app", "1")]
    # the other tag keeps the blobs; the removed one is gone from ls and the API
    assert [row.name.familiar for row in images.rows()] == ["mongo:7"]
    assert get_json(f"{registry.url}/v2/lab-test/app/manifests/1")[0] == 404
    assert get_json(f"{registry.url}/v2/lab-test/app/tags/list")[0] == 404
    assert images.disk_use() == pytest.approx(used, rel=0.05)

    images.remove(["mongo:7"])  # the last tag: garbage collection frees the blobs
    assert images.rows() == []
    assert get_json(f"{registry.url}/v2/library/mongo/manifests/7")[0] == 404
    assert images.disk_use() < 10_000
    assert not (repositories_dir(images.registry.data) / "library" / "mongo").exists()
    # and the registry runs read-write again, on the same port
    info = images.registry.running()
    assert info is not None
    assert not info.readonly
    assert info.port == registry.port
    assert images.import_archive(archive, "again:1") == [ImageName("library/again", "1")]


def test_removing_a_name_it_does_not_hold_is_an_error(registry: LoopRegistry) -> None:
    with pytest.raises(RegistryError, match=r"no image nosuch:latest in the lab registry"):
        registry.images.remove(["nosuch"])


def test_push_from_podman(tmp_path: Path, registry: LoopRegistry) -> None:
    if not Path("/usr/bin/podman").exists():
        pytest.skip("podman is not installed (apt-get install podman)")
    storage = tmp_path / "podman"
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{storage}/root"\nrunroot = "{storage}/run"\n'
    )
    archive = tmp_path / "app.tar"
    archive.write_bytes(two_layer_archive("lab-test/pushed:3", "pushed from podman"))
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    subprocess.run(
        ["podman", "load", "-q", "-i", str(archive)], env=env, check=True, capture_output=True
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        pushed, engine = registry.images.push("lab-test/pushed:3", engine="podman")
        assert (pushed, engine) == (ImageName("lab-test/pushed", "3"), "podman")
        renamed, _ = registry.images.push("lab-test/pushed:3", "web:2", engine="podman")
        with pytest.raises(RegistryError, match=r"podman has no image 'nosuch:1'"):
            registry.images.push("nosuch:1", engine="podman")
    assert renamed == ImageName("library/web", "2")
    assert marker_in_image(registry.url, "lab-test/pushed", "3") == "pushed from podman"
    assert marker_in_image(registry.url, "library/web", "2") == "pushed from podman"


def test_push_without_an_engine_says_what_is_missing(
    registry: LoopRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither docker nor podman here
    with pytest.raises(RegistryError) as caught:
        registry.images.push("busybox")
    assert "docker is not installed; podman is not installed" in caught.value.message
    assert caught.value.hint is not None
    assert "apt-get install podman" in caught.value.hint


def test_what_is_not_an_image_is_refused_by_name(tmp_path: Path, registry: LoopRegistry) -> None:
    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("hello\n")
    other_tar = tmp_path / "files.tar"
    subprocess.run(["tar", "-cf", str(other_tar), "-C", str(tmp_path), "notes.txt"], check=True)
    for path in (not_tar, other_tar, tmp_path / "missing.tar"):
        with pytest.raises(RegistryError, match=rf"^{path}: ") as caught:
            registry.images.import_archive(path)
        assert "docker save" in (caught.value.hint or "")
    good = tmp_path / "app.tar"
    good.write_bytes(two_layer_archive("lab-test/app:1", "x"))
    with pytest.raises(RegistryError, match=r"image name 'Bad:1' is not a valid reference"):
        registry.images.import_archive(good, "Bad:1")
    assert registry.images.rows() == []


def test_a_failed_import_leaves_nothing_under_the_name(
    tmp_path: Path, registry: LoopRegistry
) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(broken_archive("lab-test/broken:1"))
    with pytest.raises(RegistryError, match=rf"^{broken} as mongo:7: skopeo could not copy"):
        registry.images.import_archive(broken, "mongo:7")
    assert get_json(f"{registry.url}/v2/library/mongo/manifests/7")[0] == 404
    assert registry.images.rows() == []


def test_a_port_in_use_names_the_port_and_the_key(tmp_path: Path) -> None:
    with loop_registry(tmp_path / "registry") as loop, socket.socket() as squatter:
        squatter.bind(("127.0.0.1", loop.port))
        squatter.listen()
        with pytest.raises(RegistryError) as caught:
            host.start(loop.root, loop.port)
        assert f"cannot listen on 127.0.0.1:{loop.port}" in caught.value.message
        assert "registry.port in lab.yaml" in (caught.value.hint or "")
        assert service.local(loop.root).running() is None


def test_a_relay_port_in_use_names_the_lab(tmp_path: Path, registry: LoopRegistry) -> None:
    with socket.socket() as squatter:
        squatter.bind((GATEWAY_A, registry.port))
        squatter.listen()
        with pytest.raises(RegistryError) as caught:
            service.ensure_relay(registry.root, GATEWAY_A, registry.port, registry.port, "lab-a")
    assert caught.value.message.startswith("lab lab-a: the registry relay cannot listen on")
    assert f"{GATEWAY_A}:{registry.port}" in caught.value.message
    assert "registry.port in lab.yaml" in (caught.value.hint or "")


def test_one_registry_serves_two_labs_and_outlives_either(
    tmp_path: Path, registry: LoopRegistry
) -> None:
    archive = tmp_path / "app.tar"
    archive.write_bytes(two_layer_archive("lab-test/app:1", "shared"))
    registry.images.import_archive(archive, "mongo:7")
    first = service.local(registry.root).running()
    assert first is not None
    for gateway, lab in ((GATEWAY_A, "lab-a"), (GATEWAY_B, "lab-b")):
        assert service.ensure_relay(registry.root, gateway, registry.port, first.port, lab)
        assert not service.ensure_relay(registry.root, gateway, registry.port, first.port, lab)
        url = f"http://{gateway}:{registry.port}"
        assert marker_in_image(url, "library/mongo", "7") == "shared"  # as a guest pulls
    # nothing listens on every address: the relays on their gateways, the registry on loopback
    assert service.Relay("127.0.0.4", registry.port, registry.root).running_target() is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.4", registry.port))  # free on any other address

    # lab A is destroyed: its relay goes, the registry and lab B's relay stay
    assert service.stop_relays(GATEWAY_A, registry.root) == [registry.port]
    assert get_json(f"http://{GATEWAY_B}:{registry.port}/v2/_catalog")[0] == 200
    with pytest.raises(OSError, match="refused"):
        socket.create_connection((GATEWAY_A, registry.port), timeout=2).close()
    registry.images.import_archive(archive, "later:1")
    assert marker_in_image(f"http://{GATEWAY_B}:{registry.port}", "library/later", "1")
    # a new lab A comes up: the same registry process serves it
    host.start(registry.root, registry.port)
    service.ensure_relay(registry.root, GATEWAY_A, registry.port, first.port, "lab-a2")
    assert service.local(registry.root).running() == first
    assert marker_in_image(f"http://{GATEWAY_A}:{registry.port}", "library/later", "1")

    # `lab registry stop`: the relays stay and answer again once it runs
    assert host.stop(registry.root) == ["the lab registry"]
    assert not service.answers(f"http://{GATEWAY_B}:{registry.port}")
    again, _ = host.start(registry.root, registry.port)
    assert again.pid != first.pid
    assert marker_in_image(f"http://{GATEWAY_B}:{registry.port}", "library/mongo", "7")


def test_the_box_busybox_goes_in_once(tmp_path: Path, registry: LoopRegistry) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(two_layer_archive("busybox:latest", "box"))
    _info, added = host.start(registry.root, registry.port, archives=[("busybox:latest", archive)])
    assert added == [ImageName("library/busybox", "latest")]
    _, again = host.start(registry.root, registry.port, archives=[("busybox:latest", archive)])
    assert again == []


def test_the_verbs(tmp_path: Path, registry: LoopRegistry) -> None:
    archive = tmp_path / "app.tar"
    archive.write_bytes(two_layer_archive("lab-test/app:1", "cli"))
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "lab.yaml").write_text(f"registry: {{port: {registry.port}}}\n")
    # the verbs find the registry in $XDG_STATE_HOME/lab/registry
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}

    def lab_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provisioner.cli", "-C", str(lab), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    done = lab_cmd("image", "import", str(archive), "--name", "mongo:7")
    assert done.returncode == 0, done.stderr
    assert "imported mongo:7 (library/mongo:7)" in done.stdout
    listed = lab_cmd("image", "ls")
    assert "mongo:7" in listed.stdout
    assert "library/mongo" in listed.stdout
    bad = lab_cmd("image", "import", str(archive), "--name", "Mongo")
    assert bad.returncode == 1
    assert "error: image name 'Mongo' is not a valid reference" in bad.stderr
    status = lab_cmd("registry", "status")
    assert f"registry: http://127.0.0.1:{registry.port}" in status.stdout
    removed = lab_cmd("image", "rm", "mongo:7")
    assert removed.returncode == 0, removed.stderr
    assert "mongo:7" not in lab_cmd("image", "ls").stdout
    assert lab_cmd("registry", "stop").returncode == 0
    assert lab_cmd("registry", "status").returncode == 3


def test_an_oci_archive_goes_in_under_its_own_name(tmp_path: Path, registry: LoopRegistry) -> None:
    archive = tmp_path / "app.tar"
    archive.write_bytes(two_layer_archive("lab-test/app:1", "oci"))
    oci = tmp_path / "app-oci.tar"
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            f"docker-archive:{archive}",
            f"oci-archive:{oci}:lab-test/oci:5",
        ],
        check=True,
        capture_output=True,
    )
    assert registry.images.import_archive(oci) == [ImageName("lab-test/oci", "5")]
    assert marker_in_image(registry.url, "lab-test/oci", "5") == "oci"


def test_doctor_checks_the_registry(
    tmp_path: Path, registry: LoopRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.doctor import check_registry

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "lab.yaml").write_text(f"registry: {{port: {registry.port}}}\n")
    running = check_registry(lab)
    assert running.ok
    assert f"running at http://127.0.0.1:{registry.port}" in running.detail
    host.stop(registry.root)
    assert check_registry(lab).ok  # stopped, and lab up may start it
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", registry.port))
        squatter.listen()
        taken = check_registry(lab)
    assert not taken.ok
    assert f"127.0.0.1:{registry.port} is taken" in taken.detail
    assert "registry.port" in (taken.fix or "")


def test_lab_up_step_off_or_without_a_local_gateway(tmp_path: Path) -> None:
    from provisioner.config import Overrides, build_config

    root = tmp_path / "registry"
    off = build_config({"registry": {"enabled": False}}, tmp_path, Overrides())
    assert host.for_lab(off, root=root) == "off (lab.yaml registry.enabled: false)"
    elsewhere = build_config({"subnet": "10.255.254.0/24"}, tmp_path, Overrides())
    assert host.for_lab(elsewhere, root=root).startswith(
        "skipped: the lab's gateway 10.255.254.1 is not an address of this host"
    )
    assert service.local(root).running() is None  # nothing was started for it
