"""``lab drill`` on a running lab: the drill engine (:mod:`provisioner.drill`) with
the lab's own levers as its fault injector and fleetctl as its fleet probe.

- killed: ``lab kill`` (a hard power-off), recovered by ``lab start``, which waits
  until the node answers, its etcd member is healthy and fleet lists it again;
- partitioned: ``lab partition`` (nftables on the host), recovered by ``lab heal``;
  a majority is cut off with ``--allow-quorum-loss``'s consent, since the drill asks
  for exactly that;
- delayed: ``lab netem --delay`` on what the node sends, recovered by ``lab heal``;
  on the host when it can carry netem (an IFB device with a netem qdisc, tried once
  per drill), else in the guest, as ``lab netem`` chooses;
- replaced: the first half of ``lab replace`` (``etcdctl member remove``, the node and
  its disk destroyed), recovered by the second (``etcdctl member add``, a fresh node
  booted with initial-cluster-state existing and checked in).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from provisioner.config import LabConfig
from provisioner.drill.client import DrillClient
from provisioner.drill.engine import ScenarioResult, Settings, run_drill
from provisioner.drill.plan import Fault, Scenario
from provisioner.errors import LabError
from provisioner.faults.plan import Lever, Netem
from provisioner.lifecycle import faults as lab_faults
from provisioner.lifecycle import replace as lab_replace
from provisioner.lifecycle import teardown
from provisioner.lifecycle.backends import Backends
from provisioner.parsers import LIST_UNITS, parse_list_units
from provisioner.progress import Progress
from provisioner.readiness import member_urls
from provisioner.remote.runner import Runner

DELAY = Netem(delay_ms=200.0, jitter_ms=20.0)
CLIENT_TIMEOUT = 2.0
UNIT_TEXT = """\
[Unit]
Description=lab drill unit {name}

[Service]
ExecStart=/bin/sleep infinity
"""


class LabInjector:
    """Faults on the lab's nodes through lab's own verbs."""

    def __init__(
        self,
        config: LabConfig,
        progress: Progress,
        backends: Backends | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.config, self.progress, self.backends = config, progress, backends
        self.runner = runner
        self._reasons: dict[Fault, str | None] = {}
        self.delay_on: Lever | None = None  # chosen once, by the first delayed scenario

    def unavailable(self, fault: Fault) -> str | None:
        if fault in (Fault.KILL, Fault.REPLACE):
            return None
        if fault is Fault.DELAY:  # the guest is the lever when the host has none
            if self.delay_on is None:
                self.delay_on, host_cannot = lab_faults.choose_lever(self.config, None, self.runner)
                where = "in the guest" if self.delay_on is Lever.GUEST else "on the host"
                because = f" ({host_cannot})" if host_cannot else ""
                self.progress.update("drill", "netem", "ok", f"{where}{because}")
            return None
        if fault not in self._reasons:
            try:
                lab_faults.check_host(self.config)
            except LabError as exc:
                self._reasons[fault] = exc.message
            else:
                self._reasons[fault] = None
        return self._reasons[fault]

    def inject(self, fault: Fault, nodes: Sequence[str]) -> None:
        if fault is Fault.KILL:
            teardown.kill(self.config, nodes, self.backends)
        elif fault is Fault.REPLACE:
            for node in nodes:
                lab_replace.throw_away(self.config, node, self.progress, backends=self.backends)
        elif fault is Fault.PARTITION:
            majority = len(self.config.members) // 2 + 1
            lab_faults.partition(
                self.config,
                nodes,
                allow_quorum_loss=len(nodes) >= majority,
                backends=self.backends,
                runner=self.runner,
            )
        else:
            for node in nodes:
                lab_faults.netem(
                    self.config,
                    node,
                    DELAY,
                    on=self.delay_on,
                    backends=self.backends,
                    runner=self.runner,
                )

    def recover(self, fault: Fault, nodes: Sequence[str]) -> None:
        if fault is Fault.KILL:
            teardown.start(self.config, nodes, self.progress, self.backends)
        elif fault is Fault.REPLACE:
            for node in nodes:
                lab_replace.rejoin(self.config, node, self.progress, backends=self.backends)
        else:
            lab_faults.heal(self.config, nodes, backends=self.backends, runner=self.runner)


class LabFleet:
    """One unit per scenario, started and counted with fleetctl on a healthy member."""

    def __init__(self, config: LabConfig, run_id: str) -> None:
        self.config, self.run_id = config, run_id

    def _fleetctl(self, args: Sequence[str]) -> str:
        from provisioner import operate

        remote_args, uploads = operate.fleetctl_args(args)
        node = operate.pick_member(self.config)
        done = operate.run_tool(self.config, node, ["fleetctl", *remote_args], uploads=uploads)
        if done.failed:
            raise LabError(f"fleetctl {' '.join(args)}: {done.stderr.strip() or done.rc}")
        return done.stdout

    def launch(self, scenario: str) -> str:
        name = f"drill-{self.run_id}-{scenario}.service"
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / name
            path.write_text(UNIT_TEXT.format(name=name))
            self._fleetctl(["start", str(path)])
        return name

    def copies(self, units: Sequence[str]) -> dict[str, int]:
        states = parse_list_units(self._fleetctl(LIST_UNITS.split()[1:]))
        return {
            unit: sum(1 for s in states if s.unit == unit and s.active == "active")
            for unit in units
        }

    def remove(self, units: Sequence[str]) -> None:
        if units:
            with contextlib.suppress(LabError):
                self._fleetctl(["destroy", *units])


def drill(
    config: LabConfig,
    scenarios: Sequence[Scenario],
    settings: Settings,
    progress: Progress,
    *,
    fleet: bool = True,
    report: Callable[[ScenarioResult], None] = lambda _: None,
    backends: Backends | None = None,
) -> list[ScenarioResult]:
    """Run ``scenarios`` one after another on the running lab."""
    if len(config.members) < 3:  # a follower besides the leader, and a quorum of two
        raise LabError(
            f"a drill needs at least 3 etcd members; this lab has {len(config.members)}",
            hint="raise the member count in lab.yaml",
        )
    run_id = time.strftime("%Y%m%d%H%M%S")
    client = DrillClient(member_urls(config), timeout=CLIENT_TIMEOUT)
    return run_drill(
        scenarios,
        client,
        LabInjector(config, progress, backends),
        settings,
        run_id=run_id,
        fleet=LabFleet(config, run_id) if fleet else None,
        report=report,
    )
