#!/usr/bin/env python3
"""How long after a machine's hard death do its units run elsewhere?

Starts a real etcd 3.4 and several real fleetd processes on loopback (the test
stand-in unit manager replaces systemd), starts one unit per machine, kills one
fleetd with SIGKILL and measures until every unit it ran is active on another
machine. Runs with the default agent_ttl (30s) and a short one, killing both a
plain machine and the engine leader (whose leadership must fail over as well).
The target printed alongside is agent_ttl + 5 s.

    .venv/bin/python scripts/bench_fleet.py [--ttl 30s --ttl 5s] [--machines 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioner.guest.fleet.config import parse_duration  # noqa: E402
from tests.etcd_support import EtcdMember  # noqa: E402
from tests.fleet_support import FleetCluster, Machine, write_unit  # noqa: E402

UNIT = "[Unit]\nDescription=bench {n}\n\n[Service]\nExecStart=/bin/sleep 100000\n"


@dataclass(frozen=True)
class Sample:
    agent_ttl: str
    victim: str
    units: int
    seconds: float
    target: float


def measure(
    root: Path, agent_ttl: str, machines: int, *, kill_leader: bool, reconcile: float
) -> Sample:
    etcd = EtcdMember(root / "etcd")
    cluster: FleetCluster | None = None
    try:
        etcd.start_alone()
        cluster = FleetCluster(
            root / "machines", etcd.client_url, agent_ttl=agent_ttl, reconcile_interval=reconcile
        )
        for index in range(machines):
            cluster.start_machine(f"m{index}")
        paths = [
            str(write_unit(root, f"bench{n}.service", UNIT.format(n=n))) for n in range(machines)
        ]
        started = cluster.fleetctl("start", "--block-attempts=120", *paths, timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"fleetctl start failed: {started.stderr}")
        victim = pick_victim(cluster, kill_leader=kill_leader)
        names = sorted(victim.running())
        killed = time.monotonic()
        cluster.kill(victim)

        def moved() -> bool:
            return all(
                (on := cluster.active_on(name)) != [] and victim.machine_id not in on
                for name in names
            )

        ttl = parse_duration(agent_ttl)
        cluster.wait(moved, ttl + 60, f"units of {victim.name} to run elsewhere")
        elapsed = time.monotonic() - killed
        role = "engine leader" if kill_leader else "plain machine"
        return Sample(agent_ttl, role, len(names), elapsed, ttl + 5)
    finally:
        if cluster is not None:
            cluster.close()
        etcd.stop()


def pick_victim(cluster: FleetCluster, *, kill_leader: bool) -> Machine:
    record = cluster.wait(cluster.registry.leader, 30, "an engine leader")
    for machine in cluster.machines.values():
        is_leader = machine.machine_id == record.machine_id
        if is_leader == kill_leader and machine.running():
            return machine
    raise RuntimeError("no machine with units matches the scenario")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ttl", action="append", help="agent_ttl to measure (repeatable; default 30s and 5s)"
    )
    parser.add_argument("--machines", type=int, default=3, help="fleetd processes (default 3)")
    parser.add_argument(
        "--reconcile-interval",
        type=float,
        default=2.0,
        help="engine_reconcile_interval in seconds (fleet's default 2)",
    )
    args = parser.parse_args(argv)
    ttls = args.ttl or ["30s", "5s"]
    print(
        f"fleet failover: {args.machines} fleetd on loopback, one unit each, "
        f"engine_reconcile_interval={args.reconcile_interval}s"
    )
    print(f"{'agent_ttl':<10} {'killed':<14} {'units':>5} {'moved after':>12} {'target':>8}  ok")
    for ttl in ttls:
        for kill_leader in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
                sample = measure(
                    Path(tmp),
                    ttl,
                    args.machines,
                    kill_leader=kill_leader,
                    reconcile=args.reconcile_interval,
                )
            ok = sample.seconds <= sample.target
            print(
                f"{sample.agent_ttl:<10} {sample.victim:<14} {sample.units:>5} "
                f"{sample.seconds:>11.1f}s {sample.target:>7.1f}s  {'yes' if ok else 'NO'}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
