"""Benchmark `lab box build` and the box's boot: prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_box.py [--box default] [--warm-debs] [--keep]

Measures, in a fresh cache directory (so nothing is reused unless asked):
cold build time, cached build time, `vagrant box add` time (into a throw-away
VAGRANT_HOME), compressed box size, and boot-to-SSH of one guest under the
host's accelerator (TCG here) with a config drive. Targets: cold < 5 min,
cached < 2 s, box < 350 MB, boot-to-SSH within 1.2x of ~27 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioner.accel import choose_accel  # noqa: E402
from provisioner.box import package  # noqa: E402
from provisioner.box.build import build_box  # noqa: E402
from provisioner.box.cache import cache_root, remove_tree  # noqa: E402
from provisioner.errors import LabError  # noqa: E402
from tests.qemu_support import GuestSpec, QemuGuest  # noqa: E402

USER_DATA = "#cloud-config\nhostname: bench-01\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", default="default", help="recipe name under boxes/")
    parser.add_argument(
        "--warm-debs",
        action="store_true",
        help="let debootstrap reuse the user's downloaded packages (no download in the cold build)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's cache dir")
    parser.add_argument(
        "--no-cold",
        action="store_true",
        help="skip the cold build: time the user's cache and boot its box",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lab-bench-box-"))
    cache = cache_root() if args.no_cold else work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    if args.warm_debs and not args.no_cold:
        (cache_root() / "debs").mkdir(parents=True, exist_ok=True)
        (cache / "debs").symlink_to(cache_root() / "debs")
    try:
        started = time.monotonic()
        built = build_box(args.box, cache=cache, add_to_vagrant=False)
        cold = None if args.no_cold else time.monotonic() - started

        started = time.monotonic()
        again = build_box(args.box, cache=cache, add_to_vagrant=False)
        cached = time.monotonic() - started
        if not again.cached:
            print("warning: the second build was not served from the cache", file=sys.stderr)

        os.environ["VAGRANT_HOME"] = str(work / "vagrant.d")
        started = time.monotonic()
        package.add(built.vagrant_name, built.box_file, work / "vagrant.log")
        vagrant_add = time.monotonic() - started

        accel = choose_accel()
        spec = GuestSpec(
            image=built.image, workdir=work / "guest", name="bench-01", user_data=USER_DATA
        )
        with QemuGuest(spec) as guest:
            boot = guest.wait_for_ssh_banner(timeout=600)

        debs = "reused" if args.warm_debs else "downloaded"
        print(f"box:                 {built.vagrant_name}")
        if cold is not None:
            print(f"cold build:          {cold:7.1f} s   (packages {debs}; target < 300 s)")
        print(f"cached build:        {cached:7.2f} s   (target < 2 s)")
        print(f"vagrant box add:     {vagrant_add:7.1f} s")
        print(f"box size:            {built.size_bytes / 1e6:7.1f} MB  (box.img; target < 350 MB)")
        print(f"boot to SSH ({accel.accel}):  {boot:7.1f} s   (target <= 32.4 s = 1.2 x 27 s)")
    except LabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
