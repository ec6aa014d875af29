from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provisioner.config import (
    Overrides,
    build_config,
    config_warnings,
    default_lab_name,
    default_subnet,
    load_config,
    node_mac,
    quorum_row,
    quorum_table,
    topology_line,
)
from provisioner.errors import ConfigError

SEED_METADATA = {
    "nodes": {
        "core-01": {"metadata": "compute=web,rack=rack1"},
        "core-02": {"metadata": {"compute": "web", "rack": "rack2"}},
        "core-03": {"metadata": "compute=db,rack=rack3"},
    }
}


def write_lab(tmp_path: Path, text: str) -> Path:
    (tmp_path / "lab.yaml").write_text(text)
    return tmp_path


def test_defaults_follow_coreos_vagrant(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.num_instances == 3
    assert [n.name for n in config.nodes] == ["core-01", "core-02", "core-03"]
    network = config.network
    assert [n.ip for n in config.nodes] == [
        str(network.network_address + i) for i in (101, 102, 103)
    ]
    assert config.gateway == str(network.network_address + 1)
    assert all(n.is_member for n in config.nodes)
    assert config.discovery == "local"


def test_flags_override_file(tmp_path: Path) -> None:
    write_lab(tmp_path, "num_instances: 5\nvm_memory: 1024\n")
    config = load_config(tmp_path, Overrides(num_instances=2))
    assert config.num_instances == 2
    assert config.vm_memory == 1024


def test_seed_metadata_example(tmp_path: Path) -> None:
    config = build_config(SEED_METADATA, tmp_path, Overrides())
    assert [n.metadata_string for n in config.nodes] == [
        "compute=web,rack=rack1,role=core",
        "compute=web,rack=rack2,role=core",
        "compute=db,rack=rack3,role=core",
    ]


def test_lab_wide_metadata_is_merged_under_node_metadata(tmp_path: Path) -> None:
    raw = {"metadata": "dc=home,rack=any", "nodes": {"core-02": {"metadata": "rack=r2"}}}
    config = build_config(raw, tmp_path, Overrides())
    assert config.node("core-01").metadata_string == "dc=home,rack=any,role=core"
    assert config.node("core-02").metadata_string == "dc=home,rack=r2,role=core"


def test_workers_after_members(tmp_path: Path) -> None:
    config = build_config({"num_instances": 5, "etcd_members": 3}, tmp_path, Overrides())
    assert [n.role for n in config.nodes] == ["core"] * 3 + ["worker"] * 2
    assert len(config.members) == 3


@pytest.mark.parametrize(
    ("count", "core"), [(1, 1), (3, 3), (4, 4), (5, 5), (6, 3), (9, 3), (10, 5), (150, 5)]
)
def test_default_core_is_every_node_up_to_five_then_an_odd_core(
    tmp_path: Path, count: int, core: int
) -> None:
    config = build_config({"num_instances": count}, tmp_path, Overrides())
    assert [n.role for n in config.nodes] == ["core"] * core + ["worker"] * (count - core)
    assert config.etcd_members == core


def test_workers_flag_wins_over_lab_yaml(tmp_path: Path) -> None:
    raw = {"num_instances": 5, "etcd_members": 5}
    config = build_config(raw, tmp_path, Overrides(num_instances=8, workers=5))
    assert (len(config.members), len(config.workers)) == (3, 5)
    from_file = build_config({"num_instances": 8, "workers": 3}, tmp_path, Overrides())
    assert (len(from_file.members), len(from_file.workers)) == (5, 3)


def test_workers_flag_errors_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, tmp_path, Overrides(num_instances=2, workers=2))
    assert "--workers 2 on 2 node(s) leaves no core node" in str(info.value)
    assert info.value.hint == "with 2 nodes use at most 1 workers, or more nodes (--nodes)"


def test_role_metadata_merges_under_the_users(tmp_path: Path) -> None:
    raw = {
        "num_instances": 4,
        "workers": 2,
        "metadata": "dc=home",
        "nodes": {"core-04": {"metadata": "role=frontend"}},
    }
    config = build_config(raw, tmp_path, Overrides())
    assert [n.metadata_string for n in config.nodes] == [
        "dc=home,role=core",
        "dc=home,role=core",
        "dc=home,role=worker",
        "dc=home,role=frontend",  # the user's value wins; the node is still a worker
    ]
    assert config.node("core-04").role == "worker"


def test_a_node_role_overrides_the_count(tmp_path: Path) -> None:
    raw = {"num_instances": 3, "nodes": {"core-02": {"role": "worker"}}}
    config = build_config(raw, tmp_path, Overrides())
    assert [n.role for n in config.nodes] == ["core", "worker", "core"]
    assert config.etcd_members == 2


