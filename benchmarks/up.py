"""One benchmark run of `lab up` against the floor; ``scripts/bench_up.py`` is its command.

:class:`Bench` builds (or finds) the box, warms the libvirt pool up when the
box is not in it yet, then per round times the floor and `lab up` (verify in
the first round), and `lab destroy`; :class:`Cleanups` removes everything the
run made, also after a failure or Ctrl-C. :func:`run` ties it together and
prints the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from benchmarks.floor import FLOOR_TIMEOUT, BootTimes, Floor, Watcher, boot_times
from benchmarks.host import (
    box_uploaded,
    leftovers,
    other_domains,
    pick_subnets,
    pool_volumes,
    read_through,
    used_networks,
)
from benchmarks.lab import (
    DESTROY_TIMEOUT,
    UP_TIMEOUT,
    VERIFY_TIMEOUT,
    interrupt_children,
    lab_cleanup,
    lab_phase_seconds,
    make_lab_dir,
    record_lab_up,
    require_ok,
    run_lab,
)
from benchmarks.report import Results, describe, print_summary, say
from benchmarks.sampler import HostSampler, load, measured
from provisioner.accel import choose_accel
from provisioner.box.build import BuiltBox, build_box
from provisioner.config import LabConfig, Overrides, load_config
from provisioner.errors import LabError
from provisioner.hypervisor.boxvolume import volume_prefix
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.hypervisor.naming import object_prefix


class Cleanups:
    """Teardown steps, run last-registered first; each one's failure is reported, not fatal."""

    def __init__(self, results: Results) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []
        self.results = results

    def add(self, label: str, step: Callable[[], object]) -> None:
        self.steps.append((label, step))

    def run(self) -> None:
        while self.steps:
            label, step = self.steps.pop()
            try:
                outcome = step()
                if outcome:
                    say(f"cleanup: {label}: {outcome}")
            except Exception as exc:  # noqa: BLE001 - every step runs; failures are reported
                self.results.errors.append(f"cleanup {label}: {exc}")
                say(f"cleanup: {label} FAILED: {exc}")


def logs_cleanup(logs: Path, keep_logs: Callable[[], bool]) -> Callable[[], object]:
    def step() -> object:
        if keep_logs():
            return f"logs kept in {logs}"
        shutil.rmtree(logs, ignore_errors=True)
        return None

    return step


