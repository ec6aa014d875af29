#!/usr/bin/env python3
"""The worker pool on a real lab: time to add one worker to a running lab until fleet
lists it (`lab scale` returns then), time to remove one, and etcd request latency from a
worker through its local proxy against a core member's own etcd, as a ratio.

Brings up a 3 core + 2 worker lab (destroyed afterwards) unless --lab names a running
one with workers. Latency: a python3 loop on the guest (no process start per request)
times --requests reads of one key over etcd's JSON gateway at 127.0.0.1:2379, on a
worker (its etcd gateway passes them to a core member) and on a core node (its own
member). Targets: one worker added within one node's boot plus 10 s. Prints figures,
asserts nothing.

    .venv/bin/python scripts/bench_workers.py [--lab DIR] [--requests 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.host import pick_subnets, used_networks  # noqa: E402
from benchmarks.lab import UP_TIMEOUT, lab_cleanup, make_lab_dir, require_ok, run_lab  # noqa: E402
from benchmarks.report import format_table, say  # noqa: E402
from provisioner.hypervisor.libvirt import LibvirtHost  # noqa: E402
from provisioner.lab import load_lab  # noqa: E402

# reads of one key over etcd's v3 JSON gateway, timed inside the guest
LATENCY = """
import json, time, urllib.request
url = "http://127.0.0.1:2379/v3/kv/range"
body = json.dumps({"key": "L2JlbmNoL3dvcmtlcnM="}).encode()  # /bench/workers
def once():
    with urllib.request.urlopen(urllib.request.Request(url, body), timeout=10) as r:
        r.read()
once()
start = time.monotonic()
for _ in range(N):
    once()
print("per-request-ms %.3f" % ((time.monotonic() - start) / N * 1000))
"""
_MS = re.compile(r"per-request-ms ([\d.]+)")


def latency_ms(lab_dir: Path, node: str, requests: int, logs: Path) -> float:
    script = f"N = {requests}\n" + LATENCY
    run = run_lab(lab_dir, ["exec", node, "--", "python3", "-c", script],
                  logs / f"latency-{node}.log", 600.0, echo=False)  # fmt: skip
    require_ok(run, f"latency on {node}", logs / f"latency-{node}.log")
    found = _MS.search(run.stdout)
    if found is None:
        raise SystemExit(f"no timing from {node}: {run.stdout!r}")
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", type=Path, help="a running lab with workers")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-workers-", dir="/var/tmp"))
    logs = workdir / "logs"
    logs.mkdir()
    cleanup = None
    failed = True
    figures: dict[str, object] = {}
    try:
        if args.lab:
            lab_dir = args.lab
        else:
            with LibvirtHost.open() as host:
                (subnet,) = pick_subnets(used_networks(host), 1)
            name = f"bench-workers-{uuid.uuid4().hex[:4]}"
            lab_dir = make_lab_dir(workdir / name, name, subnet)
            with (lab_dir / "lab.yaml").open("a") as settings:
                settings.write("num_instances: 5\nworkers: 2\n")
            cleanup = lab_cleanup(lab_dir, name, logs, lambda: failed)
            say(f"`lab up --nodes 5 --workers 2` in {lab_dir}")
            up = run_lab(lab_dir, ["up"], logs / "up.log", UP_TIMEOUT, echo=False)
            require_ok(up, "lab up", logs / "up.log")
            say(f"up in {up.seconds:.1f}s")
            figures["up_seconds"] = up.seconds
        config = load_lab(lab_dir)
        workers = len(config.workers)
        core, worker = config.members[0].name, config.workers[0].name
        worker_ms = latency_ms(lab_dir, worker, args.requests, logs)
        core_ms = latency_ms(lab_dir, core, args.requests, logs)
        figures.update(worker_latency_ms=worker_ms, core_latency_ms=core_ms)
        grow = run_lab(lab_dir, ["scale", "--workers", str(workers + 1)], logs / "grow.log",
                       UP_TIMEOUT, echo=False)  # fmt: skip
        require_ok(grow, "lab scale (grow)", logs / "grow.log")
        shrink = run_lab(lab_dir, ["scale", "--workers", str(workers)], logs / "shrink.log",
                         UP_TIMEOUT, echo=False)  # fmt: skip
        require_ok(shrink, "lab scale (shrink)", logs / "shrink.log")
        figures.update(add_worker_seconds=grow.seconds, remove_worker_seconds=shrink.seconds)
        ratio = worker_ms / core_ms
        figures["latency_ratio_worker_over_core"] = ratio
        rows = [
            ["add one worker (until fleet lists it)", f"{grow.seconds:.1f}s"],
            ["remove one worker (drained first)", f"{shrink.seconds:.1f}s"],
            [f"etcd read on {worker} via its gateway", f"{worker_ms:.2f} ms"],
            [f"etcd read on {core} (its own member)", f"{core_ms:.2f} ms"],
            ["latency ratio worker / core", f"{ratio:.2f}"],
        ]
        print(format_table(("what", "figure"), rows))
        print("target: one worker added within one node's boot + 10 s (compare `lab up`'s boot)")
        failed = False
    finally:
        if cleanup is not None:
            say(str(cleanup() or "destroyed"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
