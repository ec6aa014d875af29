"""`lab vagrant-hook` with libvirt's test:///default driver: a lab that plain Vagrant
brings up and destroys, as lab records it.

The network, domains and their states are real libvirt objects (the test driver); the
render, the state file and the config drives are real. Vagrant, the guests' SSH and the
box are the fakes of tests/lifecycle_support.py. Real guests under plain vagrant are the
VM tier's (tests/vm/test_plain_vagrant_vm.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import nodes as node_access
from provisioner.config import LabConfig, Overrides, build_config
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.hypervisor.naming import network_name
from provisioner.lab import render
from provisioner.lifecycle import destroy
from provisioner.lifecycle.vagranthook import booted, destroyed, prepare
from provisioner.state import load_state
from tests.lifecycle_support import TEST_URI, Fakes, FakeVagrant, progress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabConfig]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the host lock
    name = f"t{uuid.uuid4().hex[:8]}"
    lab = tmp_path / "lab"
    lab.mkdir()
    made = build_config(
        {"name": name, "subnet": "10.201.9.0/24", "num_instances": 2},
        lab,
        Overrides(discovery="static"),
    )
    with LibvirtHost.open(TEST_URI) as keeper:
        try:
            yield made
        finally:
            keeper.remove_lab(name, "default-pool")


def test_a_lab_plain_vagrant_brings_up_and_destroys_is_the_labs(config: LabConfig) -> None:
    render(config, accel="tcg")
    fakes = Fakes(config, FakeVagrant(config))
    backends = fakes.backends()

    # `vagrant up` reads the Vagrantfile: lab prepares the host, box, network, drives
    detail = prepare(config, 2, progress(), backends)
    assert "new: core-01, core-02" in detail
    state = load_state(config.state_dir)
    assert state.phases == ("render", "host", "box", "network", "discovery", "drives")
    with LibvirtHost.open(TEST_URI) as host:
        assert host.find_network(network_name(config.name)) is not None
    placed = node_access.libvirt_paths(config)
    assert sorted(placed["drives"]) == ["core-01", "core-02"]

    # vagrant boots the nodes; its after-up trigger records each as lab up would
    fakes.vagrant.up(timeout=60)
    for node in config.nodes:
        assert node.name in booted(config, node.name, backends)
    state = load_state(config.state_dir)
    assert "boot" in state.phases
    assert sorted(state.host_keys) == ["core-01", "core-02"]
    assert len(set(state.machine_ids.values())) == 2
    known = (config.state_dir / "known_hosts").read_text()
    assert all(node.ip in known for node in config.nodes)

    # a second `vagrant up` (both running) makes nothing new, and rewrites no drive
    assert "new: none" in prepare(config, 2, progress(), backends)

    # `vagrant destroy -f`: each machine's trigger forgets it
    with LibvirtHost.open(TEST_URI) as host:
        host.undefine(node_access.domain_of(config, config.nodes[0]))
    assert destroyed(config, "core-01", backends) == "core-01 forgotten"
    state = load_state(config.state_dir)
    assert sorted(state.host_keys) == ["core-02"]
    assert "core-01" not in node_access.libvirt_paths(config)["drives"]
    with LibvirtHost.open(TEST_URI) as host:
        host.undefine(node_access.domain_of(config, config.nodes[1]))
    assert "no node left" in destroyed(config, "core-02", backends)
    state = load_state(config.state_dir)
    assert state.host_keys == {}
    assert "boot" not in state.phases

    # and `lab destroy` afterwards leaves nothing of the lab
    result = destroy(config, backends)
    assert network_name(config.name) in result.networks
    with LibvirtHost.open(TEST_URI) as host:
        assert host.lab_objects(config.name).domains == ()
        assert host.find_network(network_name(config.name)) is None
    assert not (config.state_dir / "state.json").exists()


def test_a_node_vagrant_makes_again_gets_a_fresh_console_and_pins(config: LabConfig) -> None:
    render(config, accel="tcg")
    fakes = Fakes(config, FakeVagrant(config))
    backends = fakes.backends()
    prepare(config, 2, progress(), backends)
    fakes.vagrant.up(timeout=60)
    booted(config, "core-01", backends)
    # core-01's domain goes behind lab's back (virsh undefine): the next `vagrant up`
    # makes it anew, so its old pins and console are dropped first
    with LibvirtHost.open(TEST_URI) as host:
        host.undefine(node_access.domain_of(config, config.nodes[0]))
    assert "new: core-01" in prepare(config, 2, progress(), backends)
    state = load_state(config.state_dir)
    assert "core-01" not in state.host_keys
    console = Path(node_access.libvirt_paths(config)["consoles"]["core-01"])
    assert console.read_text() == ""
