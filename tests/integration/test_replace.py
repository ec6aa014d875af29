"""``lab replace`` with libvirt's test:///default driver and the lifecycle fakes.

The domains, the render, the state, the config drives and the known_hosts are real;
Vagrant, the guests' SSH and etcd's answers to etcdctl are fakes (etcd's own side is
tests/integration/test_replace_etcd.py, with real members on loopback). Covered: a
member and a worker replaced (a new domain, new pins, the member removed and added
once), refusals that change nothing, and a replacement interrupted during the boot
finished by a re-run or removed by ``lab destroy``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from provisioner import nodes as node_access
from provisioner.config import LabConfig
from provisioner.errors import ConfigError, LabError
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.lab import joined_existing, load_lab
from provisioner.lifecycle import destroy, up
from provisioner.lifecycle.replace import MEMBER_ADDED, MEMBER_REMOVED, THROWN_AWAY, replace_node
from provisioner.remote.runner import CommandResult
from provisioner.state import REPLACING, load_state
from tests.lifecycle_support import TEST_URI, Fakes, FakeVagrant, progress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LAB_YAML = (
    "name: {name}\nsubnet: 10.201.9.0/24\nnum_instances: 4\nworkers: 1\n"
    "discovery: static\nflannel:\n  enabled: false\n"
)
SHARE_MARK = "ssh_known_hosts"


@dataclass
class FakeEtcd:
    """etcd as etcdctl on any member sees it: the members by peer URL, each with its id
    and name (empty until it starts), the client URLs that answer unhealthy."""

    members: dict[str, tuple[int, str]]
    sick: set[str] = field(default_factory=set)
    changes: list[str] = field(default_factory=list)  # "remove ID" / "add NAME"
    next_id: int = 0x100

    def __call__(self, argv: Sequence[str]) -> CommandResult | None:
        if "etcdctl" not in argv:
            return None
        args = list(argv[list(argv).index("etcdctl") + 1 :])
        given = [a.split("=", 1)[1] for a in args if a.startswith("--endpoints=")]
        endpoints = given[0] if given else "http://127.0.0.1:2379"
        words = [a for a in args if not a.startswith("--") and a not in ("-w", "json")]
        if words[:2] == ["endpoint", "health"]:
            answers = [
                {"endpoint": url, "health": url not in self.sick, "took": "1ms"}
                for url in endpoints.split(",")
            ]
            return CommandResult(1 if self.sick else 0, json.dumps(answers), "")
        if words[:2] == ["member", "list"]:
            listed = [
                {"ID": mid, "name": name, "peerURLs": [peer], "clientURLs": []}
                for peer, (mid, name) in self.members.items()
            ]
            return CommandResult(0, json.dumps({"members": listed}), "")
        if words[:2] == ["member", "remove"]:
            self.changes.append(f"remove {words[2]}")
            gone = [p for p, (mid, _) in self.members.items() if f"{mid:x}" == words[2]]
            for peer in gone:
                del self.members[peer]
            return CommandResult(0, f"Member {words[2]} removed\n", "")
        if words[:2] == ["member", "add"]:
            self.changes.append(f"add {words[2]}")
            peer = next(a for a in args if a.startswith("--peer-urls=")).split("=", 1)[1]
            self.next_id += 1
            self.members[peer] = (self.next_id, "")
            return CommandResult(0, f"Member {self.next_id:x} added\n", "")
        return None

    def boot(self, config: LabConfig, node: str | None) -> None:
        """A fresh member starts with the node's boot and publishes its name."""
        for spec in config.nodes:
            peer = f"http://{spec.ip}:2380"
            if node in (None, spec.name) and peer in self.members:
                mid, _ = self.members[peer]
                self.members[peer] = (mid, spec.name)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the host lock
    name = f"r{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "lab"
    directory.mkdir()
    (directory / "lab.yaml").write_text(LAB_YAML.format(name=name))
    with LibvirtHost.open(TEST_URI) as keeper:  # the test driver's objects live meanwhile
        try:
            yield directory
        finally:
            keeper.remove_lab(name, "default-pool")


def running_lab(directory: Path) -> tuple[LabConfig, Fakes, FakeEtcd]:
    """3 core nodes and a worker, up; fleet lists every node; etcd has the 3 members."""
    config = load_lab(directory)
    fakes = Fakes(config, FakeVagrant(config))
    etcd = FakeEtcd({f"http://{m.ip}:2380": (i + 1, m.name) for i, m in enumerate(config.members)})
    fakes.etcd = etcd
    fakes.fleet = lambda: [uuid.uuid5(uuid.NAMESPACE_DNS, n.name).hex for n in config.nodes]
    boot = fakes.vagrant.up

    def up_and_start(node: str | None = None, **kw: object) -> None:
        boot(node, **kw)  # type: ignore[arg-type]
        etcd.boot(config, node)

    fakes.vagrant.up = up_and_start  # type: ignore[method-assign]
    assert not up(config, progress(), accel="tcg", backends=fakes.backends()).already_up
    return config, fakes, etcd