def test_etcdctl_api_defaults_to_3(tmp_path: Path) -> None:
    assert build_config({}, tmp_path, Overrides()).etcdctl_api == 3
    assert build_config({"etcdctl_api": 2}, tmp_path, Overrides()).etcdctl_api == 2


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"num_instances": 0}, "num_instances", "between 1 and"),
        ({"vm_memory": 128}, "vm_memory", "minimum of 384"),
        ({"num_instance": 3}, "num_instance", "did you mean 'num_instances'"),
        ({"vm_cpus": "two"}, "vm_cpus", "expected int, got str"),
        ({"enable_serial_logging": "yes"}, "enable_serial_logging", "expected bool"),
        ({"subnet": "192.168.7.0/26", "num_instances": 3}, "subnet", "too small"),
        ({"subnet": "8.8.8.0/24"}, "subnet", "not a private range"),
        ({"subnet": "nonsense"}, "subnet", "invalid subnet"),
        ({"discovery": "carrier-pigeon"}, "discovery", "unknown discovery mode"),
        ({"nodes": {"core-09": {}}}, "nodes.core-09", "no such node"),
        ({"nodes": {"core-01": {"rol": "worker"}}}, "nodes.core-01.rol", "did you mean 'role'"),
        ({"nodes": {"core-01": {"metadata": "rack"}}}, "nodes.core-01.metadata", "not key=value"),
        ({"etcd_members": 4}, "etcd_members", "between 1 and the number of nodes"),
        ({"etcd_members": 4}, "etcd_members", "use etcd_members: 3, or more nodes"),
        ({"workers": 3}, "workers", "workers 3 on 3 node(s) leaves no core node"),
        ({"workers": 3}, "workers", "use at most 2 workers"),
        ({"workers": -1}, "workers", "must be 0 or more"),
        (
            {"num_instances": 5, "workers": 2, "etcd_members": 2},
            "etcd_members",
            "set only one of etcd_members and workers",
        ),
        ({"nodes": {"core-02": {"ip": "10.9.9.9"}}}, "nodes.core-02.ip", "outside the lab's"),
        ({"nodes": {"core-02": {"ip": "nope"}}}, "nodes.core-02.ip", "invalid address 'nope'"),
        (
            {"subnet": "192.168.58.0/24", "nodes": {"core-02": {"ip": "192.168.58.1"}}},
            "nodes.core-02.ip",
            "is the gateway",
        ),
        (
            {"subnet": "192.168.58.0/24", "nodes": {"core-02": {"ip": "192.168.58.255"}}},
            "nodes.core-02.ip",
            "not a host",
        ),
        ({"nodes": {"core-02": {"ip": 7}}}, "nodes.core-02.ip", "expected str, got int"),
        (
            {
                "subnet": "192.168.58.0/24",
                "nodes": {"core-01": {"ip": "192.168.58.9"}, "core-03": {"ip": "192.168.58.9"}},
            },
            "nodes.core-03.ip",
            "192.168.58.9 is core-01's address too",
        ),
        (
            {"subnet": "192.168.58.0/24", "nodes": {"core-01": {"ip": "192.168.58.102"}}},
            "nodes.core-02.ip",
            "is core-01's address too",
        ),
        ({"ssh_authorized_keys": "ssh-ed25519 AAAA"}, "ssh_authorized_keys", "expected list"),
        ({"ssh_authorized_keys": ["hello"]}, "ssh_authorized_keys[0]", "not an OpenSSH public"),
        ({"ssh_authorized_keys": [3]}, "ssh_authorized_keys[0]", "expected a public key line"),
        ({"etcdctl_api": 4}, "etcdctl_api", "etcdctl has no API version 4"),
        ({"etcdctl_api": 4}, "etcdctl_api", "2 (etcdctl set/get/ls"),
        ({"etcdctl_api": "2"}, "etcdctl_api", "expected int, got str"),
        ({"nodes": {"core-01": {"role": "member"}}}, "nodes.core-01.role", "core (runs an etcd"),
        (
            {"num_instances": 2, "nodes": {n: {"role": "worker"} for n in ("core-01", "core-02")}},
            "nodes",
            "every node is a worker",
        ),
        ({"update_channel": "nightly"}, "update_channel", "unknown channel"),
        ({"forwarded_ports": {"80": "x"}}, "forwarded_ports.80", "port numbers"),
        ({"flannel": {"enable": True}}, "flannel.enable", "did you mean 'enabled'"),
        ({"flannel": {"backend": "ipsec"}}, "flannel.backend", "one of: vxlan, host-gw, udp"),
        ({"flannel": {"network": "10.1.0.0/30"}}, "flannel.network", "too small"),
        (
            {"subnet": "10.1.7.0/24", "flannel": {"network": "10.1.0.0/16"}},
            "flannel.network",
            "overlaps the lab network 10.1.7.0/24",
        ),
        ({"cloud_config": ["missing.yaml"]}, "cloud_config[0]", "file not found"),
        ({"libvirt_uri": "system"}, "libvirt_uri", "qemu+ssh://root@host/system"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, raw: dict[str, object], key: str, fragment: str
) -> None:
    source = tmp_path / "lab.yaml"
    with pytest.raises(ConfigError) as info:
        build_config(raw, tmp_path, Overrides(), source)
    assert info.value.key == key
    assert str(source) in str(info.value)
    assert fragment in str(info.value) + (info.value.hint or "")


