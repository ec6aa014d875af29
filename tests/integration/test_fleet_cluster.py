"""fleet end to end on loopback: real etcd 3.4, several real fleetd, the real fleetctl.

Machines are fleetd processes with their own machine IDs and metadata; systemd
is replaced by the test stand-in unit manager (no systemd runs as PID 1 here),
whose recorded state shows which machine runs what.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.etcd_support import ETCD, EtcdMember
from tests.fleet_support import GUEST_PYTHON, FleetCluster, Machine, write_unit
from tests.loopback import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (ETCD.exists() and GUEST_PYTHON.exists()), reason="needs etcd 3.4 and python3"
    ),
    pytest.mark.timeout(240),
]

HELLO = """[Unit]
Description=Hello World

[Service]
ExecStart=/bin/bash -c "while true; do echo \\"Hello, world\\"; sleep 1; done"
"""


def service(description: str, xfleet: str = "") -> str:
    text = f"[Unit]\nDescription={description}\n\n[Service]\nExecStart=/bin/sleep 1000\n"
    return text + (f"\n[X-Fleet]\n{xfleet}\n" if xfleet else "")


def by_id(cluster: FleetCluster) -> dict[str, Machine]:
    return {m.machine_id: m for m in cluster.machines.values()}


def test_start_list_stop_unload_destroy_round_trip(cluster: FleetCluster, tmp_path: Path) -> None:
    one = cluster.start_machine("one")
    two = cluster.start_machine("two")
    first = min((one, two), key=lambda m: m.machine_id)
    unit = write_unit(tmp_path, "hello.service", HELLO)

    started = cluster.fleetctl("start", "--block-attempts=40", str(unit))
    assert started.returncode == 0, started.stderr
    # Both machines are empty: the tie goes to the lower machine ID.
    assert started.stdout == f"Unit hello.service launched on {first.legend}\n"
    assert first.running() == {"hello.service"}

    units = cluster.fleetctl("list-units")
    assert units.stdout.splitlines() == [
        "UNIT\t\tMACHINE\t\t\tACTIVE\tSUB",
        f"hello.service\t{first.legend}\tactive\trunning",
    ]
    files = cluster.fleetctl("list-unit-files")
    assert files.stdout.splitlines() == [
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET",
        f"hello.service\te55c0ae\tlaunched\tlaunched\t{first.legend}",
    ]
    cat = cluster.fleetctl("cat", "hello")
    assert cat.stdout == HELLO

    stopped = cluster.fleetctl("stop", "--block-attempts=40", "hello")
    assert stopped.returncode == 0
    assert stopped.stdout == f"Unit hello.service loaded on {first.legend}\n"
    assert stopped.stderr == "Successfully stopped units [hello.service].\n"
    assert first.fake_systemd()["hello.service"]["active"] == "inactive"
    listed = cluster.fleetctl("list-units", "--no-legend", "--fields=unit,load,active,sub")
    assert listed.stdout == "hello.service\tloaded\tinactive\tdead\n"

    unloaded = cluster.fleetctl("unload", "--block-attempts=40", "hello")
    assert unloaded.returncode == 0
    assert unloaded.stdout == "Unit hello.service inactive\n"
    assert unloaded.stderr == "Successfully unloaded units [hello.service].\n"
    files = cluster.fleetctl("list-unit-files", "--no-legend")
    assert files.stdout == "hello.service\te55c0ae\tinactive\tinactive\t-\n"
    assert cluster.fleetctl("list-units", "--no-legend").stdout == ""
    assert not (first.units_dir / "hello.service").exists()

    refused = cluster.fleetctl("stop", "hello.service")
    assert (refused.returncode, refused.stderr) == (
        1,
        "Unable to stop unit hello.service in state inactive\n",
    )

    destroyed = cluster.fleetctl("destroy", "hello.service")
    assert (destroyed.returncode, destroyed.stdout) == (0, "Destroyed hello.service\n")
    again = cluster.fleetctl("destroy", "hello.service")
    assert (again.returncode, again.stderr) == (0, "Units not found in registry\n")
    missing = cluster.fleetctl("cat", "hello.service")
    assert (missing.returncode, missing.stderr) == (1, "Unit hello.service not found\n")
    assert cluster.snapshot().jobs == {}


def test_start_unknown_unit_and_no_block(cluster: FleetCluster, tmp_path: Path) -> None:
    cluster.start_machine("one")
    unknown = cluster.fleetctl("start", "nothere")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "Error creating units: unable to find Unit(nothere.service) in Registry or on filesystem\n"
    )
    unit = write_unit(tmp_path, "quick.service", service("quick"))
    triggered = cluster.fleetctl("start", "--no-block", str(unit))
    assert (triggered.returncode, triggered.stdout) == (0, "Triggered unit quick.service start\n")
    cluster.wait(lambda: cluster.active_on("quick.service"), 20, "quick.service to run")


def test_destroy_of_running_unit_stops_it(cluster: FleetCluster, tmp_path: Path) -> None:
    one = cluster.start_machine("one")
    unit = write_unit(tmp_path, "gone.service", service("gone"))
    assert cluster.fleetctl("start", "--block-attempts=40", str(unit)).returncode == 0
    assert one.running() == {"gone.service"}
    assert cluster.fleetctl("destroy", "gone").stdout == "Destroyed gone.service\n"
    cluster.wait(lambda: not one.fake_systemd(), 20, "the destroyed unit to be unloaded")
    cluster.wait(
        lambda: cluster.fleetctl("list-units", "--no-legend").stdout == "",
        20,
        "list-units to forget the destroyed unit",
    )


def test_conflicting_units_spread_one_per_machine(cluster: FleetCluster, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        cluster.start_machine(name)
    paths = [
        str(write_unit(tmp_path, f"conflict.{i}.service", service(f"c{i}", "Conflicts=conflict*")))
        for i in range(5)
    ]
    result = cluster.fleetctl("start", "--no-block", *paths)
    assert result.returncode == 0, result.stderr

    def three_running() -> dict[str, str] | None:
        placed = {
            name: record.target
            for name, record in cluster.snapshot().jobs.items()
            if record.target is not None
        }
        active = {m.name: m.running() for m in cluster.machines.values()}
        if len(placed) == 3 and all(len(units) == 1 for units in active.values()):
            return {k: v for k, v in placed.items() if v}
        return None

    placed = cluster.wait(three_running, 30, "3 conflicting units on 3 machines")
    assert len(set(placed.values())) == 3
    time.sleep(2)  # a further engine pass must not place the other two anywhere
    assert len([r for r in cluster.snapshot().jobs.values() if r.target]) == 3
    files = cluster.fleetctl("list-unit-files", "--no-legend", "--fields=unit,dstate,state,target")
    rows = [line.split("\t") for line in files.stdout.splitlines()]
    assert sum(1 for row in rows if row[-1] == "-") == 2
    assert all(row[1] == "launched" for row in rows)


def test_machineof_keeps_units_together_and_moves_them_together(
    cluster: FleetCluster, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        cluster.start_machine(name)
    app = write_unit(tmp_path, "app.service", service("app"))
    side = write_unit(tmp_path, "sidecar.service", service("side", "MachineOf=app.service"))
    assert cluster.fleetctl("start", "--block-attempts=60", str(side), str(app)).returncode == 0
    host = cluster.target_of("app.service")
    assert host is not None
    assert cluster.target_of("sidecar.service") == host
    machine = by_id(cluster)[host]
    assert machine.running() == {"app.service", "sidecar.service"}

    cluster.kill(machine)

    def moved_together() -> str | None:
        app_on, side_on = cluster.active_on("app.service"), cluster.active_on("sidecar.service")
        if app_on and app_on == side_on and app_on[0] != host:
            return app_on[0]
        return None

    new_host = cluster.wait(moved_together, 30, "app and sidecar to move together")
    assert by_id(cluster)[new_host].running() == {"app.service", "sidecar.service"}


def test_metadata_placement_and_move_on_machine_death(
    cluster: FleetCluster, tmp_path: Path
) -> None:
    east1 = cluster.start_machine("east1", metadata={"region": "east", "disk": "ssd"})
    east2 = cluster.start_machine("east2", metadata={"region": "east", "disk": "hdd"})
    west = cluster.start_machine("west", metadata={"region": "west", "disk": "ssd"})
    machines = cluster.fleetctl("list-machines", "--full", "--no-legend")
    assert machines.stdout.splitlines() == sorted(
        f"{m.machine_id}\t{m.public_ip}\tdisk={m.metadata['disk']},region={m.metadata['region']}"
        for m in (east1, east2, west)
    )

    east_unit = write_unit(tmp_path, "east.service", service("east", "MachineMetadata=region=east"))
    either = write_unit(
        tmp_path,
        "fast.service",
        service("fast", 'MachineMetadata="region=west" "region=east"\nMachineMetadata=disk=ssd'),
    )
    nowhere = write_unit(tmp_path, "mars.service", service("mars", "MachineMetadata=region=mars"))
    result = cluster.fleetctl("start", "--block-attempts=60", str(east_unit), str(either))
    assert result.returncode == 0, result.stderr
    first = cluster.target_of("east.service")
    assert first in {east1.machine_id, east2.machine_id}
    assert cluster.target_of("fast.service") in {east1.machine_id, west.machine_id}
    assert cluster.fleetctl("start", "--no-block", str(nowhere)).returncode == 0
    time.sleep(1.5)
    assert cluster.target_of("mars.service") is None

    assert first is not None
    dead = by_id(cluster)[first]
    cluster.kill(dead)
    other = east2 if dead is east1 else east1
    cluster.wait(
        lambda: cluster.active_on("east.service") == [other.machine_id],
        30,
        "east.service to move to the other east machine",
    )
    assert "east.service" not in west.running()
    listed = cluster.fleetctl("list-machines", "--no-legend", "--fields=machine")
    assert dead.machine_id[:8] + "..." not in listed.stdout


def test_sigterm_leaves_at_once_and_units_move(tmp_path: Path, etcd: EtcdMember) -> None:
    # A long agent_ttl shows the departure is immediate, not a presence expiry.
    fleet = FleetCluster(tmp_path / "machines", etcd.client_url, agent_ttl="20s")
    try:
        one = fleet.start_machine("one")
        two = fleet.start_machine("two")
        unit = write_unit(tmp_path, "web.service", service("web"))
        assert fleet.fleetctl("start", "--block-attempts=60", str(unit)).returncode == 0
        host = by_id(fleet)[fleet.active_on("web.service")[0]]
        other = two if host is one else one

        stopped_at = time.monotonic()
        assert fleet.terminate(host) == 0
        listed = fleet.fleetctl("list-machines", "--no-legend", "--fields=machine")
        assert listed.stdout == f"{other.machine_id[:8]}...\n"
        fleet.wait(
            lambda: fleet.active_on("web.service") == [other.machine_id],
            10,
            "web.service to run on the remaining machine",
        )
        assert time.monotonic() - stopped_at < 10
        assert host.fake_systemd() == {}
        assert "Presence removed" in host.log()
    finally:
        fleet.close()


def test_global_units_run_everywhere_including_late_joiners(
    cluster: FleetCluster, tmp_path: Path
) -> None:
    a = cluster.start_machine("a", metadata={"role": "worker"})
    b = cluster.start_machine("b", metadata={"role": "worker"})
    c = cluster.start_machine("c", metadata={"role": "edge"})
    everywhere = write_unit(tmp_path, "agent.service", service("agent", "Global=true"))
    workers = write_unit(
        tmp_path, "worker.service", service("worker", "Global=yes\nMachineMetadata=role=worker")
    )
    result = cluster.fleetctl("start", str(everywhere), str(workers))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Triggered global unit agent.service start\nTriggered global unit worker.service start\n"
    )
    cluster.wait(
        lambda: len(cluster.active_on("agent.service")) == 3, 20, "agent.service everywhere"
    )
    cluster.wait(
        lambda: cluster.active_on("worker.service") == sorted([a.machine_id, b.machine_id]),
        20,
        "worker.service on the workers",
    )
    assert "worker.service" not in c.running()
    files = cluster.fleetctl("list-unit-files", "--no-legend", "--fields=unit,dstate,state,target")
    assert files.stdout.splitlines() == [
        "agent.service\tlaunched\t-\tglobal",
        "worker.service\tlaunched\t-\tglobal",
    ]

    d = cluster.start_machine("d", metadata={"role": "worker"})
    cluster.wait(
        lambda: {"agent.service", "worker.service"} <= d.running(), 20, "globals on the joiner"
    )
    rows = cluster.fleetctl("list-units", "--no-legend", "--fields=unit,machine").stdout
    assert rows.count("agent.service\t") == 4
    assert rows.count("worker.service\t") == 3

    stopped = cluster.fleetctl("stop", "agent")
    assert stopped.stdout == "Triggered global unit agent.service stop\n"
    cluster.wait(
        lambda: not cluster.active_on("agent.service"), 20, "agent.service stopped everywhere"
    )


def test_replaces_moves_the_replaced_unit_away(cluster: FleetCluster, tmp_path: Path) -> None:
    a = cluster.start_machine("a", metadata={"name": "a"})
    b = cluster.start_machine("b", metadata={"name": "b"})
    first = min((a, b), key=lambda m: m.machine_id)
    second = b if first is a else a
    old = write_unit(tmp_path, "old.service", service("old"))
    assert cluster.fleetctl("start", "--block-attempts=40", str(old)).returncode == 0
    assert cluster.active_on("old.service") == [first.machine_id]

    new = write_unit(
        tmp_path,
        "new.service",
        service("new", f"Replaces=old.service\nMachineMetadata=name={first.name}"),
    )
    assert cluster.fleetctl("start", "--block-attempts=40", str(new)).returncode == 0
    cluster.wait(
        lambda: (
            cluster.active_on("old.service") == [second.machine_id]
            and cluster.active_on("new.service") == [first.machine_id]
        ),
        30,
        "new.service on the first machine and old.service moved to the second",
    )
    assert first.running() == {"new.service"}


def test_template_instances_follow_specifiers(cluster: FleetCluster, tmp_path: Path) -> None:
    cluster.start_machine("a", metadata={"hostname": "alpha"})
    beta = cluster.start_machine("b", metadata={"hostname": "beta"})
    template = write_unit(
        tmp_path, "pinned@.service", service("pinned %i", "MachineMetadata=hostname=%i")
    )
    assert cluster.fleetctl("submit", str(template)).returncode == 0
    refused = cluster.fleetctl("start", "pinned@.service")
    assert refused.returncode == 1
    assert refused.stderr == 'Error starting units: cannot activate template "pinned@.service"\n'

    started = cluster.fleetctl("start", "--block-attempts=40", "pinned@beta")
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"Unit pinned@beta.service launched on {beta.legend}\n"
    assert beta.running() == {"pinned@beta.service"}


def test_submit_warns_on_changes_and_replace_updates(cluster: FleetCluster, tmp_path: Path) -> None:
    one = cluster.start_machine("one")
    path = write_unit(tmp_path, "app.service", service("first"))
    assert cluster.fleetctl("start", "--block-attempts=40", str(path)).returncode == 0
    old_hash = cluster.snapshot().jobs["app.service"].unit_hash
    path.write_text(service("second"))
    warned = cluster.fleetctl("submit", str(path))
    assert warned.returncode == 0
    assert warned.stderr == (
        f"WARNING: Unit app.service in registry differs from local unit file {path}. "
        "Add --replace to override.\n"
    )
    refused = cluster.fleetctl("submit", "--replace", str(path))
    assert refused.stderr == (
        "Warning: can not replace Unit(app.service) in state 'launched', "
        "use the appropriate command\n"
    )
    replaced = cluster.fleetctl("start", "--replace", "--block-attempts=40", str(path))
    assert replaced.returncode == 0, replaced.stderr
    new_hash = cluster.snapshot().jobs["app.service"].unit_hash
    assert new_hash != old_hash
    cluster.wait(
        lambda: "Description=second" in (one.units_dir / "app.service").read_text(),
        20,
        "the agent to reload the replaced unit",
    )
    same = cluster.fleetctl("start", "--replace", str(path))
    assert same.stdout == "Found same Unit(app.service) in Registry, nothing to do\n"


def test_invalid_xfleet_combinations_are_rejected(cluster: FleetCluster, tmp_path: Path) -> None:
    cluster.start_machine("one")
    bad = write_unit(
        tmp_path, "bad.service", service("bad", "Global=true\nMachineOf=other.service")
    )
    result = cluster.fleetctl("submit", str(bad))
    assert (result.returncode, result.stderr) == (
        1,
        "Error creating units: Global cannot be used with Peers\n",
    )
    assert cluster.snapshot().jobs == {}
    odd = write_unit(tmp_path, "odd.service", service("odd", "Colour=blue"))
    warned = cluster.fleetctl("submit", str(odd))
    assert warned.returncode == 0
    assert warned.stderr == (
        'Unit odd.service: unrecognized requirement in [X-Fleet] section: "Colour"\n'
    )


def test_duplicate_machine_id_is_refused(cluster: FleetCluster) -> None:
    """A second fleetd with a live machine ID stays up and says why (fleet's server.Run
    retries its registration forever); it takes the place once the first one leaves."""
    first = cluster.start_machine("first")
    twin = cluster.start_machine("twin", machine_id=first.machine_id, wait=False)
    wait_for(
        lambda: "is already registered by another live fleetd" in twin.log(),
        30,
        "the twin to say why it does not start",
    )
    assert twin.alive()
    assert first.alive()
    listed = cluster.fleetctl("list-machines", "--no-legend", "--full", "--fields=machine,ip")
    assert listed.stdout == f"{first.machine_id}\t{first.public_ip}\n"
    assert cluster.terminate(first) == 0
    wait_for(lambda: "Registered machine" in twin.log(), 30, "the twin to register")
    listed = cluster.fleetctl("list-machines", "--no-legend", "--full", "--fields=machine,ip")
    assert listed.stdout == f"{first.machine_id}\t{twin.public_ip}\n"


def test_restart_after_hard_death_reuses_the_machine_id(cluster: FleetCluster) -> None:
    first = cluster.start_machine("again")
    cluster.kill(first)
    # The old presence is still there until its lease expires; the new fleetd waits for it.
    second = cluster.start_machine("again", machine_id=first.machine_id)
    assert second.alive()
    assert "waiting up to" in second.log()
    listed = cluster.fleetctl("list-machines", "--no-legend", "--full", "--fields=machine,ip")
    assert listed.stdout == f"{first.machine_id}\t{second.public_ip}\n"


def leader(cluster: FleetCluster) -> str | None:
    record = cluster.registry.leader()
    return record.machine_id if record is not None else None


def test_exactly_one_engine_leader_and_failover(cluster: FleetCluster, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        cluster.start_machine(name)
    current = cluster.wait(lambda: leader(cluster), 15, "an engine leader")
    assert current in by_id(cluster)
    time.sleep(2 * cluster.reconcile_interval)
    acquired = [m.name for m in cluster.machines.values() if "leadership acquired" in m.log()]
    assert len(acquired) == 1
    assert leader(cluster) == current
    kvs = cluster.registry.etcd.range(cluster.registry.key("lease") + "/", prefix=True)
    assert [kv.key for kv in kvs] == [cluster.registry.leader_key]
    assert json.loads(kvs[0].value) == {"MachineID": current, "Version": 1}

    cluster.kill(by_id(cluster)[current])

    def new_leader() -> str | None:
        now = leader(cluster)
        return now if now and now != current else None

    successor = cluster.wait(
        new_leader,
        20,
        "another engine to take over",
    )
    assert successor in by_id(cluster)
    # The new leader schedules.
    unit = write_unit(tmp_path, "after.service", service("after"))
    assert cluster.fleetctl("start", "--block-attempts=40", str(unit)).returncode == 0


def test_units_keep_running_while_etcd_is_unreachable(
    cluster: FleetCluster, etcd: EtcdMember, tmp_path: Path
) -> None:
    one = cluster.start_machine("one")
    unit = write_unit(tmp_path, "steady.service", service("steady"))
    assert cluster.fleetctl("start", "--block-attempts=40", str(unit)).returncode == 0
    assert one.running() == {"steady.service"}
    ops_before = len(one.operations())

    etcd.pause()
    try:
        time.sleep(8)  # well past agent_ttl (3 s) without etcd
        assert one.alive()
        assert one.running() == {"steady.service"}
        assert one.operations()[ops_before:] == []
    finally:
        etcd.resume()

    cluster.wait(
        lambda: cluster.active_on("steady.service") == [one.machine_id],
        30,
        "the cluster to converge after etcd came back",
    )
    assert one.running() == {"steady.service"}


def test_fleetd_version_and_bad_config(tmp_path: Path) -> None:
    """fleetd/fleetd.go: ``--version``, and a ``-config`` file that cannot be used is fatal."""
    import subprocess

    from tests.fleet_support import guest_env

    module = ["-m", "provisioner.guest.fleet.fleetd"]
    version = subprocess.run(
        [str(GUEST_PYTHON), *module, "--version"],
        env=guest_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (version.returncode, version.stdout) == (0, "fleetd version 1.0.0\n")
    bad = subprocess.run(
        [str(GUEST_PYTHON), *module, "--config", str(tmp_path / "missing.conf")],
        env=guest_env({"FLEET_AGENT_TTL": "soon"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 1
    missing = tmp_path / "missing.conf"
    assert f"Unable to use config file {missing}: stat {missing}: no such file" in bad.stderr
    conf = tmp_path / "fleet.conf"
    conf.write_text('agent_ttl="30s"\n')
    invalid = subprocess.run(
        [str(GUEST_PYTHON), *module, "--config", str(conf)],
        env=guest_env({"FLEET_AGENT_TTL": "soon"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert invalid.returncode == 1
    assert "environment FLEET_AGENT_TTL: agent_ttl" in invalid.stderr


def test_sigterm_exit_status_and_no_leftover_keys(cluster: FleetCluster) -> None:
    one = cluster.start_machine("one")
    assert cluster.terminate(one) == 0
    keys = [kv.key for kv in cluster.registry.etcd.range(cluster.registry.prefix, prefix=True)]
    assert keys == [cluster.registry.engine_version_key]


def test_sighup_reloads_metadata_from_the_config_file(cluster: FleetCluster) -> None:
    one = cluster.start_machine("one")
    (one.directory / "fleet.conf").write_text('metadata="role=late,az=2"\n')
    one.process.send_signal(signal.SIGHUP)
    cluster.wait(
        lambda: (
            cluster.fleetctl("list-machines", "--no-legend", "--fields=metadata").stdout
            == "az=2,role=late\n"
        ),
        15,
        "list-machines to show the reloaded metadata",
    )
    assert "Reloading configuration from" in one.log()


def test_restart_stops_and_starts_the_unit(cluster: FleetCluster, tmp_path: Path) -> None:
    one = cluster.start_machine("one")
    unit = write_unit(tmp_path, "again.service", service("again"))
    assert cluster.fleetctl("start", "--block-attempts=40", str(unit)).returncode == 0
    restarted = cluster.fleetctl("restart", "--block-attempts=40", "again")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout == (
        f"Unit again.service loaded on {one.legend}\nUnit again.service launched on {one.legend}\n"
    )
    ops = [(op, name) for _, op, name in one.operations() if name == "again.service"]
    assert ops[-3:] == [
        ("start", "again.service"),
        ("stop", "again.service"),
        ("start", "again.service"),
    ]
    assert one.running() == {"again.service"}