class Bench:
    """One run: setup, the floor, then lab up / verify / destroy; teardown is in ``cleanups``."""

    def __init__(
        self,
        args: argparse.Namespace,
        results: Results,
        sampler: HostSampler,
        cleanups: Cleanups,
    ) -> None:
        self.args = args
        self.results = results
        self.sampler = sampler
        self.cleanups = cleanups
        self.run_id = results.run_id
        self.workdir = Path(args.workdir)
        self.logs = self.workdir / f"bench-logs-{self.run_id}"
        self.accel = choose_accel()

    def measured(self, part: str, host: LibvirtHost) -> AbstractContextManager[None]:
        """:func:`measured` for one part of this run."""
        others = len(other_domains(host, self.run_id))
        return measured(part, self.results.parts, self.sampler, others)

    def keep_logs(self) -> bool:
        return bool(self.args.keep_logs or self.results.errors)

    def run(self) -> None:
        from provisioner.hypervisor.daemons import ensure_daemons, ensure_default_pool

        self.logs.mkdir(mode=0o755)
        self.cleanups.add("logs", logs_cleanup(self.logs, self.keep_logs))
        ensure_daemons(start=True)
        ensure_default_pool(create=True)
        host = LibvirtHost.open()
        self.cleanups.add("libvirt connection", host.close)
        self.describe_host(host)
        built = self.box()
        floor_net, lab_net, warm_net = pick_subnets(used_networks(host), 3)
        lab = self.new_lab(lab_net)
        # The box's one-time upload into the libvirt pool is not part of any timed run.
        if box_uploaded(pool_volumes(host), built.vagrant_name):
            self.results.warmup = {"needed": False}
            say("box already in the libvirt pool: no warm-up needed")
        else:
            self.warm_up(self.workdir / f"bench-warm-{self.run_id}", warm_net)
        for number in range(1, self.args.rounds + 1):
            # the host's speed drifts from minute to minute: each round times the floor
            # and then lab up, and the ratios' median is the figure
            tag = "" if number == 1 else f" #{number}"
            if number > 1:  # a lab directory of its own, as the floor has
                lab = self.new_lab(lab_net, f"r{number}")
            floor = self.floor(host, built, lab, floor_net, tag)
            # The floor's base image is in the page cache from staging; read
            # vagrant-libvirt's copy once too, so both runs start warm.
            prefix = volume_prefix(built.vagrant_name)
            for name, path in pool_volumes(host).items():
                if name.startswith(prefix):
                    read_through(Path(path))
            up = self.lab(host, lab, tag, verify=number == 1)
            if up is not None:
                self.results.rounds.append({"floor": floor.total, "lab_up": up})
                say(f"round {number}: ratio {up / floor.total:.2f}")

    def new_lab(self, subnet: ipaddress.IPv4Network, suffix: str = "") -> LabConfig:
        name = f"bench-up-{self.run_id}{suffix}"
        directory = self.workdir / name
        self.cleanups.add(f"lab {name}", lab_cleanup(directory, name, self.logs, self.keep_logs))
        make_lab_dir(directory, name, subnet)
        return load_config(
            directory, Overrides(num_instances=self.args.nodes, discovery=self.args.discovery)
        )

    def describe_host(self, host: LibvirtHost) -> None:
        others = other_domains(host, self.run_id)
        self.results.host = {
            "cpus": os.cpu_count(),
            "accel": self.accel.accel,
            "accel_reason": self.accel.reason,
            "load_at_start": load(),
            "other_running_domains": others,
        }
        say(f"accel {self.accel.accel} ({self.accel.reason})")
        say(
            "load average {:.2f} {:.2f} {:.2f}; ".format(*load())
            + f"{len(others)} other running domains: {', '.join(others) or '-'}"
        )

    def box(self) -> BuiltBox:
        started = time.monotonic()
        built = build_box(self.args.box, add_to_vagrant=True)
        self.results.box = {
            "name": built.vagrant_name,
            "cached": built.cached,
            "seconds": time.monotonic() - started,
        }
        say(f"box {built.vagrant_name} ({'cached' if built.cached else 'built'})")
        return built

    def warm_up(self, lab_dir: Path, subnet: ipaddress.IPv4Network) -> None:
        """A 1-node lab, so vagrant-libvirt uploads the box into the pool before any timing."""
        name = lab_dir.name
        cleanup = lab_cleanup(lab_dir, name, self.logs, self.keep_logs)
        self.cleanups.add(f"warm-up lab {name}", cleanup)
        make_lab_dir(lab_dir, name, subnet)
        say(f"warm-up: the box is not in the libvirt pool yet; `lab up --nodes 1` in {lab_dir}")
        log = self.logs / "warm-up.log"
        up = run_lab(lab_dir, ["up", "--nodes", "1", "--discovery", "static"], log, UP_TIMEOUT)
        require_ok(up, "warm-up lab up", log)
        self.results.warmup = {
            "needed": True,
            "seconds": up.seconds,
            "phases": lab_phase_seconds(up.events),
        }
        say(f"warm-up: done in {up.seconds:.1f}s (not counted); removing it")
        say(f"warm-up: {cleanup()}")

    def floor(
        self,
        host: LibvirtHost,
        built: BuiltBox,
        lab: LabConfig,
        subnet: ipaddress.IPv4Network,
        tag: str = "",
    ) -> BootTimes:
        run = self.run_id + (f"r{tag.strip(' #')}" if tag else "")
        floor = Floor(run, self.workdir, lab, subnet, self.accel)
        self.cleanups.add(
            f"floor {floor.name}",
            lambda: floor.cleanup(host, self.logs if self.keep_logs() else None),
        )
        say(f"floor: copying the box image to {floor.base} (not timed)")
        floor.stage(built)
        say(f"floor: {len(floor.config.nodes)} guests on {subnet}, {lab.vm_memory} MiB each")
        try:
            with self.measured("floor" + tag, host):
                began = time.monotonic()
                floor.prepare(host, built)
                created = floor.boot(host)
                say("floor: started; waiting for SSH banners and etcd health")
                seen = floor.wait(created + FLOOR_TIMEOUT)
        except LabError:
            print(floor.console_tails(), flush=True)
            raise
        # As for the lab: a guest has started when its QEMU process is seen.
        started = self.sampler.first_start(floor.name, after=began)
        times = boot_times(began, started or created, seen)
        if not tag:
            self.results.floor = times
        say(f"floor{tag}: {describe(times)}")
        say(f"floor{tag}: removed {', '.join(floor.cleanup(host))}")
        return times

    def lab(
        self, host: LibvirtHost, lab: LabConfig, tag: str = "", *, verify: bool = True
    ) -> float | None:
        """lab up (its seconds, None if it failed), verify when asked, then destroy."""
        argv = ["up", "--nodes", str(self.args.nodes)]
        if self.args.discovery:
            argv += ["--discovery", self.args.discovery]
        say(f"lab {' '.join(argv)} in {lab.directory} (subnet {lab.subnet}, {lab.discovery})")
        # The same probes as the floor's watch the lab's guests from outside.
        began = time.monotonic()
        watcher = Watcher(lab.name, [n.ip for n in lab.nodes], began + UP_TIMEOUT)
        watcher.start()
        log_name = "up.log" if not tag else f"up-{tag.strip(' #')}.log"
        try:
            with self.measured("lab up" + tag, host):
                up = run_lab(lab.directory, argv, self.logs / log_name, UP_TIMEOUT)
                if not tag:
                    record_lab_up(up, lab, self.results)
                require_ok(up, "lab up" + tag, self.logs / log_name)
        finally:
            seen = watcher.finish(grace=30.0)
        booted = self.sampler.first_start(object_prefix(lab.name), after=began)
        if seen is None or booted is None:
            problem = watcher.error or "no QEMU process of the lab was seen"
            self.results.errors.append(f"watching lab up{tag}'s guests: {problem}")
        else:
            times = boot_times(began, booted, seen)
            if not tag:
                self.results.lab_boot = times
            say(f"lab up{tag}: {up.seconds:.1f}s; seen from outside: {describe(times)}")
        if verify:
            self.verify(host, lab)
        self.destroy(host, lab, tag)
        return up.seconds

    def verify(self, host: LibvirtHost, lab: LabConfig) -> None:
        say("lab verify")
        log = self.logs / "verify.log"
        with self.measured("lab verify", host):
            checked = run_lab(lab.directory, ["verify"], log, VERIFY_TIMEOUT, echo=False)
        self.results.tool_cpu["lab verify"] = checked.cpu_seconds
        self.results.verify_ok = checked.returncode == 0
        for line in checked.stdout.splitlines()[-4:]:
            print(f"    | {line}", flush=True)
        if not self.results.verify_ok:
            self.results.errors.append(f"lab verify exited {checked.returncode}; see {log}")

    def destroy(self, host: LibvirtHost, lab: LabConfig, tag: str = "") -> None:
        say("lab destroy" + tag)
        log = self.logs / ("destroy.log" if not tag else f"destroy-{tag.strip(' #')}.log")
        with self.measured("lab destroy" + tag, host):
            gone = run_lab(lab.directory, ["destroy"], log, DESTROY_TIMEOUT, echo=False)
            if not tag:
                self.results.tool_cpu["lab destroy"] = gone.cpu_seconds
            require_ok(gone, "lab destroy" + tag, log)
        print(f"    | {gone.stdout.strip()}", flush=True)


