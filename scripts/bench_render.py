#!/usr/bin/env python3
"""Time `lab render --nodes 3` and `lab render --nodes 50` (the real command, cold process).

Prints the best of several runs for each size, the per-node cost, and whether
growth is linear. Target: under 0.5 s for 3 nodes.

    .venv/bin/python scripts/bench_render.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_3 = 0.5


def time_render(lab: Path, nodes: int) -> float:
    command = [
        sys.executable, "-m", "provisioner.cli", "-C", str(lab), "render",
        "--nodes", str(nodes), "--discovery", "static", "--force",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[int, float] = {}
    for nodes in (3, 50):
        lab = Path(tempfile.mkdtemp(prefix="lab-bench-render-"))
        try:
            results[nodes] = min(time_render(lab, nodes) for _ in range(args.runs))
        finally:
            shutil.rmtree(lab)
    per_node = (results[50] - results[3]) / 47
    print(f"lab render --nodes 3:  {results[3]:.3f} s  (target < {TARGET_3} s)")
    print(f"lab render --nodes 50: {results[50]:.3f} s")
    print(f"per extra node:        {per_node * 1000:.1f} ms")
    fixed = results[3] - 3 * per_node
    predicted_50 = fixed + 50 * per_node
    print(f"linear model fixed cost {fixed:.3f} s + {per_node * 1000:.1f} ms/node "
          f"(predicts {predicted_50:.3f} s for 50)")  # fmt: skip
    print(f"3-node target met: {'yes' if results[3] < TARGET_3 else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
