"""The expectations file: built from a lab's config, written, read back and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provisioner.checks.expectations import (
    NodeExpectation,
    expectations_for_lab,
    load_expectations,
    parse_expectations,
    render_expectations,
)
from provisioner.config import Overrides, build_config
from provisioner.errors import ConfigError

LAB = {
    "name": "demo",
    "num_instances": 3,
    "etcd_members": 2,
    "subnet": "192.168.150.0/24",
    "nodes": {"core-01": {"metadata": "rack=r1,disk=ssd"}},
}


def sample() -> dict[str, Any]:
    return {
        "format": 1,
        "lab": "demo",
        "etcd": {"members": 1},
        "flannel": None,
        "nodes": [
            {
                "name": "core-01",
                "ip": "127.0.0.1",
                "role": "core",
                "metadata": {"role": "core"},
                "etcd_endpoints": ["http://127.0.0.1:2379"],
                "units": ["etcd2.service"],
            }
        ],
    }


def test_built_from_a_lab_config(tmp_path: Path) -> None:
    config = build_config({**LAB, "flannel": {"enabled": True}}, tmp_path, Overrides())
    expected = expectations_for_lab(config)
    assert expected.lab == "demo"
    assert expected.etcd_members == 2
    core01, core02, core03 = expected.nodes
    assert (core01.name, core01.ip, core01.role) == ("core-01", "192.168.150.101", "core")
    assert core01.metadata == {"disk": "ssd", "rack": "r1", "role": "core"}
    assert core01.etcd_endpoints == ("http://127.0.0.1:2379",)
    assert core01.units[0] == "etcd2.service"
    assert "flanneld.service" in core01.units
    assert core03.role == "worker"
    assert core03.etcd_endpoints == ("http://127.0.0.1:2379",)  # its etcd gateway
    assert core03.units[:2] == ("etcd2.service", "etcd-gateway.service")
    assert {"fleet.service", "ssh.service", "docker.socket"} <= set(core03.units)
    assert core02.metadata == {"role": "core"}


def test_round_trips_through_json(tmp_path: Path) -> None:
    expected = expectations_for_lab(build_config(LAB, tmp_path, Overrides()))
    path = tmp_path / "expectations.json"
    path.write_text(render_expectations(expected))
    assert load_expectations(path) == expected
    assert json.loads(path.read_text())["format"] == 1


def test_node_lookup_names_the_known_nodes() -> None:
    expected = parse_expectations(json.dumps(sample()))
    assert expected.node("core-01").is_member
    with pytest.raises(ConfigError, match="no node named 'core-09'") as caught:
        expected.node("core-09")
    assert caught.value.hint is not None
    assert "core-01" in caught.value.hint


def broken(change: dict[str, Any], node_change: dict[str, Any] | None = None) -> str:
    data = {**sample(), **change}
    if node_change is not None:
        data["nodes"] = [{**sample()["nodes"][0], **node_change}]
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{", "not valid JSON"),
        (broken({"format": 2}), "format: format 2 is not supported"),
        (broken({"format": True}), "format: format True is not supported"),
        (broken({"extra": 1}), "extra: unknown key"),
        (broken({"etcd": {}}), "etcd.members: missing"),
        (broken({"etcd": {"members": -1}}), "etcd.members: expected a whole number"),
        (broken({"nodes": []}), "nodes: expected a non-empty list"),
        (broken({}, {"role": "boss"}), "nodes[0].role: 'boss' is not one of"),
        (broken({}, {"ip": ""}), "nodes[0].ip: expected a non-empty string"),
        (broken({}, {"metadata": {"a": 1}}), "nodes[0].metadata: expected an object of strings"),
        (broken({}, {"units": "etcd2.service"}), "nodes[0].units: expected a list of strings"),
        (broken({}, {"etcd_endpoints": [""]}), "nodes[0].etcd_endpoints[0]: expected a non-empty"),
        (broken({}, {"colour": "red"}), "nodes[0].colour: unknown key"),
    ],
)
def test_errors_name_the_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_expectations(text, "/labs/demo/.lab/expectations.json")
    assert str(caught.value).startswith("/labs/demo/.lab/expectations.json")
    assert where in str(caught.value)


def test_duplicate_nodes_are_refused() -> None:
    data = sample()
    data["nodes"] = data["nodes"] * 2
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.name: node 'core-01' is listed twice"):
        parse_expectations(json.dumps(data))


def test_missing_file_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the expectations file"):
        load_expectations(tmp_path / "nope.json")


def test_v2_endpoints_add_the_legacy_port_beside_the_client_port() -> None:
    node = NodeExpectation("core-04", "10.0.0.4", "worker", {}, ("http://127.0.0.1:2379",))
    assert node.v2_endpoints == ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
    other = NodeExpectation("core-01", "127.0.0.1", "core", {}, ("http://127.0.0.1:32001",))
    assert other.v2_endpoints == ("http://127.0.0.1:32001",)
