#!/usr/bin/env python3
"""Snapshots against booting, in one run: `lab up --nodes N` from cold, `lab snapshot
save`, then `lab snapshot restore` (reverted, clocks stepped, `lab up`'s readiness and
cluster checks passed) and `lab verify` after it, each restore --rounds times, and the
ratio restore / up.

Target (3 nodes, TCG, this host): restore to checked at most 15 s; goal under 10 s.
Prints figures and asserts nothing. The lab is destroyed at the end, its snapshots
with it.

    .venv/bin/python scripts/bench_snapshot.py [--nodes 3] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.host import pick_subnets, used_networks  # noqa: E402
from benchmarks.lab import (  # noqa: E402
    UP_TIMEOUT,
    VERIFY_TIMEOUT,
    lab_cleanup,
    make_lab_dir,
    require_ok,
    run_lab,
)
from benchmarks.report import format_table, say  # noqa: E402
from provisioner.hypervisor.libvirt import LibvirtHost  # noqa: E402

SNAPSHOT = "bench"
TARGET_SECONDS = 15.0
GOAL_SECONDS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-snapshot-", dir="/var/tmp"))
    logs = workdir / "logs"
    logs.mkdir()
    with LibvirtHost.open() as host:
        (subnet,) = pick_subnets(used_networks(host), 1)
    name = f"bench-snapshot-{uuid.uuid4().hex[:4]}"
    lab_dir = make_lab_dir(workdir / name, name, subnet)
    with (lab_dir / "lab.yaml").open("a") as settings:
        settings.write(f"num_instances: {args.nodes}\n")
    failed = True
    figures: dict[str, object] = {"nodes": args.nodes}
    try:
        say(f"`lab up --nodes {args.nodes}` in {lab_dir}")
        up = run_lab(lab_dir, ["up"], logs / "up.log", UP_TIMEOUT, echo=False)
        require_ok(up, "lab up", logs / "up.log")
        say(f"up in {up.seconds:.1f}s")
        save = run_lab(lab_dir, ["snapshot", "save", SNAPSHOT], logs / "save.log", 600.0,
                       echo=False)  # fmt: skip
        require_ok(save, "lab snapshot save", logs / "save.log")
        say(f"saved in {save.seconds:.1f}s")
        restores, verifies = [], []
        for round_ in range(1, args.rounds + 1):
            # the lab moves on between rounds: a key written after the snapshot
            run_lab(lab_dir, ["etcdctl", "put", "/bench/after", str(round_)],
                    logs / f"put-{round_}.log", 120.0, echo=False)  # fmt: skip
            restore = run_lab(lab_dir, ["snapshot", "restore", SNAPSHOT],
                              logs / f"restore-{round_}.log", 900.0, echo=False)  # fmt: skip
            require_ok(restore, "lab snapshot restore", logs / f"restore-{round_}.log")
            verify = run_lab(lab_dir, ["verify"], logs / f"verify-{round_}.log", VERIFY_TIMEOUT,
                             echo=False)  # fmt: skip
            require_ok(verify, "lab verify", logs / f"verify-{round_}.log")
            restores.append(restore.seconds)
            verifies.append(verify.seconds)
            say(f"round {round_}: restored in {restore.seconds:.1f}s, verified in "
                f"{verify.seconds:.1f}s")  # fmt: skip
        restore_median = statistics.median(restores)
        figures.update(
            up_seconds=up.seconds,
            save_seconds=save.seconds,
            restore_seconds=restores,
            verify_after_restore_seconds=verifies,
            restore_median_seconds=restore_median,
            ratio_restore_over_up=restore_median / up.seconds,
        )
        rows = [
            ["lab up (cold)", f"{up.seconds:.1f}s", ""],
            ["lab snapshot save", f"{save.seconds:.1f}s", ""],
            ["lab snapshot restore (checked)", f"{restore_median:.1f}s",
             ", ".join(f"{s:.1f}" for s in restores)],
            ["lab verify after a restore", f"{statistics.median(verifies):.1f}s",
             ", ".join(f"{s:.1f}" for s in verifies)],
            ["restore / up", f"{restore_median / up.seconds:.2f}", ""],
        ]  # fmt: skip
        print(format_table(("what", "median", "rounds"), rows))
        verdict = (
            "goal met" if restore_median <= GOAL_SECONDS
            else "target met" if restore_median <= TARGET_SECONDS
            else "target missed"
        )  # fmt: skip
        print(f"target: restore to checked <= {TARGET_SECONDS:g}s, goal < {GOAL_SECONDS:g}s: "
              f"{verdict}")  # fmt: skip
        failed = False
    finally:
        say(str(lab_cleanup(lab_dir, name, logs, lambda: failed)() or "destroyed"))
        if failed:
            say(f"logs kept in {logs}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
