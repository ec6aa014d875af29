#!/usr/bin/env python3
"""flannel's overlay on real labs: boot to a lease per node, and container-to-container
round trip and TCP throughput across two nodes against the nodes' own addresses (the
underlay), as ratios measured in the same run, for each backend asked for.

Brings up a 2-node lab per backend (destroyed afterwards), or measures labs that are
already up with --lab. Prints figures and asserts nothing; the target is vxlan
throughput at least 0.8 of the underlay's under KVM (under TCG the guests' CPU, which
encapsulates every packet, is the bottleneck: see what it prints).

    .venv/bin/python scripts/bench_flannel.py [--backend vxlan --backend host-gw]
        [--lab DIR ...] [--size-mb 50] [--pings 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.host import pick_subnets, used_networks  # noqa: E402
from benchmarks.lab import UP_TIMEOUT, lab_cleanup, make_lab_dir, require_ok, run_lab  # noqa: E402
from benchmarks.overlay import LabShell, OverlayFigures, measure  # noqa: E402
from benchmarks.report import format_table, say  # noqa: E402
from provisioner.hypervisor.libvirt import LibvirtHost  # noqa: E402
from provisioner.lab import load_lab  # noqa: E402


def figures_for(lab_dir: Path, args: argparse.Namespace) -> OverlayFigures:
    config = load_lab(lab_dir)  # with the flags it was brought up with
    if not config.flannel.enabled or len(config.nodes) < 2:
        raise SystemExit(f"{lab_dir}: needs flannel on and at least two nodes")
    nodes = [(node.name, node.ip) for node in config.nodes]
    return measure(LabShell(lab_dir), nodes, config.flannel.backend,
                   size_mb=args.size_mb, pings=args.pings)  # fmt: skip


def new_lab(backend: str, workdir: Path, logs: Path) -> tuple[Path, str]:
    with LibvirtHost.open() as host:
        (subnet,) = pick_subnets(used_networks(host), 1)
    name = f"bench-flannel-{backend}-{uuid.uuid4().hex[:4]}"
    lab_dir = make_lab_dir(workdir / name, name, subnet)
    with (lab_dir / "lab.yaml").open("a") as settings:
        settings.write(f"num_instances: 2\netcd_members: 1\nflannel: {{backend: {backend}}}\n")
    log = logs / f"{name}-up.log"
    say(f"{backend}: `lab up --nodes 2` in {lab_dir}")
    up = run_lab(lab_dir, ["up"], log, UP_TIMEOUT, echo=False)
    require_ok(up, f"lab up ({backend})", log)
    say(f"{backend}: up in {up.seconds:.1f}s")
    return lab_dir, name


def report(results: list[OverlayFigures]) -> None:
    rows = []
    for r in results:
        leases = [s for s in r.lease_seconds.values() if s is not None]
        rows.append([
            r.backend,
            f"{max(leases):.1f}s" if leases else "-",
            f"{r.underlay.rtt_ms:.2f}", f"{r.overlay.rtt_ms:.2f}", f"{r.rtt_ratio:.2f}",
            f"{r.underlay.mb_per_s:.1f}", f"{r.overlay.mb_per_s:.1f}",
            f"{r.throughput_ratio:.2f}",
        ])  # fmt: skip
    headers = ("backend", "boot->lease", "rtt under ms", "rtt over ms", "rtt ratio",
               "under MB/s", "over MB/s", "throughput ratio")  # fmt: skip
    print(format_table(headers, rows))
    print("target: vxlan throughput ratio >= 0.8 under KVM (boot->lease: the slowest node)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=("vxlan", "host-gw", "udp"))
    parser.add_argument("--lab", action="append", type=Path, help="measure this running lab")
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-flannel-", dir="/var/tmp"))
    logs = workdir / "logs"
    logs.mkdir()
    for lab_dir in args.lab or []:
        results.append(figures_for(lab_dir, args))
    for backend in args.backend or ([] if args.lab else ["vxlan", "host-gw"]):
        lab_dir, name = new_lab(backend, workdir, logs)
        try:
            results.append(figures_for(lab_dir, args))
        finally:
            say(f"{backend}: {lab_cleanup(lab_dir, name, logs, lambda: False)() or 'destroyed'}")
    report(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
