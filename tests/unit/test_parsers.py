"""Parsers against real etcdctl 3.4 output and fleetctl/systemctl output of the documented shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.errors import RemoteError
from provisioner.parsers import (
    SystemState,
    parse_endpoint_health,
    parse_endpoint_status,
    parse_go_duration,
    parse_is_system_running,
    parse_list_machines,
    parse_list_units,
    parse_member_list,
    parse_systemctl_failed,
    parse_v2_action,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "parsers"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- etcdctl member list ------------------------------------------------------


def test_member_list_json_reads_every_member() -> None:
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    raw = json.loads(fixture("etcd-member-list-3.json"))["members"]
    assert [m.member_id for m in members] == [r["ID"] for r in raw]
    assert sorted(m.name for m in members) == ["core-01", "core-02", "core-03"]
    assert all(m.started and not m.is_learner for m in members)
    core01 = next(m for m in members if m.name == "core-01")
    assert len(core01.client_urls) == 2  # advertised two client URLs
    assert all(url.startswith("http://") for m in members for url in m.peer_urls)


@pytest.mark.parametrize("form", ["etcd-member-list-3.txt", "etcd-member-list-3.table"])
def test_member_list_text_forms_match_json(form: str) -> None:
    # The same cluster printed three ways: hex IDs in text must be the JSON's decimal IDs.
    assert parse_member_list(fixture(form)) == parse_member_list(fixture("etcd-member-list-3.json"))


def test_member_list_text_keeps_the_hex_id_etcdctl_printed() -> None:
    members = parse_member_list(fixture("etcd-member-list-3.txt"))
    printed = [line.split(",")[0] for line in fixture("etcd-member-list-3.txt").splitlines()]
    assert [m.hex_id for m in members] == printed


@pytest.mark.parametrize(
    "form", ["etcd-member-list-unstarted.json", "etcd-member-list-unstarted.txt"]
)
def test_unstarted_member_has_no_name_and_no_client_urls(form: str) -> None:
    members = parse_member_list(fixture(form))
    unstarted = [m for m in members if not m.started]
    assert len(members) == 4
    assert len(unstarted) == 1
    assert unstarted[0].name == ""
    assert unstarted[0].client_urls == ()
    assert len(unstarted[0].peer_urls) == 1


def test_unstarted_text_and_json_agree() -> None:
    assert parse_member_list(fixture("etcd-member-list-unstarted.txt")) == parse_member_list(
        fixture("etcd-member-list-unstarted.json")
    )


def test_member_list_learner_flag() -> None:
    text = "8e9e05c52164694d, started, core-04, http://10.0.0.4:2380, http://10.0.0.4:2379, true\n"
    (member,) = parse_member_list(text)
    assert member.is_learner
    assert member.member_id == 0x8E9E05C52164694D


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "printed nothing"),
        ('{"header": {}}', "missing 'members'"),
        ('{"members": [{"ID": "12", "peerURLs": []}]}', "'ID' should be an integer"),
        ('{"members": [{"ID": true, "peerURLs": []}]}', "'ID' should be an integer"),
        ("{not json", "not JSON"),
        ("zz, started, a, http://p, http://c, false", "is not hex"),
        ("1a, started, , http://p, http://c, false", "does not fit name"),
        ("1a, started, a, http://p, false", "expected 6 columns"),
        ("1a, started, a, http://p, http://c, maybe", "learner flag"),
    ],
)
def test_member_list_refuses_garbage(text: str, problem: str) -> None:
    with pytest.raises(RemoteError, match=problem):
        parse_member_list(text)


# --- etcdctl endpoint health --------------------------------------------------


def test_endpoint_health_json_all_healthy() -> None:
    health = parse_endpoint_health(fixture("etcd-endpoint-health-3.json"))
    assert len(health) == 3
    assert all(h.healthy and h.error == "" for h in health)
    assert all(h.took is not None and 0 < h.took < 1 for h in health)


def test_endpoint_health_text_matches_json_endpoints() -> None:
    text = parse_endpoint_health(fixture("etcd-endpoint-health-3.txt"))
    json_form = parse_endpoint_health(fixture("etcd-endpoint-health-3.json"))
    assert {h.endpoint for h in text} == {h.endpoint for h in json_form}
    assert all(h.healthy for h in text)


def test_endpoint_health_cluster_lists_every_advertised_url() -> None:
    health = parse_endpoint_health(fixture("etcd-endpoint-health-cluster.json"))
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    assert {h.endpoint for h in health} == {url for m in members for url in m.client_urls}


@pytest.mark.parametrize(
    "name", ["etcd-endpoint-health-unreachable.json", "etcd-endpoint-health-unreachable.txt"]
)
def test_endpoint_health_reports_the_unreachable_endpoint(name: str) -> None:
    health = parse_endpoint_health(fixture(name))
    bad = [h for h in health if not h.healthy]
    assert len(health) == 2
    assert len(bad) == 1
    assert bad[0].error == "context deadline exceeded"


def test_endpoint_health_text_without_any_endpoint_line() -> None:
    with pytest.raises(RemoteError, match="no endpoint reported"):
        parse_endpoint_health("Error: context deadline exceeded\n")


# --- etcdctl endpoint status --------------------------------------------------


def test_endpoint_status_single() -> None:
    (status,) = parse_endpoint_status(fixture("etcd-endpoint-status-1.json"))
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    me = next(m for m in members if m.member_id == status.member_id)
    assert status.endpoint in me.client_urls
    assert status.version.startswith("3.4.")
    assert status.raft_term >= 1
    assert status.leader_id in {m.member_id for m in members}


def test_endpoint_status_cluster_agrees_on_one_leader() -> None:
    statuses = parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json"))
    assert len(statuses) == 4  # core-01 answers on both of its URLs
    assert len({s.member_id for s in statuses}) == 3
    assert len({s.leader_id for s in statuses}) == 1
    leaders = {s.member_id for s in statuses if s.is_leader}
    assert leaders == {statuses[0].leader_id}


def test_endpoint_status_leader_matches_text_form() -> None:
    statuses = parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json"))
    text_leaders = [
        line.split(", ")[1]
        for line in fixture("etcd-endpoint-status-cluster.txt").splitlines()
        if line.split(", ")[4] == "true"
    ]
    assert text_leaders == [f"{statuses[0].leader_id:x}"]


def test_endpoint_status_refuses_an_object() -> None:
    with pytest.raises(RemoteError, match="expected a JSON list"):
        parse_endpoint_status("{}")


# --- Go durations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.783839ms", 0.001783839),
        ("2.000721872s", 2.000721872),
        ("850µs", 0.00085),
        ("850us", 0.00085),
        ("1m2.5s", 62.5),
        ("1h", 3600.0),
        ("0s", 0.0),
        ("12ns", 12e-9),
    ],
)
def test_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ms", "1.5", "1x", "1s junk", "-1s"])
def test_go_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go duration"):
        parse_go_duration(text)


# --- fleetctl -----------------------------------------------------------------


def test_list_machines_full() -> None:
    machines = parse_list_machines(fixture("fleetctl-list-machines-full.txt"))
    assert [len(m.machine_id) for m in machines] == [32, 32, 32]
    assert not any(m.abbreviated for m in machines)
    assert [m.ip for m in machines] == ["172.17.8.101", "172.17.8.102", "172.17.8.103"]
    assert machines[0].metadata == {"name": "core-01", "role": "member"}
    assert machines[2].metadata == {}  # "-"


def test_list_machines_short_ids_with_legend() -> None:
    full = parse_list_machines(fixture("fleetctl-list-machines-full.txt"))
    short = parse_list_machines(fixture("fleetctl-list-machines.txt"))
    assert all(m.abbreviated for m in short)
    assert [s.machine_id[:8] for s in short] == [f.machine_id[:8] for f in full]
    assert [(s.ip, s.metadata) for s in short] == [(f.ip, f.metadata) for f in full]


def test_list_machines_placeholders_and_spaces() -> None:
    text = "0123456789abcdef0123456789abcdef\t-\t-\n"
    (machine,) = parse_list_machines(text)
    assert machine.ip is None
    assert machine.metadata == {}
    (spaced,) = parse_list_machines("0123456789abcdef0123456789abcdef 10.0.0.1 a=b c,d=e\n")
    assert spaced.metadata == {"a": "b c", "d": "e"}


def test_list_machines_empty() -> None:
    assert parse_list_machines("") == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0123\t10.0.0.1\n", "expected 3 columns"),
        ("0123\t10.0.0.1\tnovalue\n", "not key=value"),
        ("0123\t10.0.0.1\t=v\n", "not key=value"),
    ],
)
def test_list_machines_refuses_garbage(text: str, problem: str) -> None:
    with pytest.raises(RemoteError, match=problem):
        parse_list_machines(text)


def test_list_units_full() -> None:
    units = parse_list_units(fixture("fleetctl-list-units-full.txt"))
    assert [u.unit for u in units] == [
        "goodbye.service",
        "hello.service",
        "ping@1.service",
        "ping@2.service",
    ]
    goodbye, hello, ping1, ping2 = units
    assert (goodbye.machine_id, goodbye.ip) == ("85c0c595fa1b46d3a1c0b77d2e9d4f03", "172.17.8.102")
    assert (goodbye.active, goodbye.sub) == ("active", "running")
    assert (hello.active, hello.sub) == ("inactive", "dead")
    assert ping1.machine_id is not None
    assert ping1.ip is None  # a legend without an IP
    assert (ping2.machine_id, ping2.ip) == (None, None)  # "-"


def test_list_units_short_form_matches_full() -> None:
    full = parse_list_units(fixture("fleetctl-list-units-full.txt"))
    short = parse_list_units(fixture("fleetctl-list-units.txt"))
    assert [(u.unit, u.ip, u.active, u.sub) for u in short] == [
        (u.unit, u.ip, u.active, u.sub) for u in full
    ]


def test_list_units_refuses_short_rows() -> None:
    with pytest.raises(RemoteError, match="expected 4 columns"):
        parse_list_units("hello.service\tactive\n")


# --- systemctl ----------------------------------------------------------------


def test_systemctl_failed_plain() -> None:
    units = parse_systemctl_failed(fixture("systemctl-failed.txt"))
    assert [u.unit for u in units] == ["docker.service", "etcd2.service", "flanneld.service"]
    assert units[0].description == "Docker Application Container Engine"
    assert (units[2].load, units[2].active, units[2].sub) == ("not-found", "failed", "failed")


def test_systemctl_failed_with_status_marks_matches_plain() -> None:
    assert parse_systemctl_failed(fixture("systemctl-failed-marked.txt")) == parse_systemctl_failed(
        fixture("systemctl-failed.txt")
    )


def test_systemctl_failed_none() -> None:
    assert parse_systemctl_failed(fixture("systemctl-failed-none.txt")) == ()


def test_systemctl_failed_refuses_short_rows() -> None:
    with pytest.raises(RemoteError, match="UNIT LOAD ACTIVE SUB"):
        parse_systemctl_failed("foo.service loaded\n")


@pytest.mark.parametrize("state", list(SystemState))
def test_is_system_running_every_state(state: SystemState) -> None:
    assert parse_is_system_running(f"{state.value}\n") is state


@pytest.mark.parametrize("text", ["", "running degraded", "booting"])
def test_is_system_running_refuses(text: str) -> None:
    with pytest.raises(RemoteError, match="systemctl is-system-running"):
        parse_is_system_running(text)


# --- etcd's v2 keys API -------------------------------------------------------


def test_v2_action_of_a_read_and_a_bad_answer() -> None:
    # etcd 3.4's answer to GET /v2/keys/ (Documentation/v2/api.md)
    root = '{"action":"get","node":{"dir":true,"nodes":[{"key":"/message","value":"Hello"}]}}'
    assert parse_v2_action(root) == "get"
    with pytest.raises(RemoteError, match=r"output of `curl \.\.\./v2/keys/`: not JSON"):
        parse_v2_action("404 page not found")
