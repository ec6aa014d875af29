"""The catalogue of guest facts: each command spelled once, read with its parser on the
captured outputs in tests/fixtures/parsers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from provisioner import facts
from provisioner.errors import RemoteError
from provisioner.etcdhttp import fleet_machine_key
from provisioner.facts import Fact
from provisioner.guest.fleet.etcd import EtcdClient
from provisioner.guest.fleet.registry import Registry
from provisioner.parsers import SystemState, parse_systemctl_failed
from provisioner.remote.runner import CommandResult

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "parsers"
NODE = "core-01"
MEMBERS = ("http://10.0.0.1:2379", "http://10.0.0.2:2379")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def answered(stdout: str, rc: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(rc=rc, stdout=stdout, stderr=stderr)


class Recorder:
    """A runner that answers every command with one result and records the calls."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.calls: list[tuple[Sequence[str], float | None]] = []

    @property
    def name(self) -> str:
        return NODE

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        self.calls.append((argv, timeout))
        return self.result

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise AssertionError("facts upload nothing")

    def close(self) -> None:
        return None


def every_fact() -> list[Fact[Any]]:
    return [
        facts.MACHINE_ID,
        facts.FAILED_UNITS,
        facts.system_state(),
        facts.unit_state("etcd2.service"),
        facts.DOCKER_SOCKET_LISTENS,
        facts.endpoint_health(MEMBERS),
        facts.endpoint_health(MEMBERS, cluster=True),
        facts.endpoint_status(MEMBERS),
        facts.endpoint_status(MEMBERS, cluster=True),
        facts.member_list(),
        facts.member_list(MEMBERS),
        facts.etcd_value(MEMBERS, "/lab/ready"),
        facts.etcd_put(MEMBERS, "/lab/ready", "x"),
        facts.FLEET_MACHINES,
    ]


# --- one spelling, one timeout ------------------------------------------------------


def test_every_fact_has_the_one_timeout() -> None:
    assert {fact.timeout for fact in every_fact()} == {facts.TIMEOUT}


def test_every_etcdctl_speaks_v3_with_the_one_set_of_deadlines() -> None:
    etcdctls = [f.argv for f in every_fact() if "etcdctl" in f.argv]
    assert len(etcdctls) == 8
    for argv in etcdctls:
        assert argv[: len(facts.ETCDCTL)] == facts.ETCDCTL
        assert argv[len(facts.ETCDCTL) : len(facts.ETCDCTL) + 2] == facts.ETCDCTL_DEADLINES


def test_etcdctl_names_the_endpoints_or_uses_the_nodes_own() -> None:
    assert f"--endpoints={','.join(MEMBERS)}" in facts.member_list(MEMBERS).argv
    assert not any(a.startswith("--endpoints") for a in facts.member_list().argv)


def test_json_where_the_tool_has_it() -> None:
    assert facts.FAILED_UNITS.argv[-1] == "--output=json"
    for fact in (facts.endpoint_health(MEMBERS), facts.endpoint_status(MEMBERS)):
        assert fact.argv[-2:] == ("-w", "json")
    assert facts.member_list().argv[-2:] == ("-w", "json")


def test_waiting_for_the_boot_is_bounded_on_the_guest_and_on_the_host() -> None:
    fact = facts.system_state(wait=90.5)
    assert fact.argv == ("timeout", "90", "systemctl", "is-system-running", "--wait")
    assert fact.timeout == 105.5


# --- reading answers ------------------------------------------------------------------


def test_failed_units_json_reads_as_the_table_does() -> None:
    units = facts.FAILED_UNITS.read(NODE, answered(fixture("systemctl-failed.json")))
    assert units == parse_systemctl_failed(fixture("systemctl-failed.txt"))
    assert facts.FAILED_UNITS.read(NODE, answered(fixture("systemctl-failed-none.json"))) == ()