def run(args: argparse.Namespace) -> int:
    """One run with ``scripts/bench_up.py``'s arguments; 1 when anything went wrong."""
    os.umask(0o022)
    # Ctrl-C raises KeyboardInterrupt even when started in the background with SIGINT
    # ignored, and `lab` children then get the default disposition (they clean up too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt_children)
    run_id = os.urandom(3).hex()
    results = Results(
        started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), run_id=run_id
    )
    sampler = HostSampler(run_id)
    sampler.start()
    cleanups = Cleanups(results)
    say(f"bench_up run {run_id}")
    try:
        Bench(args, results, sampler, cleanups).run()
    except LabError as exc:
        results.errors.append(exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))
    except KeyboardInterrupt:
        results.errors.append("interrupted")
    except Exception as exc:  # noqa: BLE001 - a bug still gets cleanup, summary and JSON
        traceback.print_exc()
        results.errors.append(f"unexpected error: {exc!r}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup runs to the end
        say("cleaning up")
        cleanups.run()
        with contextlib.suppress(LabError), LibvirtHost.open() as host:
            results.leftovers = leftovers(host, run_id)
        sampler.stop()
        print_summary(results)
        if args.json:
            args.json.write_text(json.dumps(results.to_json(), indent=2) + "\n")
            print(f"figures written to {args.json}")
    return 1 if results.errors else 0
