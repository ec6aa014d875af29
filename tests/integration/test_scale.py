"""``lab scale`` with libvirt's test:///default driver and the lifecycle fakes.

The network (its DHCP reservations changed in place through libvirt's network update,
which the test driver does), the domains, the render, the state and the config drives
are real; Vagrant, the guests' SSH and fleet are the fakes of tests/lifecycle_support.py.
A real guest joining fleet, and fleet rescheduling a drained worker's units, are the VM
tier's. Covered here: 3 core nodes grown by two workers and shrunk back, refusals that
change nothing, an interrupted scale finished by a re-run or by ``lab up``, and removed
by ``lab destroy``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import nodes as node_access
from provisioner.config import LabConfig
from provisioner.errors import ConfigError, LabError
from provisioner.hypervisor.libvirt import DomainState, LibvirtHost
from provisioner.hypervisor.naming import network_name
from provisioner.lab import ScaleRecord, load_lab, scale_record
from provisioner.lifecycle import destroy, up
from provisioner.lifecycle.scale import scale
from provisioner.state import load_state
from tests.lifecycle_support import TEST_URI, Fakes, FakeVagrant, progress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STOP_FLEET = ("sudo", "systemctl", "stop", "fleet.service")
SHARE = ("sudo", *node_access.replace_file_argv(node_access.SYSTEM_KNOWN_HOSTS))
LAB_YAML = "name: {name}\nsubnet: 10.201.9.0/24\nnum_instances: 3\ndiscovery: static\n"


def machine_id(node: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_DNS, node).hex  # what FakeRunner says


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the host lock
    name = f"s{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "lab"
    directory.mkdir()
    (directory / "lab.yaml").write_text(LAB_YAML.format(name=name))
    with LibvirtHost.open(TEST_URI) as keeper:  # the test driver's objects live meanwhile
        try:
            yield directory
        finally:
            keeper.remove_lab(name, "default-pool")


def running_lab(directory: Path) -> tuple[LabConfig, Fakes]:
    """A lab of 3 core nodes, up; fleet lists every node whose fleet was not stopped."""
    config = load_lab(directory)
    fakes = Fakes(config, FakeVagrant(config, reload=lambda: load_lab(directory)))

    def fleet() -> list[str]:
        return [
            machine_id(name)
            for name, runner in fakes.runners.items()
            if STOP_FLEET not in runner.commands
        ]

    fakes.fleet = fleet
    assert not up(config, progress(), accel="tcg", backends=fakes.backends()).already_up
    return config, fakes


def dhcp_hosts(config: LabConfig) -> list[str]:
    with LibvirtHost.open(TEST_URI) as host:
        found = host.find_network(network_name(config.name))
    assert found is not None
    return [h.name for h in found.hosts]


def domains(config: LabConfig) -> dict[str, DomainState]:
    with LibvirtHost.open(TEST_URI) as host:
        return {d: host.state(d) for d in host.lab_objects(config.name).domains}


def test_scale_up_by_two_workers_and_back_down(lab: Path) -> None:
    config, fakes = running_lab(lab)
    pool = config.directory.parent / "pool"

    grown = scale(config, 2, progress(), accel="tcg", backends=fakes.backends())
    assert (grown.nodes, grown.workers, grown.added, grown.removed) == (
        5,
        2,
        ("core-04", "core-05"),
        (),
    )
    assert fakes.vagrant.booted == [None, "core-04", "core-05"]  # only the new nodes
    assert sorted(domains(config).values(), key=str) == [DomainState.RUNNING] * 5
    assert dhcp_hosts(config) == [f"core-0{i}" for i in range(1, 6)]
    state = load_state(config.state_dir)
    assert scale_record(state) == ScaleRecord(5, 2, 3, 0)
    assert (
        sorted(state.host_keys) == sorted(state.machine_ids) == [f"core-0{i}" for i in range(1, 6)]
    )
    known_hosts = (config.state_dir / "known_hosts").read_text()
    assert "core-04" in known_hosts or "10.201.9.104" in known_hosts
    assert "10.201.9.105" in known_hosts
    # every node, old and new, knows every node's key
    for i in range(1, 6):
        shared = fakes.runners[f"core-0{i}"].stdin[SHARE]
        assert all(f"core-0{j},10.201.9.10{j} " in shared for j in range(1, 6))
    # fleet was asked on the new node itself whether it lists it
    assert ("fleetctl", "list-machines", "--full", "--no-legend") in fakes.runners[
        "core-05"
    ].commands
    # rendered for five, lab.yaml untouched; every verb now sees the scaled lab
    assert (lab / "nodes" / "core-05" / "user-data").exists()
    assert "core-05" in node_access.libvirt_paths(config)["drives"]
    assert (lab / "lab.yaml").read_text().count("num_instances: 3") == 1
    scaled = load_lab(lab)
    assert [n.role for n in scaled.nodes] == ["core"] * 3 + ["worker"] * 2
    assert up(scaled, progress(), accel="tcg", backends=fakes.backends()).already_up

    # scaling to the same count again changes nothing
    again = scale(scaled, 2, progress(), accel="tcg", backends=fakes.backends())
    assert (again.added, again.removed) == ((), ())
    assert fakes.vagrant.booted == [None, "core-04", "core-05"]

    shrunk = scale(scaled, 0, progress(), accel="tcg", backends=fakes.backends())
    assert shrunk.removed == ("core-05", "core-04")  # the highest-numbered first
    for name in ("core-04", "core-05"):  # fleet stopped on the node first
        assert STOP_FLEET in fakes.runners[name].commands
    assert len(domains(config)) == 3
    assert dhcp_hosts(config) == ["core-01", "core-02", "core-03"]
    state = load_state(config.state_dir)
    assert scale_record(state) is None  # back at lab.yaml's shape
    assert sorted(state.machine_ids) == sorted(state.host_keys) == ["core-01", "core-02", "core-03"]
    assert "10.201.9.104" not in (config.state_dir / "known_hosts").read_text()
    assert not [p.name for p in pool.iterdir() if "core-04" in p.name or "core-05" in p.name]
    assert not (config.state_dir / "config-drives" / "core-05.iso").exists()
    assert "core-05" not in node_access.libvirt_paths(config)["drives"]
    assert not (lab / "nodes" / "core-05").exists()
    for i in range(1, 4):  # the remaining nodes forget the removed ones' keys
        assert "core-05" not in fakes.runners[f"core-0{i}"].stdin[SHARE]
    assert len(load_lab(lab).nodes) == 3


def test_refusals_change_nothing(lab: Path) -> None:
    config = load_lab(lab)
    fakes = Fakes(config, FakeVagrant(config))
    with pytest.raises(LabError, match="is not up") as not_up:
        scale(config, 2, progress(), accel="tcg", backends=fakes.backends())
    assert "`lab up` first" in (not_up.value.hint or "")

    config, fakes = running_lab(lab)
    before = (config.state_dir / "state.json").read_text()
    with pytest.raises(ConfigError, match="--workers: must be 0 or more"):
        scale(config, -1, progress(), accel="tcg", backends=fakes.backends())
    with pytest.raises(ConfigError, match="etcdctl member add"):
        scale(config, 2, progress(), nodes=4, accel="tcg", backends=fakes.backends())
    with pytest.raises(ConfigError, match="--workers: 200 workers make 203 nodes"):
        scale(config, 200, progress(), accel="tcg", backends=fakes.backends())
    assert (config.state_dir / "state.json").read_text() == before
    assert dhcp_hosts(config) == ["core-01", "core-02", "core-03"]
    assert fakes.vagrant.booted == [None]


def test_an_interrupted_scale_is_finished_by_a_rerun_or_removed_by_destroy(lab: Path) -> None:
    config, fakes = running_lab(lab)
    fakes.vagrant.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        scale(config, 2, progress(), accel="tcg", backends=fakes.backends())
    assert scale_record(load_state(config.state_dir)) == ScaleRecord(5, 2, 3, 0)
    assert dhcp_hosts(config) == [f"core-0{i}" for i in range(1, 6)]

    fakes.vagrant.interrupt = False
    done = scale(load_lab(lab), 2, progress(), accel="tcg", backends=fakes.backends())
    assert done.added == ("core-04", "core-05")
    assert len(domains(config)) == 5

    fakes.vagrant.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        scale(load_lab(lab), 4, progress(), accel="tcg", backends=fakes.backends())
    # `lab up` sees the scaled lab too: it brings up the rest (the reservations follow)
    fakes.vagrant.interrupt = False
    resumed = up(load_lab(lab), progress(), accel="tcg", backends=fakes.backends())
    assert [r.role for r in resumed.nodes] == ["core"] * 3 + ["worker"] * 4
    assert len(domains(config)) == 7
    removed = destroy(load_lab(lab), backends=fakes.backends())
    assert len(removed.domains) == 7
    with LibvirtHost.open(TEST_URI) as host:
        assert host.lab_objects(config.name).empty
    assert scale_record(load_state(config.state_dir)) is None
    assert len(load_lab(lab).nodes) == 3
