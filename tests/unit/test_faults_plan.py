"""Network faults as data: requests, their checks, and what the host runs for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.config import LabConfig, Overrides, build_config
from provisioner.errors import ConfigError, HostError, NodeError, RemoteError
from provisioner.faults import guest as guest_net
from provisioner.faults import host as host_net
from provisioner.faults.plan import (
    Faults,
    Lever,
    Netem,
    Port,
    faults_from_json,
    faults_to_json,
    guest_netem_command,
    healed,
    ifb_name,
    netem_commands,
    netem_request,
    partitioned,
    quorum_lost,
    render_ruleset,
    table_name,
    with_netem,
)
from provisioner.hypervisor.libvirt import parse_interface_device
from provisioner.lifecycle import default_backends
from provisioner.lifecycle import faults as lab_faults
from provisioner.parsers import leader_name, member_ids_by_name, status_leader
from provisioner.remote.runner import CommandResult
from tests.faults_support import TapsLibvirt
from tests.lifecycle_support import FakeRunner

pytestmark = pytest.mark.unit

A = Port("vnet1", "52:54:00:aa:bb:01")
B = Port("vnet2", "52:54:00:aa:bb:02")
C = Port("vnet3", "52:54:00:aa:bb:03")
PORTS = {"core-01": A, "core-02": B, "core-03": C}
MEMBERS = ["core-01", "core-02", "core-03"]


# --- requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "jitter", "loss", "key", "message"),
    [
        (None, None, "150%", "--loss", "150% is more than 100%"),
        (None, None, "lots", "--loss", "'lots' is not a percentage"),
        ("200", None, None, "--delay", "'200' is not a duration"),
        ("-5ms", None, None, "--delay", "not a duration"),
        ("2min", None, None, "--delay", "not a duration"),
        ("90s", None, None, "--delay", "longer than 60s"),
        ("200ms", "300ms", None, "--jitter", "more than the delay"),
        (None, "20ms", "5%", "--jitter", "jitter needs a delay"),
        (None, None, None, "--delay", "nothing to do"),
    ],
)
def test_bad_netem_options_name_the_option(
    delay: str | None, jitter: str | None, loss: str | None, key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        netem_request(delay, jitter, loss)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_netem_options_in_milliseconds_and_percent() -> None:
    assert netem_request("200ms", "20ms", "5%") == Netem(200.0, 20.0, 5.0)
    assert netem_request("1.5s", None, None) == Netem(1500.0, 0.0, 0.0)
    assert netem_request(None, None, "0.5") == Netem(0.0, 0.0, 0.5)
    assert netem_request("500us", None, "100%").describe() == "delay 0.5ms, loss 100%"


def test_partitions_heal_per_node_and_as_a_whole() -> None:
    faults = partitioned(Faults(), ["core-01"])
    faults = partitioned(faults, ["core-02"], ["core-03", "core-01"])
    faults = with_netem(faults, "core-03", Netem(delay_ms=100))
    assert faults.isolated == {"core-01"}
    assert faults.pairs == {("core-02", "core-03"), ("core-01", "core-02")}
    assert faults.cut("core-03", "core-02")
    assert faults.cut("core-03", "core-01")  # core-01 is cut off from everyone
    assert healed(faults, ["core-02"]) == Faults(
        isolated=frozenset({"core-01"}), netem={"core-03": Netem(delay_ms=100)}
    )
    assert healed(faults, ["core-01", "core-02", "core-03"]).empty
    assert healed(faults).empty


def test_the_record_round_trips_through_json() -> None:
    faults = with_netem(
        partitioned(partitioned(Faults(), ["core-01"]), ["core-02"], ["core-03"]),
        "core-02",
        Netem(200.0, 20.0, 5.0),
    )
    assert faults_from_json(json.loads(json.dumps(faults_to_json(faults)))) == faults
    in_guest = with_netem(faults, "core-03", Netem(100.0, on=Lever.GUEST))
    assert faults_to_json(in_guest)["netem"]["core-03"]["on"] == "guest"
    assert faults_from_json(json.loads(json.dumps(faults_to_json(in_guest)))) == in_guest
    older = {"netem": {"core-02": {"delay_ms": 200.0}}}  # a record from before the guest lever
    assert faults_from_json(older).netem["core-02"].on is Lever.HOST
    with pytest.raises(ValueError, match="'moon' is not a valid Lever"):
        faults_from_json({"netem": {"core-02": {"delay_ms": 200.0, "on": "moon"}}})
    with pytest.raises(ValueError, match="two node names"):
        faults_from_json({"pairs": [["core-01"]]})


@pytest.mark.parametrize(
    ("isolated", "pairs", "lost"),
    [
        ([], [], False),
        (["core-01"], [], False),  # 2 of 3 still together
        (["core-01", "core-02"], [], True),
        (["core-01", "core-02", "core-03"], [], True),  # every member
        ([], [("core-01", "core-02")], False),  # core-01+core-03 or core-02+core-03
        ([], [("core-01", "core-02"), ("core-01", "core-03"), ("core-02", "core-03")], True),
        (["worker-01"], [], False),  # workers are not members
    ],
)
def test_quorum_is_lost_when_no_majority_of_members_reach_each_other(
    isolated: list[str], pairs: list[tuple[str, str]], lost: bool
) -> None:
    faults = Faults(isolated=frozenset(isolated), pairs=frozenset(pairs))
    assert quorum_lost(MEMBERS, faults) is lost


# --- what the host runs ------------------------------------------------------------------


def test_a_node_cut_off_loses_the_guests_and_the_host_in_both_directions() -> None:
    script = render_ruleset("demo", partitioned(Faults(), ["core-02"]), PORTS)
    assert script.splitlines() == [
        "table bridge lab-demo {}",
        "delete table bridge lab-demo",
        "table bridge lab-demo {",
        "  chain forward {",
        "    type filter hook forward priority -200; policy accept;",
        '    iifname "vnet2" ether saddr 52:54:00:aa:bb:02 drop',
        '    oifname "vnet2" ether daddr 52:54:00:aa:bb:02 drop',
        "  }",
        "  chain input {",
        "    type filter hook input priority -200; policy accept;",
        '    iifname "vnet2" ether saddr 52:54:00:aa:bb:02 drop',
        "  }",
        "  chain output {",
        "    type filter hook output priority -200; policy accept;",
        '    oifname "vnet2" ether daddr 52:54:00:aa:bb:02 drop',
        "  }",
        "}",
    ]


def test_a_cut_from_a_peer_drops_only_the_pair_both_ways() -> None:
    script = render_ruleset("demo", partitioned(Faults(), ["core-01"], ["core-03"]), PORTS)
    rules = [line.strip() for line in script.splitlines() if line.strip().endswith("drop")]
    assert rules == [
        'iifname "vnet1" ether saddr 52:54:00:aa:bb:01 oifname "vnet3" ether daddr '
        "52:54:00:aa:bb:03 drop",
        'iifname "vnet3" ether saddr 52:54:00:aa:bb:03 oifname "vnet1" ether daddr '
        "52:54:00:aa:bb:01 drop",
    ]


def test_no_partition_only_removes_the_labs_table_and_a_stopped_node_has_no_rule() -> None:
    empty = ["table bridge lab-demo {}", "delete table bridge lab-demo"]
    assert render_ruleset("demo", Faults(), PORTS).splitlines() == empty
    stopped = {"core-01": A, "core-03": C}
    assert render_ruleset("demo", partitioned(Faults(), ["core-02"]), stopped).splitlines() == (
        empty
    )


def test_names_belong_to_the_lab() -> None:
    assert table_name("demo") == "lab-demo"
    assert ifb_name("demo", "core-01") != ifb_name("demo2", "core-01")
    assert ifb_name("demo", "core-01") != ifb_name("demo", "core-02")
    assert len(ifb_name("a" * 31, "core-01")) <= 15
    with pytest.raises(ConfigError):
        table_name("Bad_Name")


def test_netem_goes_on_what_the_node_sends_through_an_ifb() -> None:
    ifb = ifb_name("demo", "core-01")
    assert netem_commands(A, ifb, Netem(200.0, 20.0, 5.0)) == [
        ["ip", "link", "add", ifb, "type", "ifb"],
        ["ip", "link", "set", ifb, "up"],
        ["tc", "qdisc", "replace", "dev", ifb, "root", "netem", "delay", "200ms", "20ms",
         "loss", "5%"],
        ["tc", "qdisc", "replace", "dev", "vnet1", "handle", "ffff:", "ingress"],
        ["tc", "filter", "replace", "dev", "vnet1", "parent", "ffff:", "protocol", "all",
         "prio", "1", "u32", "match", "u32", "0", "0",
         "action", "mirred", "egress", "redirect", "dev", ifb],
    ]  # fmt: skip


class Recorder:
    """A host runner that records what it is asked and answers as told."""

    name = "host"

    def __init__(self, fail_on: str = "", stderr: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_on = fail_on
        self.stderr = stderr

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        del timeout
        self.calls.append((list(argv), stdin))
        if self.fail_on and self.fail_on in argv:
            return CommandResult(2, "", self.stderr)
        return CommandResult(0, "", "")

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_a_kernel_without_netem_leaves_nothing_behind_and_says_why() -> None:
    runner = Recorder(fail_on="netem", stderr="Error: Specified qdisc kind is unknown.")
    faults = with_netem(Faults(), "core-01", Netem(delay_ms=100))
    with pytest.raises(HostError, match="qdisc kind is unknown") as caught:
        host_net.apply_netem(runner, "demo", faults, PORTS, ["core-01"])
    assert "CONFIG_NET_SCH_NETEM" in (caught.value.hint or "")
    argvs = [argv for argv, _ in runner.calls]
    ifb = ifb_name("demo", "core-01")
    assert argvs[-2:] == [
        ["tc", "qdisc", "del", "dev", "vnet1", "handle", "ffff:", "ingress"],
        ["ip", "link", "del", ifb],
    ]
    assert not any("mirred" in argv for argv in argvs)


def test_the_host_is_tried_with_an_ifb_device_carrying_netem_that_is_removed_again() -> None:
    runner = Recorder()
    assert host_net.netem_unavailable(runner) is None
    device = host_net.probe_device()
    assert len(device) <= 15  # IFNAMSIZ
    assert [argv for argv, _ in runner.calls] == [
        ["ip", "link", "add", device, "type", "ifb"],
        ["tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "1ms"],
        ["ip", "link", "del", device],
    ]


@pytest.mark.parametrize(
    ("fail_on", "stderr", "reason"),
    [
        ("ifb", "Error: Unknown device type.",
         "`ip link add ... type ifb` failed on this host: Error: Unknown device type."),
        ("netem", "Error: Specified qdisc kind is unknown.",
         "`tc qdisc add ... netem` failed on this host: Error: Specified qdisc kind is unknown."),
    ],
)  # fmt: skip
def test_a_host_without_ifb_or_netem_gives_the_reason_and_keeps_no_device(
    fail_on: str, stderr: str, reason: str
) -> None:
    runner = Recorder(fail_on=fail_on, stderr=stderr)
    assert host_net.netem_unavailable(runner) == reason
    argvs = [argv for argv, _ in runner.calls]
    if fail_on == "netem":
        assert argvs[-1] == ["ip", "link", "del", host_net.probe_device()]
    else:
        assert len(argvs) == 1  # no device was made


def test_a_host_without_ifb_names_it_and_the_guest_lever() -> None:
    runner = Recorder(fail_on="ifb", stderr="Error: Unknown device type.")
    faults = with_netem(Faults(), "core-01", Netem(delay_ms=100))
    with pytest.raises(HostError, match="Unknown device type") as caught:
        host_net.apply_netem(runner, "demo", faults, PORTS, ["core-01"])
    assert "CONFIG_IFB" in (caught.value.hint or "")
    assert "--on auto or guest" in (caught.value.hint or "")


def test_netem_in_the_guest_is_tc_on_its_lab_link() -> None:
    assert guest_netem_command(Netem(200.0, 20.0, 5.0, on=Lever.GUEST)) == [
        "sudo", "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
        "delay", "200ms", "20ms", "loss", "5%",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "stderr",
    [
        "Error: Cannot delete qdisc with handle of zero.",  # the kernel's default qdisc
        "RTNETLINK answers: No such file or directory",  # older iproute2
    ],
)
def test_taking_netem_off_a_guest_that_has_none_is_done(stderr: str) -> None:
    runner = Recorder(fail_on="del", stderr=stderr)
    guest_net.clear_netem(runner)
    assert [argv for argv, _ in runner.calls] == [
        ["sudo", "tc", "qdisc", "del", "dev", "eth0", "root"]
    ]


def test_a_guest_whose_tc_fails_otherwise_is_named() -> None:
    runner = Recorder(fail_on="del", stderr="sudo: a password is required")
    with pytest.raises(NodeError, match="host: `sudo tc qdisc del dev eth0 root` failed: sudo"):
        guest_net.clear_netem(runner)
    runner = Recorder(fail_on="netem", stderr="Error: Specified qdisc kind is unknown.")
    with pytest.raises(NodeError, match="qdisc kind is unknown") as caught:
        guest_net.set_netem(runner, Netem(100.0, on=Lever.GUEST))
    assert "sch_netem" in (caught.value.hint or "")


# --- the lab's verbs, without a host --------------------------------------------------------


def lab(tmp_path: Path, **raw: Any) -> LabConfig:
    return build_config({"name": "demo", "num_instances": 3, **raw}, tmp_path, Overrides())


def backends(taps: dict[str, str], guests: dict[str, FakeRunner] | None = None) -> Any:
    """libvirt's view of the taps; SSH to each guest, a fake recording what it runs."""
    import dataclasses

    known = guests if guests is not None else {}
    return dataclasses.replace(
        default_backends(),
        open_host=lambda: cast(Any, TapsLibvirt(taps)),
        runner=lambda config, state, node: known.setdefault(node.name, FakeRunner(node.name)),
    )


