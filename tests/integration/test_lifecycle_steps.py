"""``lab up``'s steps with libvirt's test:///default driver and fakes for what it cannot run.

The network, the domains and their states are real libvirt objects (the test driver, no
daemon); the render, the state file and the config drives (genisoimage) are real.
Vagrant, the guests' SSH, the box and the cluster checks are fakes
(tests/lifecycle_support.py), and so are volume uploads and downloads, which the test
driver does not do (a directory stands in for the pool; the real streams are tested in
test_libvirt_system.py): the booting of real guests under the same steps is covered by
the VM tier (tests/vm/test_lab.py). Covered here: an ``up`` interrupted during the boot
resumes, a second ``up`` on a running lab changes nothing, one node that fails is
reported with the others' outcomes kept, and a lab's snapshot (the test driver keeps
real libvirt snapshot objects; the real disks and memory are the VM tier's,
tests/vm/test_snapshot_vm.py) is taken of every node with all paused, restored to all
together, listed and removed.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner import nodes as node_access
from provisioner.config import LabConfig, Overrides, build_config
from provisioner.errors import HostKeyError, LabError
from provisioner.hypervisor import snapshots as domain_snapshots
from provisioner.hypervisor.libvirt import DomainState, LibvirtHost
from provisioner.hypervisor.naming import network_name
from provisioner.lifecycle import destroy, snapshots, start, up
from provisioner.progress import PlainProgress
from provisioner.state import load_state
from tests.lifecycle_support import TEST_URI, Fakes, FakeVagrant, progress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabConfig]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the host lock
    name = f"t{uuid.uuid4().hex[:8]}"
    raw = {"name": name, "subnet": "10.201.7.0/24", "num_instances": 3}
    lab = tmp_path / "lab"
    lab.mkdir()
    made = build_config(raw, lab, Overrides(discovery="static"))
    # the test driver's objects live while a connection is open: keep one for the test
    with LibvirtHost.open(TEST_URI) as keeper:
        try:
            yield made
        finally:
            keeper.remove_lab(name, "default-pool")


def test_an_up_resumes_past_a_domain_its_killed_vagrant_made_but_never_recorded(
    config: LabConfig,
) -> None:
    fakes = Fakes(config, FakeVagrant(config, interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        up(config, progress(), accel="tcg", backends=fakes.backends())
    # a vagrant up killed after defining core-01's domain, before writing its id
    half_made = node_access.domain_of(config, config.nodes[0])
    with LibvirtHost.open(TEST_URI) as host:
        host.connection.defineXML(
            f"<domain type='test'><name>{half_made}</name><memory>12345</memory>"
            "<os><type>hvm</type></os></domain>"
        )
    fakes.vagrant.interrupt = False
    up(config, progress(), accel="tcg", backends=fakes.backends())
    with LibvirtHost.open(TEST_URI) as host:
        assert "<memory unit='KiB'>65536</memory>" in host.domain(half_made).XMLDesc(0)
        assert host.state(half_made) is DomainState.RUNNING


def test_an_up_interrupted_during_the_boot_resumes_and_then_is_already_up(
    config: LabConfig,
) -> None:
    fakes = Fakes(config, FakeVagrant(config, interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        up(config, progress(), accel="tcg", backends=fakes.backends())
    state = load_state(config.state_dir)
    assert state.phases == ("render", "host", "box", "network", "discovery", "registry", "drives")
    with LibvirtHost.open(TEST_URI) as host:
        assert host.find_network(network_name(config.name)) is not None
        assert host.lab_objects(config.name).domains == ()
    # QEMU gets the drives and consoles as pool volumes, never files in the lab directory
    placed = node_access.libvirt_paths(config)
    for node in config.nodes:
        built = config.state_dir / "config-drives" / f"{node.name}.iso"
        drive = Path(placed["drives"][node.name])
        assert drive.name == f"{node_access.domain_of(config, node)}-config.iso"
        assert drive.read_bytes() == built.read_bytes()
        assert Path(placed["consoles"][node.name]).name.endswith("-console.log")
    vagrantfile = (config.directory / "Vagrantfile").read_text()
    assert "LIBVIRT_PATHS.dig('drives', name)" in vagrantfile

    # the next `lab up` resumes: the network is found, not made again, and the boot runs
    fakes.vagrant.interrupt = False
    out = io.StringIO()
    result = up(config, PlainProgress(out), accel="tcg", backends=fakes.backends())
    assert not result.already_up
    assert "network" in result.phase_seconds
    assert "(exists, isolated)" in out.getvalue()
    assert fakes.vagrant.ups == 2
    assert fakes.calls == ["host", "box", "registry", "host", "box", "registry", "cluster"]
    assert [r.system_state for r in result.nodes] == ["running"] * 3
    state = load_state(config.state_dir)
    assert state.phases[-1] == "cluster"
    assert sorted(state.host_keys) == ["core-01", "core-02", "core-03"]
    assert len(set(state.machine_ids.values())) == 3
    assert (config.state_dir / "known_hosts").exists()
    # every node was given every node's pinned key, under its name and address
    share = ("sudo", *node_access.replace_file_argv(node_access.SYSTEM_KNOWN_HOSTS))
    for node in config.nodes:
        written = fakes.runners[node.name].stdin[share].splitlines()
        assert written[1:] == [f"{n.name},{n.ip} ssh-ed25519 AAAA{n.name}" for n in config.nodes]
    # the consoles were read back through "libvirt" into .lab/logs, where lab reads them
    for node in config.nodes:
        assert "BEGIN SSH HOST KEY" in node_access.node_paths(config, node).console.read_text()

    # and the one after that finds it up: no step runs, nothing is booted
    again = up(config, progress(), accel="tcg", backends=fakes.backends())
    assert again.already_up
    assert fakes.vagrant.ups == 2
    assert fakes.calls == [
        *("host", "box", "registry", "host", "box", "registry", "cluster"),
        "registry",  # started again, were it stopped
    ]
    assert [r.machine_id for r in again.nodes] == [r.machine_id for r in result.nodes]


def test_already_up_needs_every_domain_running(config: LabConfig) -> None:
    fakes = Fakes(config, FakeVagrant(config))
    up(config, progress(), accel="tcg", backends=fakes.backends())
    with LibvirtHost.open(TEST_URI) as host:
        host.power_off(node_access.domain_of(config, config.nodes[1]))
        assert host.state(node_access.domain_of(config, config.nodes[1])) is DomainState.SHUTOFF
    result = up(config, progress(), accel="tcg", backends=fakes.backends())
    assert not result.already_up
    assert fakes.vagrant.ups == 2  # booted again: vagrant starts the node that was off


def test_a_failed_node_is_reported_with_the_others_kept(config: LabConfig) -> None:
    fakes = Fakes(config, FakeVagrant(config))
    fakes.broken["core-02"] = HostKeyError(
        "core-02: host key ED25519 SHA256:x does not match the pinned SHA256:y",
        hint="re-read its console fingerprints",
    )
    with pytest.raises(LabError) as failure:
        up(config, progress(), accel="tcg", backends=fakes.backends())
    message = str(failure.value)
    assert message.startswith("1 of 3 nodes are not ready:")
    assert "core-02: host key ED25519" in message  # a permanent error: no ten-minute wait
    assert "consoles and journals saved in" in (failure.value.hint or "")
    state = load_state(config.state_dir)
    assert "nodes" not in state.phases
    known_hosts = (config.state_dir / "known_hosts").read_text()  # the ready nodes' keys
    assert "core-01" in known_hosts
    assert "core-03" in known_hosts
    assert "core-02" not in known_hosts
    share = ("sudo", *node_access.replace_file_argv(node_access.SYSTEM_KNOWN_HOSTS))
    assert all(share not in runner.commands for runner in fakes.runners.values())
    assert "cluster" not in fakes.calls  # the cluster is not checked with a node down
    logs = node_access.log_dir(config)
    assert (logs / "core-01.journal").read_text() == "journal of core-01\n"
    assert "journal not collected" in (logs / "core-02.journal").read_text()

    # once the node is mended the next `lab up` completes
    fakes.broken.clear()
    assert not up(config, progress(), accel="tcg", backends=fakes.backends()).already_up
    assert fakes.calls[-1] == "cluster"


def test_destroy_removes_what_up_made(config: LabConfig) -> None:
    fakes = Fakes(config, FakeVagrant(config))
    up(config, progress(), accel="tcg", backends=fakes.backends())
    # the test driver has no pool named "default"; its own pool holds no lab volume
    result = destroy(config, backends=replace(fakes.backends()))
    assert len(result.domains) == 3
    assert result.networks == (network_name(config.name),)
    with LibvirtHost.open(TEST_URI) as host:
        assert host.lab_objects(config.name).empty
    assert not (config.state_dir / "state.json").exists()
    assert not (config.state_dir / "libvirt-paths.json").exists()
    assert node_access.node_paths(config, config.nodes[0]).console.exists()  # logs stay


def test_a_snapshot_holds_every_node_and_brings_them_back_together(config: LabConfig) -> None:
    fakes = Fakes(config, FakeVagrant(config))
    up(config, progress(), accel="tcg", backends=fakes.backends())
    backends = fakes.backends()
    domains = [node_access.domain_of(config, node) for node in config.nodes]
    with pytest.raises(LabError, match="not valid"):
        snapshots.save(config, "../clean", progress(), backends)

    saved = snapshots.save(config, "clean", progress(), backends)
    assert saved.nodes == ("core-01", "core-02", "core-03")
    [found] = snapshots.listed(config, backends)
    assert (found.name, found.nodes, found.complete) == ("clean", saved.nodes, True)
    with LibvirtHost.open(TEST_URI) as host:
        # taken while every node stood still; every node runs again afterwards
        assert {snap.state for d in domains for snap in domain_snapshots.listed(host, d)} == {
            "paused"
        }
        assert [host.state(d) for d in domains] == [DomainState.RUNNING] * 3
        host.power_off(domains[1])  # a fault after the snapshot
    with pytest.raises(LabError, match="already has a snapshot clean"):
        snapshots.save(config, "clean", progress(), backends)
    with pytest.raises(LabError, match=r"not every node runs: core-02 \(shutoff\)"):
        snapshots.save(config, "later", progress(), backends)
    with pytest.raises(LabError, match=r"has no snapshot other \(it has: clean\)"):
        snapshots.restore(config, "other", progress(), backends)

    fakes.calls.clear()
    restored = snapshots.restore(config, "clean", progress(), backends)
    with LibvirtHost.open(TEST_URI) as host:
        assert [host.state(d) for d in domains] == [DomainState.RUNNING] * 3
    assert fakes.calls == ["registry", "cluster"]
    assert restored.detail == "etcd 3/3"
    for name in ("core-01", "core-02", "core-03"):  # each guest's clock set to the host's
        assert any(c[:4] == ("sudo", "date", "-u", "-s") for c in fakes.runners[name].commands)

    assert snapshots.remove(config, "clean", backends) == saved.nodes
    assert snapshots.listed(config, backends) == []
    with pytest.raises(LabError, match="has no snapshot clean"):
        snapshots.remove(config, "clean", backends)


def test_start_returns_once_the_node_is_back_in_etcd_and_fleet(config: LabConfig) -> None:
    fakes = Fakes(config, FakeVagrant(config))
    up(config, progress(), accel="tcg", backends=fakes.backends())
    ids = load_state(config.state_dir).machine_ids
    asked = {"etcd": 0, "fleet": 0}

    def back() -> bool:  # the member's etcd answers healthy from the second question on
        asked["etcd"] += 1
        return asked["etcd"] >= 2

    def fleet() -> list[str]:  # fleet lists the node again from the second question on
        asked["fleet"] += 1
        return [i for n, i in ids.items() if n != "core-02" or asked["fleet"] >= 2]

    fakes.back, fakes.fleet = back, fleet
    with LibvirtHost.open(TEST_URI) as host:
        host.power_off(node_access.domain_of(config, config.nodes[1]))
    out = io.StringIO()
    assert start(config, ["core-02"], PlainProgress(out), fakes.backends()) == ["core-02"]
    assert asked == {"etcd": 3, "fleet": 2}  # not healthy; healthy but unlisted; both
    assert "core-02 back in etcd and fleet" in out.getvalue()
