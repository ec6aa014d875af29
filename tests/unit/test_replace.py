"""``lab replace``'s decisions without a lab: which node, whether the quorum holds,
which etcd member is the node's, where an interrupted replacement stands; the
replaced member's user-data; the drill's ``member-replaced`` scenario as data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provisioner.config import LabConfig, Overrides, build_config
from provisioner.drill.plan import Fault, Target, select_scenarios, victims
from provisioner.errors import ConfigError, LabError
from provisioner.lifecycle.replace import (
    MEMBER_REMOVED,
    check_quorum,
    check_replaceable,
    done_steps,
    member_named,
    peer_url,
)
from provisioner.parsers import EtcdMember
from provisioner.render import RenderInputs, render_lab
from provisioner.state import REPLACING

pytestmark = pytest.mark.unit

TOKEN_URL = "http://192.168.58.1:8087/v2/keys/_etcd/registry/0123456789abcdef0123456789abcdef"


def lab(tmp_path: Path, nodes: int = 3, workers: int = 0) -> LabConfig:
    raw = {"name": "r", "subnet": "192.168.58.0/24", "num_instances": nodes, "workers": workers}
    return build_config(raw, tmp_path, Overrides())


def test_an_unknown_node_is_named_with_the_labs_nodes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no node named 'core-09'") as refused:
        check_replaceable(lab(tmp_path), "core-09")
    assert refused.value.hint == "this lab has: core-01, core-02, core-03"
    assert check_replaceable(lab(tmp_path), "core-02").ip == "192.168.58.102"


def test_the_others_must_keep_a_quorum_of_the_cluster(tmp_path: Path) -> None:
    three = lab(tmp_path)
    check_quorum(three, "core-02", {"core-01", "core-03"})
    with pytest.raises(LabError, match=r"cannot replace core-02: .* 2 of its 3 members") as lost:
        check_quorum(three, "core-02", {"core-01"})
    assert "not healthy: core-03" in lost.value.message
    assert lost.value.hint is not None
    assert "lab start core-03" in lost.value.hint
    five = lab(tmp_path, 5)  # removed and added back unstarted: 3 of 5 must answer
    check_quorum(five, "core-01", {"core-02", "core-03", "core-04"})
    with pytest.raises(LabError, match="3 of its 5"):
        check_quorum(five, "core-01", {"core-02", "core-03"})
    with pytest.raises(LabError, match="only etcd member"):
        check_quorum(lab(tmp_path, 1), "core-01", set())


def test_the_member_is_found_by_name_or_unstarted_by_its_peer_url() -> None:
    url = "http://192.168.58.102:2380"
    old = EtcdMember(0x8E9E05C52164694D, "core-02", (url,), ())
    added = EtcdMember(0x91BC3C398FB3C146, "", (url,), ())
    other = EtcdMember(1, "core-01", ("http://192.168.58.101:2380",), ())
    assert member_named([other, old], "core-02", url, started=False) == old
    assert member_named([other, added], "core-02", url, started=False) == added
    assert member_named([other, added], "core-02", url, started=True) is None
    assert member_named([other], "core-02", url, started=False) is None


def test_an_unfinished_replacement_is_resumed_and_blocks_another(tmp_path: Path) -> None:
    extra = {REPLACING: {"node": "core-02", "done": [MEMBER_REMOVED]}}
    assert done_steps(extra, "core-02") == (MEMBER_REMOVED,)
    assert done_steps({}, "core-03") == ()
    with pytest.raises(LabError, match="replacement of core-02 is not finished") as blocked:
        done_steps(extra, "core-03")
    assert blocked.value.hint is not None
    assert "`lab replace core-02`" in blocked.value.hint


def test_a_replaced_member_joins_the_existing_cluster_never_the_discovery_token(
    tmp_path: Path,
) -> None:
    config = lab(tmp_path, 4, 1)
    inputs = RenderInputs(
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoldenGoldenGoldenGoldenGolden lab",
        ssh_private_key_path=tmp_path / "key",
        discovery_url=TOKEN_URL,
        box_name="lab/default",
        box_version=None,
        driver="qemu",
        joining=frozenset({"core-02"}),
    )
    files = render_lab(config, inputs)  # validated like every render
    etcd2 = yaml.safe_load(files["nodes/core-02/user-data"])["coreos"]["etcd2"]
    assert "discovery" not in etcd2
    assert etcd2["initial-cluster-state"] == "existing"
    assert etcd2["initial-cluster"] == ",".join(
        f"core-0{i}=http://192.168.58.10{i}:2380" for i in (1, 2, 3)
    )
    assert etcd2["initial-advertise-peer-urls"] == peer_url(config.node("core-02"))
    others = yaml.safe_load(files["nodes/core-01/user-data"])["coreos"]["etcd2"]
    assert others["discovery"] == TOKEN_URL
    worker = yaml.safe_load(files["nodes/core-04/user-data"])["coreos"]["etcd2"]
    assert worker["proxy"] == "on"


def test_the_member_replaced_scenario_is_etcds_sigquit_and_remove_one_follower() -> None:
    (scenario,) = select_scenarios(["sigquit_and_remove_one_follower"])
    assert (scenario.name, scenario.fault, scenario.target) == (
        "member-replaced",
        Fault.REPLACE,
        Target.FOLLOWER,
    )
    assert not scenario.stops_writes  # two of three still commit
    assert not scenario.elects
    assert victims(scenario.target, ["core-01", "core-02", "core-03"], "core-01") == ("core-03",)
