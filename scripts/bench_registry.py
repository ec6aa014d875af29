#!/usr/bin/env python3
"""The lab registry on a real lab: `lab image import` time and registry disk use for a
50 MB and a 500 MB image, then a first `docker pull` of the 50 MB image on one node and
on every node at once, against `docker load` of the same image from a file on the node
(one node, then every node at once), as ratios.

The images are busybox plus layers of random bytes (incompressible, 50 MB each at most,
so the 500 MB image has ten: docker pulls three layers at a time), built here. Brings up
a 3-node lab (destroyed afterwards) unless --lab names a running one. Each guest times
its own command (python3 around `docker pull` / `docker load`), so SSH is not counted;
docker is started on every node first (socket activation) and the image removed from
every node before each measurement. The images go from the registry afterwards unless
--keep-images. Prints figures, asserts nothing.

    .venv/bin/python scripts/bench_registry.py [--lab DIR] [--sizes 50 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
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
from provisioner import nodes as node_access  # noqa: E402
from provisioner.box import dockerimage  # noqa: E402
from provisioner.config import LabConfig  # noqa: E402
from provisioner.hypervisor.libvirt import LibvirtHost  # noqa: E402
from provisioner.lab import load_lab  # noqa: E402
from provisioner.registry.images import Images  # noqa: E402
from provisioner.registry.service import registry_root  # noqa: E402
from provisioner.state import load_state  # noqa: E402

LAYER_MB = 50
GUEST_FILE = "/var/tmp/bench-registry.tar"
COMMAND_TIMEOUT = 1800.0
# run argv on the guest and print how long it took there
TIMED = """
import subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print("bench-seconds %.3f rc %d" % (time.monotonic() - start, done.returncode))
if done.returncode:
    print(done.stderr[-400:])
"""
_TIMED = re.compile(r"^(?:\[(?P<node>[\w-]+)\] )?bench-seconds (?P<s>[\d.]+) rc (?P<rc>\d+)", re.M)


def build_image(path: Path, size_mb: int, reference: str) -> None:
    """busybox plus ``size_mb`` of random bytes in layers of LAYER_MB at most."""
    layers = [dockerimage.host_busybox_layer()]
    left = size_mb
    number = 0
    while left > 0:
        chunk = min(LAYER_MB, left)
        layers.append(
            dockerimage.files_layer({f"data/{number:03d}.bin": os.urandom(chunk * 10**6)})
        )
        left -= chunk
        number += 1
    path.write_bytes(dockerimage.image_archive(layers, reference, "bench_registry"))


def timed(lab_dir: Path, target: list[str], argv: list[str], log: Path) -> dict[str, float]:
    """node -> seconds ``argv`` took on it (``target``: ``[NODE]`` or ``["--all"]``)."""
    run = run_lab(lab_dir, ["exec", *target, "--", "python3", "-c", TIMED, *argv], log,
                  COMMAND_TIMEOUT, echo=False)  # fmt: skip
    found = {}
    for match in _TIMED.finditer(run.stdout):
        node = match.group("node") or target[0]
        if match.group("rc") != "0":
            raise SystemExit(f"`{shlex.join(argv)}` failed on {node}: {run.stdout[-800:]}")
        found[node] = float(match.group("s"))
    if run.returncode != 0 or not found:
        raise SystemExit(f"`lab exec {' '.join(target)}` failed: {run.stdout[-800:]} (see {log})")
    return found


def on_all(lab_dir: Path, argv: list[str], log: Path) -> None:
    run = run_lab(lab_dir, ["exec", "--all", "--", *argv], log, COMMAND_TIMEOUT, echo=False)
    require_ok(run, " ".join(argv), log)


def upload_everywhere(config: LabConfig, archive: Path) -> None:
    state = load_state(config.state_dir)
    for node in config.nodes:
        runner = node_access.runner(config, state, node, command_timeout=COMMAND_TIMEOUT)
        try:
            runner.upload(archive, GUEST_FILE)
        finally:
            runner.close()


def measure_imports(
    lab_dir: Path,
    images: Images,
    sizes: list[int],
    run_id: str,
    workdir: Path,
    rows: list[list[str]],
    figures: dict[str, object],
) -> dict[int, tuple[Path, str]]:
    """`lab image import` of each size: time and what the registry's disk grew by."""
    logs = workdir / "logs"
    archives = {}
    for size in sizes:
        reference = f"bench-{size}mb:{run_id}"
        archive = workdir / f"bench-{size}mb.tar"
        say(f"building a {size} MB image")
        build_image(archive, size, reference)
        before = images.disk_use()
        log = logs / f"import-{size}.log"
        imported = run_lab(lab_dir, ["image", "import", str(archive)], log, COMMAND_TIMEOUT,
                           echo=False)  # fmt: skip
        require_ok(imported, f"lab image import ({size} MB)", log)
        archives[size] = (archive, reference)
        grew = images.disk_use() - before
        figures[f"import_{size}mb_seconds"] = imported.seconds
        figures[f"registry_disk_{size}mb_bytes"] = grew
        rate = size / imported.seconds if imported.seconds else 0.0
        rows.append([f"import {size} MB ({archive.stat().st_size / 1e6:.0f} MB archive)",
                     f"{imported.seconds:.1f}s, {rate:.1f} MB/s"])  # fmt: skip
        rows.append([f"registry disk for {size} MB", f"+{grew / 1e6:.1f} MB"])
    return archives


