"""Rendering: golden files, determinism, validation, and not clobbering edits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from provisioner.config import Overrides, build_config
from provisioner.errors import ConfigError, LabError, ValidationError
from provisioner.guest.cloudinit.validate import validate
from provisioner.render import (
    RenderInputs,
    load_fragments,
    render_lab,
    to_yaml,
    write_files,
    yaml_str,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "render"
UPDATE = os.environ.get("LAB_UPDATE_GOLDEN") == "1"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoldenGoldenGoldenGoldenGoldenGoldenGold lab"
TOKEN_URL = "http://192.168.58.1:8087/v2/keys/_etcd/registry/0123456789abcdef0123456789abcdef"
LAB_PLACEHOLDER = "@LAB_DIR@"
USER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUserUserUserUserUserUserUserUserUserUserUse me@laptop"
)
PUBLIC_URL = "https://discovery.etcd.io/0123456789abcdef0123456789abcdef"
EXTERNAL_NODES = {
    "core-01": {"ip": "10.0.0.11"},
    "core-02": {"ip": "10.0.0.12"},
    "core-03": {"ip": "10.0.0.13"},
}
# user-data for machines lab does not boot: (lab.yaml, discovery URL or None, lab key too)
EXTERNAL_CASES: dict[str, tuple[dict[str, object], str | None, bool]] = {
    "external-static": (
        {"subnet": "10.0.0.0/24", "nodes": EXTERNAL_NODES, "ssh_authorized_keys": [USER_KEY]},
        None,
        False,
    ),
    "external-url": (
        {"subnet": "10.0.0.0/24", "nodes": EXTERNAL_NODES, "ssh_authorized_keys": [USER_KEY]},
        PUBLIC_URL,
        True,
    ),
}

SEED = {
    "nodes": {
        "core-01": {"metadata": "compute=web,rack=rack1"},
        "core-02": {"metadata": "compute=web,rack=rack2"},
        "core-03": {"metadata": "compute=db,rack=rack3"},
    },
}

CASES: dict[str, tuple[dict[str, object], str | None]] = {
    "nodes-1": ({"num_instances": 1}, TOKEN_URL),
    "nodes-3": ({"num_instances": 3}, TOKEN_URL),
    "nodes-5-static": ({"num_instances": 5, "discovery": "static"}, None),
    "seed-metadata": (
        {**SEED, "cloud_config": [str(FIXTURES / "extra-units.yaml")], "agent_ttl": "10s"},
        TOKEN_URL,
    ),
    "production-3-core-5-workers": (
        {"num_instances": 8, "etcdctl_api": 2, "metadata": "dc=lab"},
        TOKEN_URL,
    ),
    "workers-flannel": (
        {"num_instances": 4, "etcd_members": 3, "flannel": {"enabled": True}},
        TOKEN_URL,
    ),
    # config.rb's knobs from lab.yaml: count, prefix, resources, ports, channel
    "knobs": (
        {
            "num_instances": 2,
            "instance_name_prefix": "node",
            "vm_memory": 1024,
            "vm_cpus": 2,
            "forwarded_ports": {80: 8080, 443: 8443},
            "update_channel": "beta",
            "ssh_authorized_keys": [USER_KEY],
        },
        TOKEN_URL,
    ),
    "registry-cache": (
        {
            "num_instances": 1,
            "registry": {"port": 5100, "upstream": "https://registry-1.docker.io"},
        },
        TOKEN_URL,
    ),
}


def render_case(
    lab_dir: Path,
    raw: dict[str, object],
    discovery_url: str | None,
    *,
    external: bool = False,
    lab_key: bool = True,
) -> dict[str, str]:
    config = build_config(
        {"name": "golden", "subnet": "192.168.58.0/24", **raw}, lab_dir, Overrides()
    )
    inputs = RenderInputs(
        ssh_public_key=PUBLIC_KEY,
        ssh_private_key_path=lab_dir / ".lab" / "ssh" / "id_ed25519",
        discovery_url=discovery_url,
        box_name="lab/default",
        box_version=None,
        driver="qemu",
        lab_command=("/opt/lab/bin/lab",),
        external=external,
        authorize_lab_key=lab_key,
    )
    return render_lab(config, inputs)


def golden_files(tmp_path: Path, case: str) -> dict[str, str]:
    if case in EXTERNAL_CASES:
        raw, url, lab_key = EXTERNAL_CASES[case]
        return render_case(tmp_path, raw, url, external=True, lab_key=lab_key)
    raw, url = CASES[case]
    return render_case(tmp_path, raw, url)


@pytest.mark.parametrize("case", sorted([*CASES, *EXTERNAL_CASES]))
def test_golden(tmp_path: Path, case: str) -> None:
    files = golden_files(tmp_path, case)
    normalised = {rel: text.replace(str(tmp_path), LAB_PLACEHOLDER) for rel, text in files.items()}
    root = GOLDEN / case
    if UPDATE:
        for rel, text in normalised.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    expected = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    assert sorted(normalised) == sorted(expected)
    for rel, text in normalised.items():
        assert text == expected[rel], f"{case}/{rel} differs from the golden file"


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    first = render_case(tmp_path, {"num_instances": 5}, TOKEN_URL)
    second = render_case(tmp_path, {"num_instances": 5}, TOKEN_URL)
    assert first == second


def test_every_user_data_is_clean_cloud_config(tmp_path: Path) -> None:
    raw, url = CASES["seed-metadata"]
    files = render_case(tmp_path, raw, url)
    for rel, text in files.items():
        if rel.endswith("user-data"):
            assert validate(text) == [], rel


def test_seed_metadata_and_fragments_reach_the_nodes(tmp_path: Path) -> None:
    raw, url = CASES["seed-metadata"]
    files = render_case(tmp_path, raw, url)
    node3 = yaml.safe_load(files["nodes/core-03/user-data"])
    assert node3["hostname"] == "core-03"
    assert node3["coreos"]["fleet"]["metadata"] == "compute=db,rack=rack3,role=core"
    assert node3["coreos"]["fleet"]["public-ip"] == "192.168.58.103"
    assert node3["coreos"]["etcd2"]["discovery"] == TOKEN_URL
    assert node3["coreos"]["etcd2"]["advertise-client-urls"].startswith(
        "http://192.168.58.103:2379"
    )
    units = [unit["name"] for unit in node3["coreos"]["units"]]
    assert units == [
        "etcd2.service",
        "flannel-network-config.service",  # flannel is on by default
        "flanneld.service",
        "docker.service",
        "fleet.service",
        "hello.service",
    ]
    assert "Hello World" in node3["coreos"]["units"][-1]["content"]
    assert node3["write_files"][-1]["path"] == "/etc/motd"  # after the lab's own files
    assert node3["ssh_authorized_keys"] == [PUBLIC_KEY]
    assert "$private_ipv4" not in files["nodes/core-03/user-data"]


def test_static_bootstrap_lists_every_member(tmp_path: Path) -> None:
    files = render_case(tmp_path, {"num_instances": 3, "discovery": "static"}, None)
    etcd2 = yaml.safe_load(files["nodes/core-02/user-data"])["coreos"]["etcd2"]
    assert "discovery" not in etcd2
    assert etcd2["initial-cluster"] == (
        "core-01=http://192.168.58.101:2380,core-02=http://192.168.58.102:2380,"
        "core-03=http://192.168.58.103:2380"
    )
    assert etcd2["initial-cluster-state"] == "new"


def test_workers_run_etcds_proxies_and_use_127_0_0_1(tmp_path: Path) -> None:
    files = render_case(tmp_path, {"num_instances": 4, "etcd_members": 3}, TOKEN_URL)
    worker = yaml.safe_load(files["nodes/core-04/user-data"])
    # CoreOS's worker: etcd2 as a v2 proxy to the members' peer URLs (on port 4001 here)
    assert worker["coreos"]["etcd2"] == {
        "proxy": "on",
        "initial-cluster": "core-01=http://192.168.58.101:2380,"
        "core-02=http://192.168.58.102:2380,core-03=http://192.168.58.103:2380",
        "listen-client-urls": "http://0.0.0.0:4001",
    }
    assert worker["coreos"]["fleet"]["etcd-servers"] == "http://127.0.0.1:2379"
    assert worker["coreos"]["flannel"]["etcd-endpoints"] == "http://127.0.0.1:2379"
    assert worker["coreos"]["fleet"]["metadata"] == "role=worker"
    units = {unit["name"]: unit for unit in worker["coreos"]["units"]}
    assert units["etcd2.service"]["command"] == "start"
    gateway = units["etcd-gateway.service"]
    assert gateway["command"] == "start"
    assert gateway["drop-ins"][0]["content"] == (
        "[Service]\nEnvironment=ETCD_GATEWAY_ENDPOINTS="
        "192.168.58.101:2379,192.168.58.102:2379,192.168.58.103:2379\n"
    )
    core = yaml.safe_load(files["nodes/core-01/user-data"])
    assert "proxy" not in core["coreos"]["etcd2"]
    assert "etcd-gateway.service" not in [unit["name"] for unit in core["coreos"]["units"]]


def test_invalid_fragment_is_refused_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "#cloud-config\ncoreos:\n  units:\n    - name: x.service\n      command: explode\n"
    )
    config = build_config({"cloud_config": [str(bad)]}, tmp_path, Overrides())
    with pytest.raises(ValidationError) as info:
        load_fragments(config)
    assert str(bad) in str(info.value)
    assert "line 5: error: invalid value explode" in str(info.value)


def test_fragment_may_not_set_cluster_keys(tmp_path: Path) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("#cloud-config\ncoreos:\n  etcd2:\n    name: mine\n")
    config = build_config({"cloud_config": [str(bad)]}, tmp_path, Overrides())
    with pytest.raises(ConfigError) as info:
        load_fragments(config)
    assert info.value.key == "coreos.etcd2"
    assert str(bad) in str(info.value)


def test_edited_files_are_not_overwritten(tmp_path: Path) -> None:
    record = write_files(tmp_path, {"config.rb": "$vm_memory = 768\n"}, {})
    (tmp_path / "config.rb").write_text("$vm_memory = 2048\n")
    with pytest.raises(LabError, match=r"edited since lab rendered them: config\.rb"):
        write_files(tmp_path, {"config.rb": "$vm_memory = 1024\n"}, record)
    assert (tmp_path / "config.rb").read_text() == "$vm_memory = 2048\n"
    write_files(tmp_path, {"config.rb": "$vm_memory = 1024\n"}, record, force=True)
    assert (tmp_path / "config.rb").read_text() == "$vm_memory = 1024\n"


def test_unchanged_files_are_rewritten_quietly(tmp_path: Path) -> None:
    record = write_files(tmp_path, {"a": "one\n"}, {})
    record = write_files(tmp_path, {"a": "two\n"}, record)
    assert (tmp_path / "a").read_text() == "two\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("core-01", "core-01"),
        ("compute=web,rack=rack1", "compute=web,rack=rack1"),
        ("http://10.0.0.1:2379,http://10.0.0.2:2379", "http://10.0.0.1:2379,http://10.0.0.2:2379"),
        ("yes", '"yes"'),
        ("123", '"123"'),
        ("a: b", '"a: b"'),
        ("#x", '"#x"'),
        ("", '""'),
    ],
)
def test_yaml_str_round_trips(value: str, expected: str) -> None:
    assert yaml_str(value) == expected
    assert yaml.safe_load(f"k: {yaml_str(value)}")["k"] == value


def test_to_yaml_keeps_multiline_blocks() -> None:
    text = to_yaml([{"name": "a.service", "content": "[Unit]\nDescription=a\n"}], 4)
    assert text.splitlines()[0] == "    - name: a.service"
    assert "content: |" in text


@pytest.mark.parametrize("api", [2, 3])
def test_etcdctl_api_reaches_login_shells_and_units(tmp_path: Path, api: int) -> None:
    files = render_case(tmp_path, {"num_instances": 1, "etcdctl_api": api}, TOKEN_URL)
    written = {
        entry["path"]: entry["content"]
        for entry in yaml.safe_load(files["nodes/core-01/user-data"])["write_files"]
    }
    assert f"\nexport ETCDCTL_API={api}\n" in written["/etc/profile.d/etcdctl-api.sh"]
    assert written["/etc/systemd/system.conf.d/10-etcdctl-api.conf"].endswith(
        f"[Manager]\nDefaultEnvironment=ETCDCTL_API={api}\n"
    )


def test_external_user_data_has_no_lab_gateway_key_or_emulation_tweaks(tmp_path: Path) -> None:
    raw, _, _ = EXTERNAL_CASES["external-static"]
    files = render_case(tmp_path, raw, None, external=True, lab_key=False)
    assert sorted(files) == [f"nodes/core-0{i}/user-data" for i in (1, 2, 3)]
    node = yaml.safe_load(files["nodes/core-02/user-data"])
    assert node["ssh_authorized_keys"] == [USER_KEY]  # the user's key only
    etcd2 = node["coreos"]["etcd2"]
    assert etcd2["initial-cluster"] == (
        "core-01=http://10.0.0.11:2380,core-02=http://10.0.0.12:2380,core-03=http://10.0.0.13:2380"
    )
    assert etcd2["advertise-client-urls"] == "http://10.0.0.12:2379,http://10.0.0.12:4001"
    assert "heartbeat-interval" not in etcd2  # no TCG tweak on someone else's machines
    assert node["coreos"]["fleet"]["public-ip"] == "10.0.0.12"
    for text in files.values():
        assert "192.168.58.1" not in text
        assert "10.0.0.1:" not in text
        assert validate(text) == [] or all("deprecated" in r.message for r in validate(text))


def test_external_user_data_with_a_url_and_the_lab_key(tmp_path: Path) -> None:
    raw, url, _ = EXTERNAL_CASES["external-url"]
    files = render_case(tmp_path, raw, url, external=True, lab_key=True)
    node = yaml.safe_load(files["nodes/core-01/user-data"])
    assert node["coreos"]["etcd2"]["discovery"] == PUBLIC_URL
    assert "initial-cluster" not in node["coreos"]["etcd2"]
    assert node["ssh_authorized_keys"] == [PUBLIC_KEY, USER_KEY]


def test_lab_nodes_authorize_the_users_keys_after_the_labs(tmp_path: Path) -> None:
    files = render_case(tmp_path, {"num_instances": 1, "ssh_authorized_keys": [USER_KEY]}, None)
    node = yaml.safe_load(files["nodes/core-01/user-data"])
    assert node["ssh_authorized_keys"] == [PUBLIC_KEY, USER_KEY]


def test_the_vagrantfile_runs_the_lab_that_rendered_it(tmp_path: Path) -> None:
    vagrantfile = render_case(tmp_path, {"num_instances": 1}, TOKEN_URL)["Vagrantfile"]
    assert 'RENDERED_LAB_COMMAND = ["/opt/lab/bin/lab"].freeze' in vagrantfile
    assert f'LAB_HOME = lab_path("{tmp_path}")' in vagrantfile
    assert "lab_hook('prepare', '--nodes', $num_instances.to_s)" in vagrantfile
    assert "machine.ssh.verify_host_key = LabHostKeys.new(name)" in vagrantfile
    assert "StrictHostKeyChecking=yes" in vagrantfile


def _daemon_json(files: dict[str, str], node: str = "core-01") -> dict[str, object] | None:
    data = yaml.safe_load(files[f"nodes/{node}/user-data"])
    for entry in data.get("write_files") or []:
        if entry["path"] == "/etc/docker/daemon.json":
            parsed: dict[str, object] = json.loads(entry["content"])
            return parsed
    return None


def test_docker_pulls_through_the_lab_registry_at_the_gateway(tmp_path: Path) -> None:
    files = render_case(tmp_path, {"num_instances": 3}, TOKEN_URL)
    for node in ("core-01", "core-02", "core-03"):
        assert _daemon_json(files, node) == {
            "registry-mirrors": ["http://192.168.58.1:5000"],
            "insecure-registries": ["192.168.58.1:5000"],
        }
        assert validate(files[f"nodes/{node}/user-data"]) == []


def test_the_pull_through_cache_is_the_second_mirror(tmp_path: Path) -> None:
    raw, url = CASES["registry-cache"]
    files = render_case(tmp_path, raw, url)
    assert _daemon_json(files) == {
        "registry-mirrors": ["http://192.168.58.1:5100", "http://192.168.58.1:5101"],
        "insecure-registries": ["192.168.58.1:5100", "192.168.58.1:5101"],
    }
    assert validate(files["nodes/core-01/user-data"]) == []


def test_no_daemon_json_with_the_registry_off(tmp_path: Path) -> None:
    files = render_case(tmp_path, {"num_instances": 1, "registry": {"enabled": False}}, TOKEN_URL)
    assert _daemon_json(files) is None