@pytest.mark.parametrize(
    ("names", "peers", "message"),
    [
        (["core-09"], [], "NODE: no node named 'core-09'"),
        (["core-01"], ["nope"], "--from: no node named 'nope'"),
        (["core-01"], ["core-01"], "--from: core-01 cannot be cut off from itself"),
        ([], [], "NODE: name at least one node"),
        (["core-01", "core-02", "core-03"], [], "leaves no 2 of etcd's 3 members"),
        (["core-01", "core-02"], [], "could elect no leader and commit no write"),
    ],
)
def test_bad_partitions_are_refused_before_anything_changes(
    tmp_path: Path, names: list[str], peers: list[str], message: str
) -> None:
    config = lab(tmp_path)
    runner = Recorder()
    taps = {"core-01": "vnet1", "core-02": "vnet2", "core-03": "vnet3"}
    with pytest.raises(ConfigError, match=message):
        lab_faults.partition(config, names, peers, backends=backends(taps), runner=runner)
    assert runner.calls == []
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_partitions_are_recorded_applied_and_healed(tmp_path: Path) -> None:
    config = lab(tmp_path)
    runner = Recorder()
    taps = {"core-01": "vnet1", "core-02": "vnet2"}  # core-03 is not running
    result = lab_faults.partition(
        config, ["core-01", "core-02"], allow_quorum_loss=True, backends=backends(taps),
        runner=runner,
    )  # fmt: skip
    assert result.faults.isolated == {"core-01", "core-02"}
    assert result.not_running == ()
    argv, script = runner.calls[-1]
    assert argv == ["nft", "-f", "-"]
    assert script is not None
    assert 'iifname "vnet1"' in script
    assert 'iifname "vnet2"' in script
    assert lab_faults.load_faults(config) == result.faults

    result = lab_faults.partition(config, ["core-03"], ["core-01"], backends=backends(taps),
                                  runner=runner, allow_quorum_loss=True)  # fmt: skip
    assert result.not_running == ("core-03",)

    # after a restart, core-01 has a new tap: a partial heal writes rules for it
    taps["core-01"] = "vnet7"
    result = lab_faults.heal(config, ["core-02"], backends=backends(taps), runner=runner)
    script = runner.calls[-1][1] or ""
    assert 'iifname "vnet7"' in script
    assert '"vnet1"' not in script
    assert "core-02" not in result.faults.nodes()

    # a full heal removes the table and every IFB by name, and the record
    runner.calls.clear()
    assert lab_faults.heal(config, backends=backends(taps), runner=runner).faults.empty
    argvs = [argv for argv, _ in runner.calls]
    assert runner.calls[0] == (
        ["nft", "-f", "-"],
        "table bridge lab-demo {}\ndelete table bridge lab-demo\n",
    )
    for node in ("core-01", "core-02", "core-03"):
        assert ["ip", "link", "del", ifb_name("demo", node)] in argvs
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_netem_is_set_then_removed_by_heal(tmp_path: Path) -> None:
    config = lab(tmp_path)
    runner = Recorder()
    taps = {"core-01": "vnet1", "core-02": "vnet2", "core-03": "vnet3"}
    setting = netem_request("200ms", None, "5%")
    lab_faults.netem(config, "core-02", setting, backends=backends(taps), runner=runner)
    argvs = [argv for argv, _ in runner.calls]
    ifb = ifb_name("demo", "core-02")
    assert ["tc", "qdisc", "replace", "dev", ifb, "root", "netem", "delay", "200ms",
            "loss", "5%"] in argvs  # fmt: skip
    runner.calls.clear()
    lab_faults.heal(config, ["core-02"], backends=backends(taps), runner=runner)
    argvs = [argv for argv, _ in runner.calls]
    assert ["ip", "link", "del", ifb] in argvs
    assert not any("netem" in argv for argv in argvs)