def test_failed_units_json_tolerates_hidden_and_empty_columns() -> None:
    row = (
        '[{"UNIT":"a.service","LOAD":"loaded","ACTIVE":"failed","SUB":"failed",'
        '"JOB":null,"DESCRIPTION":null}]'
    )
    (unit,) = parse_systemctl_failed(row)
    assert (unit.unit, unit.description) == ("a.service", "")
    with pytest.raises(RemoteError, match="missing 'sub'"):
        parse_systemctl_failed('[{"unit":"a.service","load":"loaded","active":"failed"}]')


def test_endpoint_health_reads_an_unhealthy_endpoint_from_exit_1() -> None:
    fact = facts.endpoint_health(MEMBERS)
    health = fact.read(NODE, answered(fixture("etcd-endpoint-health-unreachable.json"), rc=1))
    assert [h.healthy for h in health] == [True, False]
    assert fact.read(NODE, answered(fixture("etcd-endpoint-health-3.json")))


def test_endpoint_health_in_text_reads_stderr_too() -> None:
    text = fixture("etcd-endpoint-health-unreachable.txt")
    health = facts.endpoint_health(MEMBERS).read(NODE, answered("", rc=1, stderr=text))
    assert any(not h.healthy for h in health)


def test_a_failed_command_names_the_node_the_command_and_stderr() -> None:
    fact = facts.member_list(MEMBERS)
    with pytest.raises(
        RemoteError, match=r"^core-01: `env ETCDCTL_API=3 etcdctl .*` exited with 1: Error: refused"
    ):
        fact.read(NODE, answered("", rc=1, stderr="Error: refused"))


def test_endpoint_status_exit_1_fails_a_read_but_parses_the_members_that_answered() -> None:
    fact = facts.endpoint_status(MEMBERS, cluster=True)
    partial = answered(fixture("etcd-endpoint-status-cluster.json"), rc=1)
    with pytest.raises(RemoteError, match="exited with 1"):
        fact.read(NODE, partial)
    statuses = fact.parse(partial)
    assert sum(1 for s in statuses if s.is_leader) == 1


def test_member_list_and_fleet_machines() -> None:
    members = facts.member_list().read(NODE, answered(fixture("etcd-member-list-3.json")))
    assert sorted(m.name for m in members) == ["core-01", "core-02", "core-03"]
    machines = facts.FLEET_MACHINES.read(NODE, answered(fixture("fleetctl-list-machines-full.txt")))
    assert [m.metadata for m in machines][:2] == [
        {"name": "core-01", "role": "member"},
        {"name": "core-02", "role": "member"},
    ]


def test_words_and_exit_codes() -> None:
    assert facts.MACHINE_ID.read(NODE, answered("0123abcd\n")) == "0123abcd"
    assert facts.system_state().read(NODE, answered("degraded\n", rc=1)) is SystemState.DEGRADED
    assert facts.unit_state("x.service").read(NODE, answered("inactive\n", rc=3)) == "inactive"
    assert facts.DOCKER_SOCKET_LISTENS.read(NODE, answered("", rc=0)) is True
    assert facts.DOCKER_SOCKET_LISTENS.read(NODE, answered("", rc=1)) is False
    assert facts.etcd_value(MEMBERS, "/k").read(NODE, answered("v\n")) == "v"


def test_run_goes_through_the_runner_with_the_facts_timeout() -> None:
    runner = Recorder(answered("0123abcd\n"))
    assert facts.MACHINE_ID.run(runner) == "0123abcd"
    assert runner.calls == [(facts.MACHINE_ID.argv, facts.TIMEOUT)]


# --- the host's reading of fleet's registry -------------------------------------------


def test_the_host_reads_the_machine_key_the_guest_registry_writes() -> None:
    machine_id = "113f16a7bc2d4a7f9e58d0e14bb6c8a1"
    guest = Registry(EtcdClient(["http://127.0.0.1:2379"]))
    assert fleet_machine_key(machine_id) == guest.machine_key(machine_id)
