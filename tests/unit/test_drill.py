"""The drill's bookkeeping as pure data: plans, the ledger, the timeline, the verdicts."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from provisioner.drill.client import parse_put_revision, parse_range, prefix_end
from provisioner.drill.engine import ScenarioResult
from provisioner.drill.ledger import Attempt, Found, Loss, lost_writes
from provisioner.drill.plan import BY_NAME, SCENARIOS, Target, select_scenarios, victims
from provisioner.drill.report import drill_json, render_scenario
from provisioner.drill.timeline import (
    Figures,
    LeaderSample,
    Phases,
    figures,
    leader_elected_during_fault,
)
from provisioner.drill.verdict import Evidence, Rule, judge
from provisioner.errors import ConfigError, RemoteError

pytestmark = pytest.mark.unit

MEMBERS = ["core-01", "core-02", "core-03"]


def ack(n: int, started: float, via: str = "core-01", revision: int | None = None) -> Attempt:
    return Attempt(f"/k/{n}", f"v{n}", via, started, started + 0.01, revision or n + 100)


def failed(n: int, started: float, via: str = "core-01") -> Attempt:
    return Attempt(f"/k/{n}", f"v{n}", via, started, started + 1.0, None, "timed out")


# --- plans ------------------------------------------------------------------------------


def test_scenarios_are_named_by_lab_name_or_etcd_case_in_the_order_given() -> None:
    chosen = select_scenarios(["quorum-killed", "blackhole_peer_port_tx_rx_leader"])
    assert [s.name for s in chosen] == ["quorum-killed", "leader-partitioned"]
    assert select_scenarios([]) == SCENARIOS
    assert select_scenarios(["leader-killed", "SIGTERM_LEADER"]) == (BY_NAME["leader-killed"],)


def test_an_unknown_scenario_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no drill scenario 'leader-exploded'") as caught:
        select_scenarios(["leader-killed", "leader-exploded"])
    assert caught.value.hint is not None
    assert "follower-killed" in caught.value.hint


def test_what_each_scenario_expects() -> None:
    assert [s.name for s in SCENARIOS if s.stops_writes] == ["quorum-killed", "quorum-partitioned"]
    assert [s.name for s in SCENARIOS if s.elects] == ["leader-killed", "leader-partitioned"]


def test_victims_follow_the_leader() -> None:
    assert victims(Target.LEADER, MEMBERS, "core-02") == ("core-02",)
    assert victims(Target.FOLLOWER, MEMBERS, "core-03") == ("core-02",)
    assert victims(Target.QUORUM, MEMBERS, "core-03") == ("core-03", "core-01")
    assert victims(Target.QUORUM, [*MEMBERS, "core-04", "core-05"], None) == tuple(MEMBERS)
    with pytest.raises(ConfigError, match="no leader"):
        victims(Target.FOLLOWER, MEMBERS, None)
    with pytest.raises(ConfigError, match="no follower"):
        victims(Target.FOLLOWER, ["core-01"], "core-01")


# --- ledger -----------------------------------------------------------------------------


def test_every_acknowledged_write_is_found_on_every_reader() -> None:
    acked = [ack(1, 0.0), ack(2, 0.1)]
    good = {a.key: Found(a.value, a.revision or 0) for a in acked}
    assert lost_writes(acked, {"core-01 linearizable": good, "core-02 serializable": good}) == []


def test_a_missing_changed_or_rewritten_key_is_a_loss() -> None:
    acked = [ack(1, 0.0), ack(2, 0.1), ack(3, 0.2), failed(4, 0.3)]
    reads = {
        "core-02 serializable": {
            "/k/1": Found("v1", 101),
            "/k/2": Found("other", 102),
            "/k/3": Found("v3", 999),  # same value, a later write
        }
    }
    assert lost_writes(acked, reads) == [
        Loss("/k/2", "core-02 serializable", "v2", "'other' at revision 102", 102),
        Loss("/k/3", "core-02 serializable", "v3", "'v3' at revision 999", 103),
    ]  # /k/4 was never acknowledged: not looked for


# --- timeline ---------------------------------------------------------------------------

PHASES = Phases(inject_started=10.0, inject_ended=10.5, recover_started=20.0, recover_ended=30.0)


def test_figures_of_a_killed_leader() -> None:
    attempts = [
        ack(1, 9.0),
        failed(2, 10.6),  # ends at 11.6: detected
        ack(3, 12.0),  # writable again 2.01 s after the fault
        ack(4, 21.0),
    ]
    samples = [
        LeaderSample(9.0, "core-01"),
        LeaderSample(11.0, None),
        LeaderSample(13.0, "core-02"),
    ]
    f = figures(attempts, samples, "core-01", PHASES)
    assert f.detect == pytest.approx(1.0)  # no leader seen at 11.0
    assert f.new_leader == pytest.approx(3.0)
    assert f.writable == pytest.approx(2.01)
    assert f.writable_after_recovery == pytest.approx(1.01)
    assert (f.acked, f.failed, f.acked_during_fault, f.acked_after_recovery) == (3, 1, 1, 1)
    assert leader_elected_during_fault(samples, "core-01", PHASES) == "core-02"


def test_figures_when_nothing_stopped_and_nothing_was_seen() -> None:
    f = figures([ack(1, 11.0)], [LeaderSample(11.0, "core-01")], "core-01", PHASES)
    assert (f.detect, f.new_leader, f.writable, f.writable_after_recovery) == (
        None,
        None,
        0.0,
        None,
    )


# --- verdicts ---------------------------------------------------------------------------


def evidence(**changes: Any) -> Evidence:
    f = Figures(
        1.0, 2.0, 2.0, 1.0, acked=10, failed=1, acked_during_fault=3, acked_after_recovery=4
    )
    base = Evidence(f, [], dict.fromkeys(MEMBERS, True), "core-02", None)
    return dataclasses.replace(base, **changes)


def failing(rules: list[Rule]) -> list[str]:
    return [r.name for r in rules if not r.ok]


def test_a_killed_leader_that_kept_every_rule() -> None:
    rules = judge(BY_NAME["leader-killed"], evidence())
    assert failing(rules) == []
    assert [r.name for r in rules] == [
        "every member answers",
        "no acknowledged write lost",
        "writable while the fault lasts",
        "a new leader while the fault lasts",
        "writes resume after recovery",
    ]


def test_a_lost_write_a_silent_member_and_no_election_each_fail() -> None:
    loss = Loss("/k/7", "core-03 serializable", "v7", None, 107)
    rules = judge(
        BY_NAME["leader-partitioned"],
        evidence(
            losses=[loss],
            answering={"core-01": True, "core-03": False},
            new_leader_during_fault=None,
        ),
    )
    assert failing(rules) == [
        "every member answers",
        "no acknowledged write lost",
        "a new leader while the fault lasts",
    ]
    lost = next(r for r in rules if r.name == "no acknowledged write lost")
    assert "1 lost (e.g. /k/7 on core-03 serializable: missing" in lost.detail


def test_without_a_quorum_writes_must_stop_and_resume() -> None:
    f = Figures(0.5, None, None, 3.0, 10, 5, acked_during_fault=0, acked_after_recovery=2)
    assert failing(judge(BY_NAME["quorum-killed"], evidence(figures=f))) == []
    f = Figures(0.5, None, None, None, 10, 5, acked_during_fault=1, acked_after_recovery=0)
    assert failing(judge(BY_NAME["quorum-partitioned"], evidence(figures=f))) == [
        "writes stop without a quorum",
        "writes resume after recovery",
    ]


def test_fleet_units_run_exactly_once() -> None:
    rules = judge(
        BY_NAME["follower-killed"], evidence(fleet_units={"a.service": 1, "b.service": 0})
    )
    assert failing(rules) == ["fleet runs each drill unit exactly once"]
    assert rules[-1].detail == "b.service: 0 running"


# --- the wire and the report -------------------------------------------------------------


def test_etcd_answers_are_parsed() -> None:
    answer = {"kvs": [{"key": "L2svMQ==", "value": "djE=", "mod_revision": "101"}]}
    assert parse_range(answer) == {"/k/1": Found("v1", 101)}
    assert parse_range({"header": {}}) == {}
    assert parse_put_revision({"header": {"revision": "42"}}) == 42
    with pytest.raises(RemoteError, match="without a revision"):
        parse_put_revision({"header": {}})
    assert prefix_end("/lab/drill/") == "/lab/drill0"


def test_the_report_shows_figures_rules_and_skips() -> None:
    result = ScenarioResult(BY_NAME["leader-killed"], leader_before="core-01", victims=("core-01",))
    ev = evidence()
    result.figures = ev.figures
    result.rules = judge(result.scenario, ev)
    text = render_scenario(result)
    assert "leader-killed (SIGTERM_LEADER)" in text
    assert "time to new leader                2.00s" in text
    assert "writes lost                       0" in text
    skipped = ScenarioResult(BY_NAME["follower-delayed"], skipped="no netem")
    assert render_scenario(skipped) == (
        "follower-delayed (DELAY_PEER_PORT_TX_RX_ONE_FOLLOWER): skipped: no netem"
    )
    document = json.loads(json.dumps(drill_json([result, skipped])))
    assert document["summary"] == {"scenarios": 2, "passed": 1, "skipped": 1, "failed": 0}
    assert document["scenarios"][0]["figures"]["new_leader"] == 2.0
    assert document["scenarios"][0]["writes_lost"] == 0


def test_a_write_in_flight_when_the_fault_struck_counts_as_its_first_failure() -> None:
    attempts = [failed(1, 9.8), ack(2, 11.0)]  # the failure ends at 10.8
    f = figures(attempts, [], "core-01", PHASES)
    assert f.detect == pytest.approx(0.8)
    assert f.writable == pytest.approx(1.01)