def test_the_hypervisor_is_lab_yaml_then_libvirt_then_this_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    assert load_config(tmp_path).libvirt_uri == "qemu:///system"
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+ssh://root@10.0.0.2/system")
    assert load_config(tmp_path).libvirt_uri == "qemu+ssh://root@10.0.0.2/system"
    write_lab(tmp_path, "libvirt_uri: qemu+ssh://root@hv1/system?keyfile=/k\n")
    assert load_config(tmp_path).libvirt_uri == "qemu+ssh://root@hv1/system?keyfile=/k"
    (tmp_path / "lab.yaml").unlink()
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "not a uri")
    with pytest.raises(ConfigError, match=r"^LIBVIRT_DEFAULT_URI: 'not a uri' is not a libvirt"):
        load_config(tmp_path)


def test_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    write_lab(tmp_path, "num_instances: 3\nvm_memory: [1024\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "lab.yaml: line 3" in str(info.value) or "lab.yaml: line 2" in str(info.value)


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    write_lab(tmp_path, "- 3\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path)


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path, config_file=tmp_path / "nope.yaml")


def test_quorum_table() -> None:
    assert [(r.size, r.majority, r.tolerated) for r in map(quorum_row, (1, 3, 4, 5))] == [
        (1, 1, 0),
        (3, 2, 1),
        (4, 3, 1),
        (5, 3, 2),
    ]
    assert quorum_table().splitlines()[3].split() == ["4", "3", "1"]


def test_even_member_count_warns_with_table(tmp_path: Path) -> None:
    warnings = config_warnings(build_config({"num_instances": 4}, tmp_path, Overrides()))
    assert len(warnings) == 1
    assert "4 etcd members tolerate 1 failure(s)" in warnings[0]
    assert "failures tolerated" in warnings[0]
    assert config_warnings(build_config({"num_instances": 3}, tmp_path, Overrides())) == []


def test_names_and_macs_are_stable_and_distinct(tmp_path: Path) -> None:
    assert default_lab_name(tmp_path) == default_lab_name(tmp_path)
    assert default_lab_name(tmp_path) != default_lab_name(tmp_path / "other")
    macs = {node_mac("lab-a", i) for i in range(1, 201)}
    assert len(macs) == 200
    assert node_mac("lab-a", 1) != node_mac("lab-b", 1)
    assert all(mac.startswith("52:54:00:") for mac in macs)


def test_serial_logging_cannot_be_disabled(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"enable_serial_logging": False}, tmp_path, Overrides())
    assert info.value.key == "enable_serial_logging"
    assert "pin its SSH host keys" in str(info.value)


def test_topology_line_says_why_when_the_default_made_workers(tmp_path: Path) -> None:
    line = topology_line(build_config({"num_instances": 8}, tmp_path, Overrides()))
    assert line.startswith("topology: 3 core node(s) run etcd members, 5 worker(s)")
    assert "the default beyond 5 nodes: an odd core of 3 up to 9 nodes, 5 from 10" in line
    chosen = topology_line(build_config({"num_instances": 8, "workers": 3}, tmp_path, Overrides()))
    assert "default" not in chosen


def test_nodes_take_the_addresses_lab_yaml_gives(tmp_path: Path) -> None:
    raw = {
        "subnet": "10.0.0.0/24",
        "nodes": {"core-01": {"ip": "10.0.0.11"}, "core-03": {"ip": "10.0.0.13"}},
        "ssh_authorized_keys": ["ssh-ed25519 AAAAC3Nza me@laptop"],
    }
    config = build_config(raw, tmp_path, Overrides())
    assert [n.ip for n in config.nodes] == ["10.0.0.11", "10.0.0.102", "10.0.0.13"]
    assert config.ssh_authorized_keys == ("ssh-ed25519 AAAAC3Nza me@laptop",)


def test_a_small_subnet_is_fine_when_every_node_has_its_address(tmp_path: Path) -> None:
    nodes = {f"core-0{i}": {"ip": f"10.0.0.{i + 1}"} for i in (1, 2, 3)}
    config = build_config({"subnet": "10.0.0.0/28", "nodes": nodes}, tmp_path, Overrides())
    assert [n.ip for n in config.nodes] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_a_default_subnet_is_never_one_libvirt_or_vagrant_libvirt_take_by_default() -> None:
    # names whose hash lands on 192.168.121 (vagrant-libvirt's management network) and
    # 192.168.122 (libvirt's network "default") get another /24
    landing: dict[int, str] = {}
    for i in range(5000):
        name = f"vm-{i:04x}"
        third = 100 + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100
        landing.setdefault(third, name)
    assert {121, 122} <= set(landing)
    assert default_subnet(landing[121]) == "192.168.123.0/24"
    assert default_subnet(landing[122]) == "192.168.124.0/24"
    assert default_subnet(landing[150]) == "192.168.150.0/24"
