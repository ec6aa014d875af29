"""``lab scale``'s plan (which workers to add and remove, refusals), the DHCP changes of
the network, the recorded shape and ``load_lab`` applying it: pure, no VM, no libvirt."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import LabConfig, Overrides, build_config
from provisioner.errors import ConfigError, LabError
from provisioner.hypervisor.network import DhcpHost, dhcp_changes, dhcp_host_xml, lab_network
from provisioner.lab import ScaleRecord, load_lab, scale_record, with_scale
from provisioner.lifecycle.scale import CORE_REFUSAL, ScalePlan, max_nodes_in, plan_scale
from provisioner.state import LabState, load_state, save_state

pytestmark = pytest.mark.unit

RAW: dict[str, Any] = {"name": "scale", "subnet": "10.201.8.0/24", "num_instances": 3}


def builder(tmp_path: Path, raw: dict[str, Any] | None = None) -> Callable[[Overrides], LabConfig]:
    return lambda overrides: build_config(raw or RAW, tmp_path, overrides)


def plan(
    tmp_path: Path,
    workers: int,
    *,
    current: LabConfig | None = None,
    present: Collection[str] = ("core-01", "core-02", "core-03"),
    ready: Collection[str] | None = None,
    nodes: int | None = None,
    raw: dict[str, Any] | None = None,
) -> ScalePlan:
    build = builder(tmp_path, raw)
    return plan_scale(
        current or build(Overrides()),
        workers,
        present=present,
        ready=present if ready is None else ready,
        build=build,
        nodes=nodes,
    )


def names(nodes: object) -> list[str]:
    return [n.name for n in nodes]  # type: ignore[attr-defined]


def test_growing_adds_the_next_workers_and_keeps_the_core(tmp_path: Path) -> None:
    grown = plan(tmp_path, 2)
    assert names(grown.add) == ["core-04", "core-05"]
    assert grown.remove == ()
    assert names(grown.target.members) == ["core-01", "core-02", "core-03"]
    assert [(n.name, n.role) for n in grown.target.workers] == [
        ("core-04", "worker"),
        ("core-05", "worker"),
    ]
    assert [n.ip for n in grown.add] == ["10.201.8.104", "10.201.8.105"]


def test_shrinking_removes_the_highest_numbered_workers_first(tmp_path: Path) -> None:
    build = builder(tmp_path)
    current = build(Overrides(num_instances=6, workers=3))
    present = [f"core-0{i}" for i in range(1, 7)]
    shrunk = plan(tmp_path, 1, current=current, present=present)
    assert names(shrunk.remove) == ["core-06", "core-05"]
    assert shrunk.add == ()
    assert names(shrunk.target.nodes) == present[:4]
    assert all(n.role == "worker" for n in shrunk.remove)


def test_the_same_count_again_changes_nothing(tmp_path: Path) -> None:
    assert plan(tmp_path, 0).unchanged


def test_a_resumed_grow_adds_what_is_not_up_and_a_resumed_shrink_removes_what_is_left(
    tmp_path: Path,
) -> None:
    build = builder(tmp_path)
    grown = build(Overrides(num_instances=5, workers=2))  # the record applied already
    everything = [f"core-0{i}" for i in range(1, 6)]
    # core-04 came up before the interruption, core-05's domain exists but never answered
    resumed = plan(tmp_path, 2, current=grown, present=everything, ready=everything[:4])
    assert names(resumed.add) == ["core-05"]
    # a shrink to none interrupted after its record: the lab is configured with 3 nodes,
    # but core-05 and core-04 are still there
    shrinking = plan(tmp_path, 0, present=everything, ready=everything)
    assert names(shrinking.remove) == ["core-05", "core-04"]


def test_refusals_name_the_flag_and_a_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--workers: must be 0 or more, got -1") as negative:
        plan(tmp_path, -1)
    assert "--workers 0" in (negative.value.hint or "")

    with pytest.raises(ConfigError, match="--nodes: --nodes 6 with --workers 2") as core:
        plan(tmp_path, 2, nodes=6)
    assert "etcdctl member add" in str(core.value)
    assert "etcdctl member remove" in str(core.value)
    assert "leave out --nodes" in (core.value.hint or "")
    assert plan(tmp_path, 2, nodes=5).target.num_instances == 5  # consistent --nodes is fine

    with pytest.raises(LabError, match="is not up: core-02 not running") as down:
        plan(tmp_path, 1, ready=["core-01", "core-03"])
    assert "`lab up`" in (down.value.hint or "")


def test_a_count_beyond_the_subnet_is_refused(tmp_path: Path) -> None:
    raw = {**RAW, "subnet": "10.201.9.0/25"}  # nodes at .101 upward, .127 is broadcast
    assert max_nodes_in(ipaddress.IPv4Network("10.201.9.0/25")) == 26
    assert plan(tmp_path, 23, raw=raw).target.num_instances == 26
    with pytest.raises(ConfigError, match="--workers: 24 workers make 27 nodes") as big:
        plan(tmp_path, 24, raw=raw)
    assert "--workers 23 or fewer" in (big.value.hint or "")


def test_removing_a_core_node_is_refused(tmp_path: Path) -> None:
    # lab.yaml makes core-05 core by role: shrinking past it would remove a member
    raw = {**RAW, "num_instances": 5, "nodes": {"core-05": {"role": "core"}}, "workers": 2}
    build = builder(tmp_path, raw)
    current = build(Overrides())
    assert names(current.members) == ["core-01", "core-02", "core-03", "core-05"]
    present = [f"core-0{i}" for i in range(1, 6)]
    with pytest.raises(ConfigError, match="--workers: 0 workers would remove core node") as no:
        plan_scale(current, 0, present=present, ready=present, build=build)
    assert CORE_REFUSAL in str(no.value)


def test_dhcp_changes_are_the_reservations_to_add_and_delete() -> None:
    def host(i: int) -> DhcpHost:
        return DhcpHost(f"core-0{i}", f"52:54:00:00:00:0{i}", ipaddress.IPv4Address(f"10.0.0.{i}"))

    three = lab_network("scale", "10.0.0.0/24", [host(2), host(3), host(4)])
    five = lab_network("scale", "10.0.0.0/24", [host(i) for i in (2, 3, 4, 5, 6)])
    grow = dhcp_changes(five, three)
    assert (grow.add, grow.delete) == ((host(5), host(6)), ())
    shrink = dhcp_changes(three, five)
    assert (shrink.add, shrink.delete) == ((), (host(5), host(6)))
    assert dhcp_changes(five, five).empty
    assert dhcp_host_xml(host(5)) == '<host mac="52:54:00:00:00:05" name="core-05" ip="10.0.0.5" />'


def test_the_record_is_dropped_back_at_lab_yaml_s_shape() -> None:
    state = with_scale(LabState(), ScaleRecord(5, 2, 3, 0))
    assert scale_record(state) == ScaleRecord(5, 2, 3, 0)
    assert scale_record(with_scale(state, ScaleRecord(3, 0, 3, 0))) is None
    assert scale_record(with_scale(state, None)) is None
    assert scale_record(LabState(extra={"scale": {"nodes": "x"}})) is None


def test_load_lab_applies_the_scaled_shape_unless_flags_say_otherwise(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("name: scale\nsubnet: 10.201.8.0/24\nnum_instances: 3\n")
    state_dir = tmp_path / ".lab"
    save_state(state_dir, with_scale(LabState(name="scale"), ScaleRecord(5, 2, 3, 0)))
    lab = load_lab(tmp_path)
    assert names(lab.nodes) == [f"core-0{i}" for i in range(1, 6)]
    assert names(lab.workers) == ["core-04", "core-05"]
    assert (tmp_path / "lab.yaml").read_text().endswith("num_instances: 3\n")  # untouched
    assert len(load_lab(tmp_path, Overrides(num_instances=3)).nodes) == 3
    assert scale_record(load_state(state_dir)) is not None


def test_the_cli_refuses_a_lab_that_is_not_up_and_status_says_scaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import provisioner.operate
    from provisioner.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "lab.yaml").write_text("name: scale\nsubnet: 10.201.8.0/24\nnum_instances: 3\n")
    result = CliRunner().invoke(main, ["-C", str(tmp_path), "scale", "--workers", "2"])
    assert result.exit_code == 1
    assert "lab scale is not up" in result.output
    assert "`lab up` first" in result.output

    save_state(tmp_path / ".lab", with_scale(LabState(name="scale"), ScaleRecord(5, 2, 3, 0)))
    monkeypatch.setattr(provisioner.operate, "status", lambda config: [])
    shown = CliRunner().invoke(main, ["-C", str(tmp_path), "status"])
    assert shown.exit_code == 0, shown.output
    assert "scaled by `lab scale` to 3 core + 2 workers from lab.yaml's 3 core + 0" in " ".join(
        shown.output.split()
    )