NO_IFB = "Error: Unknown device type."
TAPS = {"core-01": "vnet1", "core-02": "vnet2", "core-03": "vnet3"}
GUEST_SET = ("sudo", "tc", "qdisc", "replace", "dev", "eth0", "root", "netem")
GUEST_DEL = ("sudo", "tc", "qdisc", "del", "dev", "eth0", "root")


def test_a_host_that_cannot_carry_netem_puts_it_in_the_guest(tmp_path: Path) -> None:
    config = lab(tmp_path)
    host = Recorder(fail_on="ifb", stderr=NO_IFB)
    guests: dict[str, FakeRunner] = {}
    setting = netem_request("200ms", "20ms", "5%")
    result = lab_faults.netem(
        config, "core-02", setting, backends=backends(TAPS, guests), runner=host
    )
    assert result.faults.netem["core-02"].on is Lever.GUEST
    assert result.host_cannot == f"`ip link add ... type ifb` failed on this host: {NO_IFB}"
    assert guests["core-02"].commands == [(*GUEST_SET, "delay", "200ms", "20ms", "loss", "5%")]
    assert [argv[:3] for argv, _ in host.calls] == [["ip", "link", "add"]]  # the probe only
    assert set(guests) == {"core-02"}
    recorded = json.loads((config.state_dir / lab_faults.FAULTS_FILE).read_text())
    assert recorded["netem"]["core-02"]["on"] == "guest"

    # the node restarted and lost it: the same request sets it again
    lab_faults.netem(config, "core-02", setting, backends=backends(TAPS, guests), runner=host)
    assert guests["core-02"].commands[-1] == guests["core-02"].commands[0]
    assert len(guests["core-02"].commands) == 2

    # lab heal NODE takes it off the same way; the host has nothing to change
    host.calls.clear()
    result = lab_faults.heal(config, ["core-02"], backends=backends(TAPS, guests), runner=host)
    assert result.faults.empty
    assert guests["core-02"].commands[-1] == GUEST_DEL
    assert host.calls == []
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_the_lever_asked_for_is_used_without_trying_the_host(tmp_path: Path) -> None:
    config = lab(tmp_path)
    host, guests = Recorder(), dict[str, FakeRunner]()
    setting = netem_request("100ms", None, None)
    on_host = lab_faults.netem(
        config, "core-01", setting, on=Lever.HOST, backends=backends(TAPS, guests), runner=host
    )
    assert on_host.faults.netem["core-01"].on is Lever.HOST
    assert host.calls[0][0][:3] == ["nft", "-f", "-"]  # no probe
    assert guests == {}
    # the same node moved to the guest: the host's IFB goes, the guest's qdisc comes
    host.calls.clear()
    lab_faults.netem(
        config, "core-01", setting, on=Lever.GUEST, backends=backends(TAPS, guests), runner=host
    )
    assert ["ip", "link", "del", ifb_name("demo", "core-01")] in [a for a, _ in host.calls]
    assert not any("netem" in argv for argv, _ in host.calls)
    assert guests["core-01"].commands == [(*GUEST_SET, "delay", "100ms")]


