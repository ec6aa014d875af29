#!/usr/bin/env python3
"""Benchmark `lab up` against a floor of bare libvirt guests: prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_up.py [--json FILE] [--nodes 3] [--discovery MODE] [--rounds N]

In one run, on this host:

1. the floor: the same box booted three times straight from libvirt-python
   (domain XML written here, qcow2 overlays, a config-2 ISO per guest with a
   static-etcd cloud-config rendered by provisioner.render, one isolated network
   with DHCP reservations), timed until etcd answers 3/3 healthy over HTTP from
   the host, with the first and last SSH banner on the way;
2. `lab up --nodes N` in a fresh lab directory under /var/tmp, phase by phase
   from its progress lines, while the floor's probes watch its guests from
   outside (so boot, and what comes before and after it, compare directly),
   then `lab verify`;
3. the ratio lab up / floor, against the target 1.5 and the goal 1.2; with
   ``--rounds N``, steps 1 and 2 (without verify) again N-1 times, each lab up
   over the floor run just before it, and the median of those ratios, since the
   speed of a shared host drifts from one minute to the next;
4. `lab destroy`;
5. per part, sampled every 0.5 s: peak host memory above the level at the part's
   start (MemAvailable), peak resident memory of the run's own QEMU processes,
   average busy CPUs on the host and in those QEMU processes, the load average
   before and after; and the CPU time of each `lab` command's process tree.

The box is built (or found in the cache) first. Its one-time upload into the
libvirt pool is done by a 1-node warm-up lab when it is missing, so no timed
part pays for it. Everything is named `bench-...` and removed at the end, also
after a failure or Ctrl-C.

The code is in the ``benchmarks`` package (floor, sampler, report, lab, host, up).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.up import run  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--nodes", type=int, default=3, help="nodes in both runs (default 3)")
    parser.add_argument(
        "--discovery", help="passed to `lab up` (default: lab's own default); the floor is static"
    )
    parser.add_argument("--box", default="default", help="box recipe (default: default)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="floor-then-lab rounds; the host's speed drifts, so the median ratio is the "
        "figure (verify runs in the first round only; default 1)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the logs also when the run succeeds"
    )
    parser.add_argument(
        "--workdir", default="/var/tmp", help="where the bench-* directories go (default /var/tmp)"
    )
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
