"""The seeds' production cluster on a real lab of its own: 3 core nodes and 2 workers.

Workers run etcd's own proxies (the gateway on 127.0.0.1:2379, the v2 proxy on :4001),
so everything on every node talks to etcd at 127.0.0.1; fleet metadata carries each
node's role, and a unit bound to ``role=worker`` runs only on workers and moves to the
other worker when its worker dies. The lab speaks the tutorials' etcd v2 API by default
(``etcdctl_api: 2``): the classic sidekick unit (``etcdctl set ... --ttl``) keeps its
key alive, and the key expires once the unit stops.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.vm.conftest import UP_TIMEOUT, Lab, new_lab_dir

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

CORE = ("core-01", "core-02", "core-03")
WORKERS = ("core-04", "core-05")
TTL = 10


@pytest.fixture(scope="module")
def production() -> Iterator[Lab]:
    directory = new_lab_dir()
    settings = {
        "num_instances": 5,
        "workers": 2,
        "etcdctl_api": 2,
        "agent_ttl": f"{TTL}s",
        "vm_memory": 640,
    }
    (directory / "lab.yaml").write_text(yaml.safe_dump(settings))
    lab = Lab(directory=directory, name=directory.name)
    try:
        up = lab.run("up", timeout=UP_TIMEOUT)
        assert "3 core" in up.stdout, up.stdout
        yield lab
    finally:
        lab.run("destroy", check=False, timeout=600)
        shutil.rmtree(directory / ".vagrant", ignore_errors=True)


def on(lab: Lab, node: str, script: str, *, check: bool = True) -> str:
    result = lab.run("exec", node, "--", "sh", "-c", script, check=check, timeout=300)
    return result.stdout


def where_active(lab: Lab, unit: str, nodes: tuple[str, ...] = (*CORE, *WORKERS)) -> list[str]:
    found = []
    for node in nodes:
        state = lab.run("systemctl", node, "is-active", unit, check=False, timeout=120)
        if state.stdout.strip() == "active":
            found.append(node)
    return found


def test_roles_and_verify(production: Lab) -> None:
    nodes = {n["name"]: n for n in production.status()["nodes"]}
    assert [nodes[n]["role"] for n in (*CORE, *WORKERS)] == ["core"] * 3 + ["worker"] * 2
    for name in WORKERS:
        assert nodes[name]["metadata"].get("role") == "worker", nodes[name]
    assert nodes["core-01"]["metadata"].get("role") == "core"
    production.run("verify", timeout=900)


def test_a_worker_talks_to_etcd_on_loopback_in_both_apis(production: Lab) -> None:
    for worker in WORKERS:
        health = on(
            production,
            worker,
            "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health 2>&1",
        )
        assert "is healthy" in health, health
        # the seeds' v2 keys API, as a tutorial types it (the box ships curl)
        put = on(
            production,
            worker,
            f"curl -sL http://127.0.0.1:2379/v2/keys/message-{worker} -XPUT -d value=Hello",
        )
        assert '"value":"Hello"' in put, put
        got = on(production, worker, f"curl -sL http://127.0.0.1:4001/v2/keys/message-{worker}")
        assert '"value":"Hello"' in got, got
    # written through a worker's proxy, read on a core member
    got = on(production, "core-02", "curl -sL http://127.0.0.1:2379/v2/keys/message-core-04")
    assert '"value":"Hello"' in got, got


def test_a_worker_unit_runs_on_workers_and_moves_to_the_other(
    production: Lab, tmp_path: Path
) -> None:
    unit = tmp_path / "worker-app.service"
    unit.write_text(
        "[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\nMachineMetadata=role=worker\n"
    )
    production.run("fleetctl", "start", str(unit), timeout=300)
    killed = None
    try:
        first = production.wait_for(
            "worker-app on a worker", lambda: where_active(production, "worker-app.service"), 300
        )
        assert len(first) == 1, first
        assert first[0] in WORKERS, first
        killed = first[0]
        production.run("kill", killed)
        other = next(w for w in WORKERS if w != killed)
        started = time.monotonic()
        production.wait_for(
            f"worker-app moved to {other}",
            lambda: where_active(production, "worker-app.service") == [other],
            TTL + 240,
        )
        print(f"worker-app active on {other} {time.monotonic() - started:.1f}s after the kill")
    finally:
        production.run("fleetctl", "destroy", "worker-app.service", check=False, timeout=300)
        if killed:
            production.run("start", killed, timeout=900)


SIDEKICK = f"""[Unit]
Description=announce web on this host, the tutorials' sidekick