def domain_uuid(config: LabConfig, node: str) -> str:
    with LibvirtHost.open(TEST_URI) as host:
        domain = node_access.domain_of(config, config.node(node))
        return str(host.connection.lookupByName(domain).UUIDString())


def etcd2(directory: Path, node: str) -> dict[str, object]:
    user_data = yaml.safe_load((directory / "nodes" / node / "user-data").read_text())
    return dict(user_data["coreos"]["etcd2"])


def test_a_member_and_a_worker_are_replaced(lab: Path) -> None:
    config, fakes, etcd = running_lab(lab)
    before = domain_uuid(config, "core-02")
    assert etcd2(lab, "core-02")["initial-cluster-state"] == "new"

    done = replace_node(config, "core-02", progress(), accel="tcg", backends=fakes.backends())
    assert (done.node, done.member, done.old_member_id) == ("core-02", True, "2")
    assert done.new_member_id == "101"
    assert etcd.changes == ["remove 2", "add core-02"]
    assert etcd.members["http://10.201.9.102:2380"] == (0x101, "core-02")
    assert fakes.vagrant.booted == [None, "core-02"]  # only the replaced node, from scratch
    assert domain_uuid(config, "core-02") != before  # a new domain (and disk)
    state = load_state(config.state_dir)
    assert REPLACING not in state.extra  # finished
    assert joined_existing(state) == {"core-02"}
    assert state.host_keys["core-02"]  # pinned again from its console
    assert done.new_machine_id == state.machine_ids["core-02"]
    # its user-data joins the running cluster; every later render keeps it so
    joining = etcd2(lab, "core-02")
    assert joining["initial-cluster-state"] == "existing"
    assert str(joining["initial-cluster"]).count("=http://") == 3
    assert etcd2(lab, "core-01")["initial-cluster-state"] == "new"
    for name in ("core-01", "core-03", "core-04"):  # every node given the new key
        assert any(SHARE_MARK in " ".join(a) for a in fakes.runners[name].stdin)
    assert "10.201.9.102" in (config.state_dir / "known_hosts").read_text()

    worker = replace_node(config, "core-04", progress(), accel="tcg", backends=fakes.backends())
    assert (worker.member, worker.old_member_id, worker.new_member_id) == (False, None, None)
    assert etcd.changes == ["remove 2", "add core-02"]  # no etcd steps for a worker
    assert fakes.vagrant.booted == [None, "core-02", "core-04"]
    assert "proxy" in etcd2(lab, "core-04")
    assert up(load_lab(lab), progress(), accel="tcg", backends=fakes.backends()).already_up


def test_refusals_change_nothing(lab: Path) -> None:
    config = load_lab(lab)
    fakes = Fakes(config, FakeVagrant(config))
    with pytest.raises(LabError, match="is not up"):
        replace_node(config, "core-02", progress(), backends=fakes.backends())

    config, fakes, etcd = running_lab(lab)
    state = (config.state_dir / "state.json").read_text()
    with pytest.raises(ConfigError, match="no node named 'core-09'") as unknown:
        replace_node(config, "core-09", progress(), backends=fakes.backends())
    assert unknown.value.hint == "this lab has: core-01, core-02, core-03, core-04"
    etcd.sick = {"http://10.201.9.103:2379"}
    with pytest.raises(LabError, match="cannot replace core-02: etcd keeps a quorum only"):
        replace_node(config, "core-02", progress(), backends=fakes.backends())
    assert etcd.changes == []
    assert (config.state_dir / "state.json").read_text() == state
    assert fakes.vagrant.booted == [None]


def test_an_interrupted_replace_is_finished_by_a_rerun_or_removed_by_destroy(lab: Path) -> None:
    config, fakes, etcd = running_lab(lab)
    fakes.vagrant.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        replace_node(config, "core-03", progress(), accel="tcg", backends=fakes.backends())
    record = load_state(config.state_dir).extra[REPLACING]
    assert record == {"node": "core-03", "done": [MEMBER_REMOVED, THROWN_AWAY, MEMBER_ADDED]}
    with pytest.raises(LabError, match="replacement of core-03 is not finished"):
        replace_node(config, "core-01", progress(), backends=fakes.backends())

    fakes.vagrant.interrupt = False
    done = replace_node(config, "core-03", progress(), accel="tcg", backends=fakes.backends())
    assert done.new_member_id == "101"
    assert etcd.changes == ["remove 3", "add core-03"]  # neither done twice
    assert REPLACING not in load_state(config.state_dir).extra

    fakes.vagrant.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        replace_node(config, "core-02", progress(), accel="tcg", backends=fakes.backends())
    removed = destroy(load_lab(lab), backends=fakes.backends())
    assert len(removed.domains) == 3  # core-02 was thrown away before its boot began
    with LibvirtHost.open(TEST_URI) as host:
        assert host.lab_objects(config.name).empty
    assert REPLACING not in load_state(config.state_dir).extra