def measure_pulls(
    lab_dir: Path,
    config: LabConfig,
    size: int,
    archive: Path,
    reference: str,
    rows: list[list[str]],
    figures: dict[str, object],
) -> None:
    """First pulls (one node, then all at once) against `docker load` from a file."""
    logs = archive.parent / "logs"
    say("starting docker on every node (socket activation)")
    on_all(lab_dir, ["docker", "version"], logs / "docker-start.log")
    rmi = ["sh", "-c", f"docker rmi -f {shlex.quote(reference)} >/dev/null 2>&1; true"]
    first = config.nodes[0].name
    pull, load = ["docker", "pull", reference], ["docker", "load", "-q", "-i", GUEST_FILE]

    on_all(lab_dir, rmi, logs / "rmi-1.log")
    pull_one = timed(lab_dir, [first], pull, logs / "pull-one.log")
    on_all(lab_dir, rmi, logs / "rmi-2.log")
    pull_all = timed(lab_dir, ["--all"], pull, logs / "pull-all.log")
    say(f"copying the {size} MB archive to every node for `docker load`")
    upload_everywhere(config, archive)
    on_all(lab_dir, rmi, logs / "rmi-3.log")
    load_one = timed(lab_dir, [first], load, logs / "load-one.log")
    on_all(lab_dir, rmi, logs / "rmi-4.log")
    load_all = timed(lab_dir, ["--all"], load, logs / "load-all.log")
    on_all(lab_dir, ["sh", "-c", f"{rmi[2]}; rm -f {GUEST_FILE}"], logs / "clean.log")

    one_ratio = pull_one[first] / load_one[first]
    all_ratio = max(pull_all.values()) / max(load_all.values())
    figures.update(
        pull_one_seconds=pull_one[first],
        pull_all_seconds=pull_all,
        load_one_seconds=load_one[first],
        load_all_seconds=load_all,
        ratio_pull_over_load_one=one_ratio,
        ratio_pull_over_load_all=all_ratio,
    )
    slowest_pull, slowest_load = max(pull_all.values()), max(load_all.values())
    rows += [
        [f"first pull of {size} MB on {first}", f"{pull_one[first]:.1f}s"],
        [f"docker load of it from a file on {first}", f"{load_one[first]:.1f}s"],
        ["ratio pull / load, one node", f"{one_ratio:.2f}"],
        [f"first pull on all {len(pull_all)} nodes at once (slowest)", f"{slowest_pull:.1f}s"],
        ["docker load on all at once (slowest)", f"{slowest_load:.1f}s"],
        ["ratio pull / load, all nodes", f"{all_ratio:.2f}"],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", type=Path, help="a running lab (default: bring one up)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500], metavar="MB")
    parser.add_argument("--keep-images", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-registry-", dir="/var/tmp"))
    logs = workdir / "logs"
    logs.mkdir()
    cleanup = None
    failed = True
    figures: dict[str, object] = {}
    names: list[str] = []
    run_id = uuid.uuid4().hex[:6]
    try:
        if args.lab:
            lab_dir = args.lab
        else:
            with LibvirtHost.open() as host:
                (subnet,) = pick_subnets(used_networks(host), 1)
            name = f"bench-registry-{run_id[:4]}"
            lab_dir = make_lab_dir(workdir / name, name, subnet)
            cleanup = lab_cleanup(lab_dir, name, logs, lambda: failed)
            say(f"`lab up --nodes 3` in {lab_dir}")
            up = run_lab(lab_dir, ["up", "--nodes", "3"], logs / "up.log", UP_TIMEOUT, echo=False)
            require_ok(up, "lab up", logs / "up.log")
            figures["up_seconds"] = up.seconds
        config = load_lab(lab_dir)
        images = Images(registry_root(), config.registry.port)
        rows: list[list[str]] = []
        archives = measure_imports(lab_dir, images, args.sizes, run_id, workdir, rows, figures)
        names.extend(reference for _, reference in archives.values())
        size = min(args.sizes)
        measure_pulls(lab_dir, config, size, *archives[size], rows, figures)
        print(format_table(("what", "figure"), rows))
        failed = False
    finally:
        if names and not args.keep_images:
            Images(registry_root()).remove(names)
        if cleanup is not None:
            say(str(cleanup() or "destroyed"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
