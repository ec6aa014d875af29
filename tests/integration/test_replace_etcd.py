"""``lab replace``'s etcd steps against a real 3-member etcd 3.4 on loopback, etcdctl
run on the host through a LocalRunner as the lab runs it on a member: a member
removed (once), added back (once), and started from an empty data directory with
initial-cluster-state existing; the quorum refusal; and the drill's
``member-replaced`` scenario through the engine with nothing acknowledged lost."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import facts
from provisioner.config import Overrides, build_config
from provisioner.drill.client import DrillClient
from provisioner.drill.engine import Settings, run_drill, wait_healthy
from provisioner.drill.plan import select_scenarios
from provisioner.drill.report import render_scenario
from provisioner.errors import LabError
from provisioner.lifecycle.replace import (
    add_member,
    check_quorum,
    healthy_members,
    member_named,
    remove_member,
)
from provisioner.remote.local import LocalRunner
from tests.drill_support import LocalInjector
from tests.etcd_support import EtcdMember, Etcds

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NAMES = ("core-01", "core-02", "core-03")


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[list[EtcdMember], str]]:
    etcds = Etcds(tmp_path)
    members = [EtcdMember(tmp_path / name, name) for name in NAMES]
    flag = "--initial-cluster=" + ",".join(f"{m.name}={m.peer_url}" for m in members)
    etcds.members += members
    try:
        for member in members:
            member.start(flag)
        client = DrillClient({m.name: m.client_url for m in members}, timeout=1.0)
        wait_healthy(client, 60.0)
        yield members, flag
    finally:
        etcds.stop_all()


def until(what: str, done: object, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_a_member_is_removed_added_back_and_joins_with_a_fresh_data_dir(
    three: tuple[list[EtcdMember], str], tmp_path: Path
) -> None:
    members, flag = three
    first, _, third = members
    host = LocalRunner(name="host")
    others = [m.client_url for m in members if m is not third]
    urls = {m.name: m.client_url for m in members}
    facts.etcd_put(others, "/lab/replace/before", "kept").run(host)
    assert healthy_members(host, urls) == set(NAMES)

    before = facts.member_list(others).run(host)
    old = member_named(before, third.name, third.peer_url, started=True)
    assert old is not None
    third.stop()
    shutil.rmtree(third.directory / "data")
    assert remove_member(host, others, third.name, third.peer_url) == old.hex_id
    assert remove_member(host, others, third.name, third.peer_url) is None  # once only
    assert sorted(m.name for m in facts.member_list(others).run(host)) == ["core-01", "core-02"]

    new_id = add_member(host, others, third.name, third.peer_url)
    assert add_member(host, others, third.name, third.peer_url) == new_id  # not twice
    listed = facts.member_list(others).run(host)
    assert len(listed) == 3
    assert new_id != old.hex_id
    assert member_named(listed, third.name, third.peer_url, started=True) is None  # unstarted

    third.start(flag, "--initial-cluster-state=existing")
    until("the fresh member to start", third.healthy)

    def joined() -> bool:
        found = member_named(
            facts.member_list(others).run(host), third.name, third.peer_url, started=True
        )
        return found is not None and found.hex_id == new_id

    until("etcd to list it started with its new id", joined)
    assert healthy_members(host, urls) == set(NAMES)
    value = host.run(
        [
            *facts.etcdctl(
                [third.client_url],
                "get",
                "--consistency=s",
                "--print-value-only",
                "/lab/replace/before",
            )
        ]
    )
    assert value.stdout.strip() == "kept"  # its own copy, replicated to the empty data dir
    config = build_config(
        {"name": "r", "subnet": "10.201.9.0/24", "num_instances": 3}, tmp_path, Overrides()
    )
    first.stop()  # one of the other two down: replacing core-03 would lose the quorum
    with pytest.raises(LabError, match="cannot replace core-03"):
        check_quorum(config, "core-03", healthy_members(host, urls))


def test_the_member_replaced_drill_loses_nothing(three: tuple[list[EtcdMember], str]) -> None:
    members, flag = three
    client = DrillClient({m.name: m.client_url for m in members}, timeout=1.0)
    injector = LocalInjector(members, flag)
    settings = Settings(keys=20, interval=0.02, sample_every=0.1, hold=1.5, deadline=40.0)
    (result,) = run_drill(
        select_scenarios(["member-replaced"]), client, injector, settings, run_id="r"
    )
    print(render_scenario(result))
    assert result.ok, result.rules
    assert result.leader_before not in result.victims
    (victim,) = result.victims
    assert injector.removed[victim] is not None
    assert injector.added[victim] != injector.removed[victim]  # a new member id
    assert result.figures is not None
    assert result.figures.acked_during_fault > 0
    assert result.losses == []
