"""Network faults on the real kernel: lab bridges and their guests' ports in network
namespaces, changed by the code ``lab partition``, ``lab heal`` and ``lab netem`` run.

A hub namespace stands for the host: one bridge per lab, each guest a namespace
joined by a veth pair whose hub end plays the guest's tap (``vnetN``), with the MAC
the lab planned for the node. The faults are applied in the hub namespace, through
a runner that runs ``nft``, ``tc`` and ``ip`` there; netem in a guest goes through
a runner in that guest's namespace, on its ``eth0`` (the other end of the veth), as
it would over SSH. Nothing outside the namespaces the test makes is touched.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from provisioner.config import LabConfig, NodeSpec, Overrides, build_config
from provisioner.errors import ConfigError, HostError, NodeError
from provisioner.faults import host as host_net
from provisioner.faults.plan import (
    Faults,
    Lever,
    Netem,
    ifb_name,
    netem_request,
    table_name,
    with_netem,
)
from provisioner.lifecycle import default_backends
from provisioner.lifecycle import faults as lab_faults
from provisioner.lifecycle.backends import Backends
from provisioner.remote.local import LocalRunner
from provisioner.remote.runner import CommandResult
from tests.faults_support import TapsLibvirt
from tests.flannel_support import can_run, ping, sh

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(can_run()), reason=can_run() or "runs"),
]


def _missing_tools() -> str:
    done = subprocess.run(["which", "nft", "tc"], capture_output=True, text=True, check=False)
    return "" if done.returncode == 0 else "needs nft and tc (nftables, iproute2)"


class NetnsRunner:
    """The host's runner inside the hub namespace, or a guest's inside its own. The
    test runs as root, so a guest's ``sudo`` is dropped: the command after it runs
    as it would in the guest."""

    def __init__(self, netns: str, name: str = "host") -> None:
        self.netns = netns
        self.local = LocalRunner(name=name)

    @property
    def name(self) -> str:
        return self.local.name

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        argv = argv[1:] if argv[0] == "sudo" else argv
        return self.local.run(["ip", "netns", "exec", self.netns, *argv], timeout=timeout,
                              stdin=stdin)  # fmt: skip

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Lab:
    config: LabConfig
    bridge: str
    taps: dict[str, str]  # node -> its port on the bridge now
    namespaces: dict[str, str]  # node -> its namespace

    @property
    def backends(self) -> Backends:
        """libvirt's view of the taps, and "SSH" into each guest's namespace."""
        return dataclasses.replace(
            default_backends(),
            open_host=lambda: cast(Any, TapsLibvirt(self.taps)),
            runner=lambda config, state, node: cast(
                Any, NetnsRunner(self.namespaces[node.name], node.name)
            ),
        )

    def guest_qdiscs(self, name: str) -> str:
        return sh("ip", "netns", "exec", self.namespaces[name], "tc", "qdisc", "show",
                  "dev", "eth0")  # fmt: skip

    @property
    def host_ip(self) -> str:
        return self.config.gateway

    def node(self, name: str) -> NodeSpec:
        return self.config.node(name)

    def reach(self, a: str, b: str) -> bool:
        """An echo from node ``a`` to node ``b`` (or "host") answered."""
        target = self.host_ip if b == "host" else self.node(b).ip
        return ping(self.namespaces[a], self.node(a).ip, target)

    def host_reaches(self, b: str, hub: str) -> bool:
        return ping(hub, self.host_ip, self.node(b).ip)


class Hub:
    def __init__(self, tag: str, directory: Path) -> None:
        self.tag = tag
        self.name = f"{tag}-hub"
        self.directory = directory
        self.namespaces: list[str] = []
        self.ports = 0
        self.add_netns(self.name)
        self.runner = NetnsRunner(self.name)

    def add_netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def lab(self, name: str, subnet: str, count: int = 3) -> Lab:
        config = build_config(
            {"name": name, "num_instances": count, "subnet": subnet},
            self.directory / name,
            Overrides(),
        )
        bridge = f"br-{name}"[:15]
        sh("ip", "-n", self.name, "link", "add", bridge, "type", "bridge")
        sh("ip", "-n", self.name, "addr", "add", f"{config.gateway}/24", "dev", bridge)
        sh("ip", "-n", self.name, "link", "set", bridge, "up")
        taps, namespaces = {}, {}
        for node in config.nodes:
            netns = f"{self.tag}-{name}-{node.index}"
            self.add_netns(netns)
            tap = f"vnet{self.ports}"
            self.ports += 1
            sh("ip", "-n", self.name, "link", "add", tap, "type", "veth",
               "peer", "name", "eth0", "netns", netns)  # fmt: skip
            sh("ip", "-n", self.name, "link", "set", tap, "master", bridge, "up")
            sh("ip", "-n", netns, "link", "set", "eth0", "address", node.mac)
            sh("ip", "-n", netns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            sh("ip", "-n", netns, "link", "set", "eth0", "up")
            taps[node.name] = tap
            namespaces[node.name] = netns
        lab = Lab(config, bridge, taps, namespaces)
        for node in config.nodes:  # the bridge learns every port before the test starts
            assert wait(lambda node=node: lab.reach(node.name, "host")), node.name
        return lab

    def nft_tables(self) -> str:
        return sh("ip", "netns", "exec", self.name, "nft", "list", "tables")

    def links(self) -> str:
        return sh("ip", "-n", self.name, "-o", "link", "show")

    def close(self) -> None:
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30,
                           check=False)  # fmt: skip


def wait(probe: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    missing = _missing_tools()
    if missing:
        pytest.skip(missing)
    made = Hub(f"lfx{os.getpid() % 100000}", tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_a_node_cut_off_reaches_nobody_and_heal_brings_it_back(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    result = lab_faults.partition(
        demo.config, ["core-02"], backends=demo.backends, runner=hub.runner
    )
    assert result.faults.isolated == {"core-02"}
    assert f"bridge {table_name('demo')}" in hub.nft_tables()
    assert not demo.reach("core-02", "core-01")
    assert not demo.reach("core-03", "core-02")
    assert not demo.reach("core-02", "host")
    assert not demo.host_reaches("core-02", hub.name)
    assert demo.reach("core-01", "core-03")  # the majority keeps talking
    assert demo.reach("core-01", "host")

    lab_faults.heal(demo.config, backends=demo.backends, runner=hub.runner)
    assert table_name("demo") not in hub.nft_tables()
    assert wait(lambda: demo.reach("core-02", "core-01"))
    assert demo.reach("core-03", "core-02")
    assert demo.host_reaches("core-02", hub.name)


def test_a_cut_from_one_peer_leaves_every_other_path(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    lab_faults.partition(
        demo.config, ["core-01"], ["core-02"], backends=demo.backends, runner=hub.runner
    )
    assert not demo.reach("core-01", "core-02")
    assert not demo.reach("core-02", "core-01")
    assert demo.reach("core-01", "core-03")
    assert demo.reach("core-02", "core-03")
    assert demo.reach("core-01", "host")
    lab_faults.heal(demo.config, ["core-01"], backends=demo.backends, runner=hub.runner)
    assert wait(lambda: demo.reach("core-01", "core-02"))


def test_refused_partitions_change_nothing(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    with pytest.raises(ConfigError, match="no 2 of etcd's 3 members"):
        lab_faults.partition(
            demo.config, ["core-01", "core-02", "core-03"], backends=demo.backends,
            runner=hub.runner,
        )  # fmt: skip
    assert table_name("demo") not in hub.nft_tables()
    assert demo.reach("core-01", "core-02")


def test_one_labs_faults_never_touch_another_lab(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    other = hub.lab("other", "172.31.242.0/24")
    lab_faults.partition(other.config, ["core-01"], backends=other.backends, runner=hub.runner)
    lab_faults.partition(
        demo.config, ["core-01", "core-02"], allow_quorum_loss=True, backends=demo.backends,
        runner=hub.runner,
    )  # fmt: skip
    assert not demo.reach("core-03", "core-01")
    assert other.reach("core-02", "core-03")  # other's core-01 only is cut
    assert not other.reach("core-02", "core-01")

    # demo's core-01 "restarts": its tap name goes to a guest of the other lab, which
    # demo's stale rule must not hit (the rule also matches demo's MAC)
    old = demo.taps["core-01"]
    victim = other.taps["core-03"]
    sh("ip", "-n", hub.name, "link", "set", old, "down")
    sh("ip", "-n", hub.name, "link", "set", old, "name", "vnetx")
    sh("ip", "-n", hub.name, "link", "set", "vnetx", "up")
    sh("ip", "-n", hub.name, "link", "set", victim, "down")
    sh("ip", "-n", hub.name, "link", "set", victim, "name", old)
    sh("ip", "-n", hub.name, "link", "set", old, "up")
    demo.taps["core-01"], other.taps["core-03"] = "vnetx", old
    assert wait(lambda: other.reach("core-03", "core-02"))
    assert wait(lambda: other.reach("core-03", "host"))
    # a partial heal of demo re-reads the taps: core-01's cut follows it to vnetx
    lab_faults.heal(demo.config, ["core-02"], backends=demo.backends, runner=hub.runner)
    assert not demo.reach("core-03", "core-01")
    assert wait(lambda: demo.reach("core-03", "core-02"))

    # demo's full heal leaves the other lab's table alone
    lab_faults.heal(demo.config, backends=demo.backends, runner=hub.runner)
    tables = hub.nft_tables()
    assert table_name("demo") not in tables
    assert table_name("other") in tables
    assert not other.reach("core-02", "core-01")
    assert wait(lambda: demo.reach("core-03", "core-01"))
    lab_faults.heal(other.config, backends=other.backends, runner=hub.runner)
    assert wait(lambda: other.reach("core-02", "core-01"))


def _kernel_has_netem(hub: Hub) -> bool:
    probe = hub.runner.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
    hub.runner.run(["tc", "qdisc", "del", "dev", "lo", "root"])
    return probe.succeeded


def _round_trip(lab: Lab, a: str, b: str, count: int = 5) -> float:
    """The shortest of ``count`` answered echoes from ``a`` to ``b``, in seconds (the
    helper's start-up included: only differences between two such figures count)."""
    best = float("inf")
    for _ in range(count):
        start = time.monotonic()
        if lab.reach(a, b):
            best = min(best, time.monotonic() - start)
    assert best != float("inf"), f"{a} never reached {b}"
    return best


def test_netem_delays_what_the_node_sends_and_heal_removes_it(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    if not _kernel_has_netem(hub):
        pytest.skip("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)")
    before = _round_trip(demo, "core-01", "core-02")
    setting = netem_request("300ms", None, None)
    lab_faults.netem(demo.config, "core-02", setting, backends=demo.backends, runner=hub.runner)
    assert ifb_name("demo", "core-02") in hub.links()
    slowed = _round_trip(demo, "core-01", "core-02", count=3)
    assert slowed - before >= 0.2  # a generous lower bound: the delay is 300 ms
    lab_faults.heal(demo.config, ["core-02"], backends=demo.backends, runner=hub.runner)
    assert ifb_name("demo", "core-02") not in hub.links()


def test_netem_on_a_kernel_without_it_fails_and_leaves_nothing(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    if _kernel_has_netem(hub):
        pytest.skip("this kernel has netem; the test above covers it")
    setting = netem_request("100ms", None, "5%")
    with pytest.raises(HostError, match="qdisc kind is unknown") as caught:
        lab_faults.netem(
            demo.config, "core-02", setting, on=Lever.HOST, backends=demo.backends,
            runner=hub.runner,
        )  # fmt: skip
    assert "CONFIG_NET_SCH_NETEM" in (caught.value.hint or "")
    links = hub.links()
    assert ifb_name("demo", "core-02") not in links
    qdiscs = sh("ip", "netns", "exec", hub.name, "tc", "qdisc", "show", "dev",
                demo.taps["core-02"])  # fmt: skip
    assert "ingress" not in qdiscs
    assert demo.reach("core-01", "core-02")
    assert lab_faults.load_faults(demo.config).empty


# --- netem in the guest: the same tc commands, in the guest's namespace -----------------


def test_netem_in_the_guest_delays_what_it_sends_and_heal_removes_it(hub: Hub) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    if not _kernel_has_netem(hub):
        pytest.skip("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)")
    before = _round_trip(demo, "core-01", "core-02")
    setting = netem_request("300ms", None, None)
    result = lab_faults.netem(
        demo.config, "core-02", setting, on=Lever.GUEST, backends=demo.backends,
        runner=hub.runner,
    )  # fmt: skip
    assert result.faults.netem["core-02"].on is Lever.GUEST
    assert "netem" in demo.guest_qdiscs("core-02")
    assert ifb_name("demo", "core-02") not in hub.links()  # nothing on the host
    slowed = _round_trip(demo, "core-01", "core-02", count=3)
    assert slowed - before >= 0.2  # a generous lower bound: the delay is 300 ms
    lab_faults.heal(demo.config, ["core-02"], backends=demo.backends, runner=hub.runner)
    assert "netem" not in demo.guest_qdiscs("core-02")
    assert lab_faults.load_faults(demo.config).empty


def test_auto_picks_the_guest_where_the_host_has_no_ifb_and_partitions_still_apply(
    hub: Hub,
) -> None:
    demo = hub.lab("demo", "172.31.241.0/24")
    reason = lab_faults.host_netem_unavailable(demo.config, hub.runner)
    if reason is None:
        pytest.skip("this host can carry netem (IFB and netem): auto picks the host")
    if not _kernel_has_netem(hub):
        pytest.skip("this kernel has no netem qdisc: the guest's tc would fail too")
    assert host_net.probe_device() not in hub.links()  # the probe made and removed it
    result = lab_faults.netem(
        demo.config, "core-03", netem_request("100ms", None, None), backends=demo.backends,
        runner=hub.runner,
    )  # fmt: skip
    assert result.host_cannot == reason
    assert "netem" in demo.guest_qdiscs("core-03")
    lab_faults.partition(demo.config, ["core-01"], backends=demo.backends, runner=hub.runner)
    assert not demo.reach("core-01", "core-02")
    assert demo.reach("core-02", "core-03")
    lab_faults.heal(demo.config, backends=demo.backends, runner=hub.runner)
    assert "netem" not in demo.guest_qdiscs("core-03")
    assert wait(lambda: demo.reach("core-01", "core-02"))


def test_netem_in_a_guest_without_it_fails_names_the_node_and_leaves_nothing(hub: Hub) -> None:
    """Here the host cannot carry netem either: auto tries the host, picks the guest,
    whose tc fails; the probe's device, the guest's link and the record are as before."""
    demo = hub.lab("demo", "172.31.241.0/24")
    if _kernel_has_netem(hub):
        pytest.skip("this kernel has netem; the tests above cover it")
    lab_faults.partition(demo.config, ["core-01"], backends=demo.backends, runner=hub.runner)
    links = hub.links()
    setting = netem_request("100ms", "10ms", "5%")
    command = "sudo tc qdisc replace dev eth0 root netem delay 100ms 10ms loss 5%"
    with pytest.raises(NodeError, match=re.escape(f"core-02: `{command}` failed: ")) as caught:
        lab_faults.netem(demo.config, "core-02", setting, backends=demo.backends,
                         runner=hub.runner)  # fmt: skip
    assert "qdisc kind is unknown" in str(caught.value)
    assert "sch_netem" in (caught.value.hint or "")
    assert hub.links() == links  # no probe device, no IFB
    assert "netem" not in demo.guest_qdiscs("core-02")
    faults = lab_faults.load_faults(demo.config)
    assert faults.isolated == {"core-01"}  # the partition stays
    assert not faults.netem
    assert not demo.reach("core-01", "core-02")
    assert demo.reach("core-02", "core-03")
    lab_faults.heal(demo.config, backends=demo.backends, runner=hub.runner)
    assert wait(lambda: demo.reach("core-01", "core-02"))


def test_heal_takes_guest_netem_off_a_guest_that_has_none_left(hub: Hub) -> None:
    """A restarted guest lost its netem: `tc qdisc del` finds only the kernel's default
    qdisc, and heal takes that as done (the real tc's message, on a real link)."""
    demo = hub.lab("demo", "172.31.241.0/24")
    recorded = with_netem(Faults(), "core-02", Netem(200.0, on=Lever.GUEST))
    lab_faults.save_faults(demo.config, recorded)
    result = lab_faults.heal(demo.config, ["core-02"], backends=demo.backends,
                             runner=hub.runner)  # fmt: skip
    assert result.faults.empty
    assert result.unreached == ()
    assert lab_faults.load_faults(demo.config).empty
    assert demo.reach("core-02", "core-01")
