"""`lab drill`'s engine against a real 3-member etcd 3.4 on loopback, its members
killed and stopped by a local injector (tests/drill_support.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.drill.client import DrillClient
from provisioner.drill.engine import PREFIX, Settings, check_reads, run_drill, wait_healthy
from provisioner.drill.ledger import Attempt
from provisioner.drill.plan import select_scenarios
from provisioner.drill.report import render_scenario
from provisioner.drill.verdict import judge
from tests.drill_support import LocalInjector
from tests.etcd_support import EtcdMember, Etcds

pytestmark = pytest.mark.integration

SETTINGS = Settings(
    keys=20, interval=0.02, sample_every=0.1, hold=1.5, deadline=40.0, keep_keys=True
)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[list[EtcdMember], str]]:
    etcds = Etcds(tmp_path)
    members = [EtcdMember(tmp_path / name, name) for name in ("m1", "m2", "m3")]
    flag = "--initial-cluster=" + ",".join(f"{m.name}={m.peer_url}" for m in members)
    etcds.members += members
    try:
        for member in members:
            member.start(flag)
        yield members, flag
    finally:
        etcds.stop_all()


def test_faults_keep_every_acknowledged_write(three: tuple[list[EtcdMember], str]) -> None:
    members, flag = three
    client = DrillClient({m.name: m.client_url for m in members}, timeout=1.0)
    wait_healthy(client, 60.0)
    injector = LocalInjector(members, flag)
    scenarios = select_scenarios(
        ["follower-killed", "leader-partitioned", "quorum-partitioned", "follower-delayed"]
    )
    results = run_drill(scenarios, client, injector, SETTINGS, run_id="t")
    for result in results:
        print(render_scenario(result))
    follower, leader, quorum, delayed = results
    assert all(r.ok for r in results), [r.rules for r in results]

    # a follower killed: writes acknowledged through the others while it was down
    assert follower.figures is not None
    assert follower.figures.acked_during_fault > 0
    assert follower.losses == []
    assert injector.log[0][2] == follower.victims
    assert follower.leader_before not in follower.victims

    # the leader stopped: another member leads, writes go on, nothing lost
    assert leader.figures is not None
    assert leader.figures.new_leader is not None
    assert leader.victims == (leader.leader_before,)

    # a majority stopped: nothing acknowledged until it runs again, then writes resume
    assert quorum.figures is not None
    assert quorum.figures.acked_during_fault == 0
    assert quorum.figures.failed > 0
    assert quorum.figures.acked_after_recovery >= SETTINGS.keys
    assert len(quorum.victims) == 2

    assert delayed.skipped == "no netem on loopback processes"

    # a write the ledger says was acknowledged but etcd never saw is caught
    prefix = f"{PREFIX}t/follower-killed/"
    forged = Attempt(f"{prefix}forged", "never written", "m1", 0.0, 0.0, revision=10**6)
    acked = [*follower.ledger.acknowledged, forged]
    losses = check_reads(client, prefix, acked, deadline=1.0)
    assert {loss.key for loss in losses} == {forged.key}
    assert len(losses) == 6  # each member, linearizable and serializable
    assert follower.evidence is not None
    rules = judge(follower.scenario, dataclasses.replace(follower.evidence, losses=losses))
    assert [r.name for r in rules if not r.ok] == ["no acknowledged write lost"]