def test_host_netem_asked_for_where_the_host_cannot_fails_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    config = lab(tmp_path)
    host = Recorder(fail_on="ifb", stderr=NO_IFB)
    with pytest.raises(HostError, match="Unknown device type") as caught:
        lab_faults.netem(
            config, "core-01", netem_request("100ms", None, None), on=Lever.HOST,
            backends=backends(TAPS), runner=host,
        )  # fmt: skip
    assert "--on auto or guest" in (caught.value.hint or "")
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_partitions_and_guest_netem_live_side_by_side(tmp_path: Path) -> None:
    config = lab(tmp_path)
    host, guests = Recorder(fail_on="ifb", stderr=NO_IFB), dict[str, FakeRunner]()
    lab_faults.netem(
        config, "core-03", netem_request("200ms", None, None), backends=backends(TAPS, guests),
        runner=host,
    )  # fmt: skip
    result = lab_faults.partition(config, ["core-01"], backends=backends(TAPS, guests), runner=host)
    assert result.faults.isolated == {"core-01"}
    assert result.faults.netem["core-03"].on is Lever.GUEST
    assert 'iifname "vnet1"' in (host.calls[-1][1] or "")
    assert guests["core-03"].commands == [(*GUEST_SET, "delay", "200ms")]  # not set again
    assert "core-01" not in guests

    # a full heal: the host's table and IFBs by name, then each guest's netem
    host.calls.clear()
    assert lab_faults.heal(config, backends=backends(TAPS, guests), runner=host).faults.empty
    assert host.calls[0][0] == ["nft", "-f", "-"]
    assert guests["core-03"].commands[-1] == GUEST_DEL
    assert set(guests) == {"core-03"}
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_heal_of_a_guest_that_is_down_drops_its_netem_and_says_so(tmp_path: Path) -> None:
    config = lab(tmp_path)
    host = Recorder(fail_on="ifb", stderr=NO_IFB)
    guests: dict[str, FakeRunner] = {}
    setting = netem_request("200ms", None, None)
    lab_faults.netem(config, "core-02", setting, backends=backends(TAPS, guests), runner=host)
    guests["core-02"].broken = RemoteError("core-02: 10.0.0.12 did not answer within 10s")
    result = lab_faults.heal(config, ["core-02"], backends=backends(TAPS, guests), runner=host)
    assert result.faults.empty
    assert result.unreached == ("core-02",)
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_guest_netem_on_a_node_that_does_not_answer_fails_and_leaves_no_record(
    tmp_path: Path,
) -> None:
    config = lab(tmp_path)
    down = RemoteError("core-02: 10.0.0.12 did not answer within 10s")
    guests = {"core-02": FakeRunner("core-02", broken=down)}
    with pytest.raises(RemoteError, match="did not answer"):
        lab_faults.netem(
            config, "core-02", netem_request("200ms", None, None), on=Lever.GUEST,
            backends=backends(TAPS, guests), runner=Recorder(),
        )  # fmt: skip
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()


