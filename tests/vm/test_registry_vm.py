"""The lab registry on the session's real 3-node lab: the seed's MongoService pattern.

An image the test builds from busybox (a layer of its own on top, holding a marker
file) goes in with `lab image import`; a fleet unit pulls it by its Docker Hub-style
name (`ExecStartPre=/usr/bin/docker pull NAME`) and runs it (`docker run --name X
NAME`), as the seed's mongo unit did. Its node is killed: fleet moves the unit and
the next node pulls the image from the lab registry too (docker's mirror at the lab's
gateway; the guests have no route out). The killed node is started again and the
image removed at the end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.config import load_config
from provisioner.registry.images import Images
from provisioner.registry.service import registry_root
from tests.registry_support import missing, two_layer_archive
from tests.vm import test_fleet_vm
from tests.vm.conftest import Lab
from tests.vm.test_fleet_vm import Fleet

# fleet's helper and its fixtures (a healthy lab before, the unit destroyed and every
# killed node started again after), shared with the fleet tests
fleet = test_fleet_vm.fleet
nodes = test_fleet_vm.nodes

pytestmark = [
    pytest.mark.vm,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
]

CONTAINER = "labtest-db"
PULL_TIMEOUT = 900.0  # docker's first start under TCG (about a minute), then the pull
MOVE_TIMEOUT = 900.0


def unit_text(image: str, marker: str) -> str:
    """The seed's MongoService unit, with the test's image."""
    return f"""[Unit]
Description=MongoService pattern with an image from the lab registry
After=docker.service
Requires=docker.service

[Service]
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker kill {CONTAINER}
ExecStartPre=-/usr/bin/docker rm {CONTAINER}
ExecStartPre=/usr/bin/docker pull {image}
ExecStart=/usr/bin/docker run --name {CONTAINER} {image} \\
    sh -c 'cat /etc/lab-marker; echo; exec sleep 100000'
ExecStop=/usr/bin/docker stop {CONTAINER}
"""


@pytest.fixture
def imported(lab: Lab, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(name, marker)``: a fresh image in the lab registry, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    name = f"{CONTAINER}:{tag}"
    marker = f"from the lab registry {tag}"
    archive = tmp_path / "image.tar"
    archive.write_bytes(two_layer_archive(f"{CONTAINER}:{tag}", marker))
    done = lab.run("image", "import", str(archive), "--name", name)
    assert f"imported {name} (library/{name})" in done.stdout
    try:
        yield name, marker
    finally:
        lab.run("image", "rm", name, check=False)


def registry_digest(name: str) -> str:
    """The manifest digest the host's registry holds for ``name``."""
    rows = {row.name.familiar: row for row in Images(registry_root()).rows()}
    return rows[name].digest


def pulled_digests(fleet: Fleet, node: str, name: str) -> list[str]:
    result = fleet.exec(
        node, "docker", "image", "inspect", name, "--format", "{{json .RepoDigests}}"
    )
    assert result.returncode == 0, result.stderr
    digests: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return digests


def test_a_fleet_unit_pulls_from_the_lab_registry_and_again_where_it_moves(
    lab: Lab, fleet: Fleet, imported: tuple[str, str]
) -> None:
    name, marker = imported
    repository = name.split(":")[0]
    digest = registry_digest(name)
    unit = fleet.unit_file(f"{CONTAINER}.service", unit_text(name, marker))
    fleet.ctl_ok("start", "--no-block", unit)

    def running_on() -> str | None:
        nodes = fleet.active().get(f"{CONTAINER}.service", [])
        return nodes[0] if len(nodes) == 1 else None

    first = fleet.wait(f"{CONTAINER}.service active on one node", running_on, PULL_TIMEOUT)
    # pulled through the mirror: the node's image carries the registry's manifest digest
    assert f"{repository}@{digest}" in pulled_digests(fleet, first, name)
    logs = fleet.exec(first, "docker", "logs", CONTAINER)
    assert marker in logs.stdout  # the layer of the test's own image, run by the unit

    fleet.kill(first)

    def moved() -> str | None:
        where = running_on()
        return where if where not in (None, first) else None

    second = fleet.wait(f"{CONTAINER}.service moved off {first}", moved, MOVE_TIMEOUT)
    assert f"{repository}@{digest}" in pulled_digests(fleet, second, name)
    assert marker in fleet.exec(second, "docker", "logs", CONTAINER).stdout

    # the registry's own address works as an explicit name, and the box's busybox is there
    address = load_config(lab.directory).registry_address
    explicit = fleet.exec(second, "docker", "pull", f"{address}/library/{name}")
    assert explicit.returncode == 0, explicit.stderr
    busybox = fleet.exec(second, "docker", "pull", "busybox")
    assert busybox.returncode == 0, busybox.stderr
    # fleet.clean_up destroys the unit and starts the killed node again (`lab start`)