[Service]
ExecStart=/bin/sh -c "while true; do etcdctl set /services/web/%H running --ttl {TTL}; \
sleep 3; done"
"""


def test_the_tutorial_sidekick_with_the_v2_etcdctl(production: Lab, tmp_path: Path) -> None:
    unit = tmp_path / "web-sidekick.service"
    unit.write_text(SIDEKICK + "\n[X-Fleet]\nMachineMetadata=role=worker\n")
    production.run("fleetctl", "start", str(unit), timeout=300)
    try:
        host = production.wait_for(
            "the sidekick on a worker",
            lambda: where_active(production, "web-sidekick.service"),
            300,
        )
        key = f"/services/web/{host[0]}"
        # the v2 etcdctl of a login shell on any node, and lab etcdctl, see it
        production.wait_for(
            f"{key} announced",
            lambda: "running" in production.run("etcdctl", "get", key, check=False).stdout,
            120,
        )
        time.sleep(TTL + 5)  # longer than the TTL: the loop keeps it alive
        listed = production.run("etcdctl", "ls", "/services/web").stdout
        assert key in listed, listed
        # an SSH session on another node: the v2 etcdctl by default (/etc/environment)
        login = production.run("ssh", "core-02", f"etcdctl get {key}", check=False)
        assert login.stdout.strip() == "running", (login.stdout, login.stderr)
    finally:
        production.run("fleetctl", "destroy", "web-sidekick.service", check=False, timeout=300)
    production.wait_for(
        f"{key} expired after the sidekick stopped",
        lambda: production.run("etcdctl", "get", key, check=False).returncode != 0,
        TTL + 60,
    )


def test_scale_adds_a_worker_and_drains_one(production: Lab, tmp_path: Path) -> None:
    """`lab scale`: a third worker is booted, joins fleet and takes work; shrinking back
    moves a unit off the removed worker before its VM goes."""
    started = time.monotonic()
    grown = production.run("scale", "--workers", "3", timeout=1200)
    print(f"one worker added in {time.monotonic() - started:.1f}s")
    assert "core-06: added" in grown.stdout, grown.stdout
    nodes = {n["name"]: n for n in production.status()["nodes"]}
    assert nodes["core-06"]["role"] == "worker"
    assert nodes["core-06"]["fleet_listed"] is True
    assert nodes["core-06"]["state"] == "running"
    known = on(production, "core-01", "cat /etc/ssh/ssh_known_hosts")
    assert "core-06," in known, known

    # fillers pinned on the two first workers keep the app (which conflicts with them) off
    # them: it lands on core-06; without the fillers, a drain can move it back
    fillers = []
    for worker in WORKERS:
        filler = tmp_path / f"filler-{worker}.service"
        filler.write_text(
            "[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\n"
            f"MachineID={nodes[worker]['machine_id']}\n"
        )
        fillers.append(filler.name)
        production.run("fleetctl", "start", str(filler), timeout=300)
    app = tmp_path / "pool-app.service"
    app.write_text(
        "[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\n"
        "MachineMetadata=role=worker\nConflicts=filler-*.service\n"
    )
    everywhere = (*WORKERS, "core-06")
    try:
        production.run("fleetctl", "start", str(app), timeout=300)
        production.wait_for("the app on core-06",
                            lambda: where_active(production, "pool-app.service", everywhere)
                            == ["core-06"], 300)  # fmt: skip
        production.run("fleetctl", "destroy", *fillers, timeout=300)
        started = time.monotonic()
        shrunk = production.run("scale", "--workers", "2", timeout=1200)
        print(f"one worker removed in {time.monotonic() - started:.1f}s")
        assert "core-06: removed" in shrunk.stdout, shrunk.stdout
        # drained before its VM went: the app runs on one of the remaining workers
        moved = production.wait_for(
            "the app moved to a remaining worker",
            lambda: where_active(production, "pool-app.service"),
            300,
        )
        assert len(moved) == 1, moved
        assert moved[0] in WORKERS, moved
        assert [n["name"] for n in production.status()["nodes"]] == [*CORE, *WORKERS]
        machines = production.run("fleetctl", "list-machines", "--no-legend").stdout.splitlines()
        assert len(machines) == 5, machines
    finally:
        production.run("fleetctl", "destroy", "pool-app.service", *fillers, check=False,
                       timeout=300)  # fmt: skip