def test_destroy_drops_the_record_of_guest_netem_without_reaching_the_guest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = lab(tmp_path)
    in_guest = with_netem(Faults(), "core-02", Netem(200.0, on=Lever.GUEST))
    lab_faults.save_faults(config, in_guest)
    host = Recorder(fail_on="list")  # the lab's table is not there
    monkeypatch.setattr(lab_faults, "host_runner", lambda: host)
    lab_faults.clear_for_destroy(config, cast(Any, TapsLibvirt(TAPS)))
    assert not (config.state_dir / lab_faults.FAULTS_FILE).exists()
    assert not any("eth0" in argv for argv, _ in host.calls)  # the guest goes with the VM


# --- the member drills --------------------------------------------------------------------


def test_the_leader_is_the_member_the_latest_term_names() -> None:
    members = [{"ID": "11", "name": "core-01"}, {"ID": "22", "name": "core-02"}, {"ID": "33"}]
    ids = member_ids_by_name({"members": members})  # 33 has not started: no name
    assert ids == {"core-01": 11, "core-02": 22}
    old = status_leader({"raftTerm": "4", "leader": "11"})
    new = status_leader({"raftTerm": "5", "leader": "22"})
    assert leader_name([old, new], ids) == "core-02"
    assert leader_name([status_leader({"raftTerm": "6", "leader": "0"}), old], ids) == "core-01"
    assert leader_name([], ids) is None


def test_a_quorum_is_a_majority_with_the_leader_first() -> None:
    assert lab_faults.quorum_victims(MEMBERS, "core-02") == ["core-02", "core-01"]
    assert lab_faults.quorum_victims(MEMBERS, None) == ["core-01", "core-02"]
    five = [f"core-0{i}" for i in range(1, 6)]
    assert lab_faults.quorum_victims(five, "core-05") == ["core-05", "core-01", "core-02"]


def test_the_tap_of_the_interface_on_the_lab_network() -> None:
    xml = """<domain><devices>
      <interface type='network'><mac address='52:54:00:00:00:09'/>
        <source network='vagrant-libvirt'/><target dev='vnet0'/></interface>
      <interface type='network'><mac address='52:54:00:AA:BB:01'/>
        <source network='lab-demo' bridge='lab-1234567890'/><target dev='vnet4'/></interface>
    </devices></domain>"""
    assert parse_interface_device(xml, "lab-demo", "lab-1234567890", "52:54:00:aa:bb:01") == (
        "vnet4"
    )
    assert parse_interface_device(xml, "lab-other", "lab-x", "52:54:00:aa:bb:01") is None
    stopped = xml.replace("<target dev='vnet4'/>", "")
    assert parse_interface_device(stopped, "lab-demo", "lab-x", "52:54:00:aa:bb:01") is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["kill"], "name NODES, or give --leader or --quorum"),
        (["kill", "--leader", "--quorum"], "one of them"),
        (["kill", "core-01", "--leader"], "one of them"),
        (["netem", "core-01", "--delay", "200ms", "--loss", "150%"], "--loss: 150%"),
        (["netem", "core-01", "--delay", "fast"], "--delay: 'fast' is not a duration"),
        (["netem", "core-01", "--delay", "200ms", "--on", "moon"], "'moon' is not one of"),
    ],
)
def test_the_cli_refuses_bad_input_before_loading_the_lab(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["--dir", "/nonexistent-lab", *argv])
    assert result.exit_code == 2
    assert message in result.output
