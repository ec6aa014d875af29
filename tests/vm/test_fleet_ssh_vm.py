"""fleetctl across machines on the session's real lab, as a CoreOS user runs it: every
node knows every node's pinned host key, `lab ssh` forwards an agent with the lab's key
(never the key itself), and fleetctl's ssh, status and journal reach a unit or machine
on another node with host keys checked (fleet's fleetctl/ssh.go joins a command's words
into one remote line; `lab ssh` passes its command to the remote shell as OpenSSH does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vm.conftest import Lab

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

UNIT = """[Unit]
Description=fleet ssh check

[Service]
ExecStart=/bin/sh -c "echo hello-from-core-02; exec sleep 100000"

[X-Fleet]
MachineID={machine_id}
"""


def test_every_node_knows_every_node_and_no_private_key_is_in_a_guest(lab: Lab) -> None:
    nodes = lab.status()["nodes"]
    for node in nodes:
        known = lab.run("exec", node["name"], "--", "cat", "/etc/ssh/ssh_known_hosts").stdout
        for other in nodes:
            assert f"{other['name']},{other['ip']} " in known, (node["name"], other["name"])
        keys = lab.run("exec", node["name"], "--", "sh", "-c",
                       "ls -a ~/.ssh; sudo ls -a /root/.ssh 2>/dev/null; true").stdout  # fmt: skip
        assert "id_" not in keys, f"a private key on {node['name']}: {keys}"


def test_lab_ssh_runs_a_shell_line_with_the_lab_key_forwarded(lab: Lab) -> None:
    assert lab.run("ssh", "core-01", "echo a | tr a b").stdout.strip() == "b"
    agent = lab.run("ssh", "core-01", "ssh-add -l").stdout
    assert "ED25519" in agent or "RSA" in agent, agent


def test_fleetctl_reaches_other_machines_with_host_keys_checked(lab: Lab) -> None:
    status = {n["name"]: n for n in lab.status()["nodes"]}
    target = status["core-02"]["machine_id"]
    # fleetctl ssh from one node to another: the quoted line runs as one shell line
    out = lab.run("ssh", "core-01", f'fleetctl ssh {target} "echo a; echo b; hostname"').stdout
    assert out.split() == ["a", "b", "core-02"], out

    unit_file = f"/tmp/fleet-ssh-check-{target[:8]}.service"
    lab.run("exec", "core-01", "--", "sh", "-c",
            f"cat > {unit_file} <<'EOF'\n{UNIT.format(machine_id=target)}EOF")  # fmt: skip
    lab.run("ssh", "core-01", f"fleetctl start {unit_file}", timeout=300)
    name = unit_file.rsplit("/", 1)[1]
    try:
        lab.wait_for(
            f"{name} active on core-02",
            lambda: (
                lab.run("systemctl", "core-02", "is-active", name, check=False).stdout.strip()
                == "active"
            ),
            300,
        )
        # status and journal of a unit on another machine: from a node, and from the host
        for argv in (("ssh", "core-01", f"fleetctl status {name}"), ("fleetctl", "status", name)):
            shown = lab.run(*argv).stdout
            assert "Active: active (running)" in shown, (argv, shown)
        for argv in (("ssh", "core-03", f"fleetctl journal {name}"),
                     ("fleetctl", "journal", name)):  # fmt: skip
            assert "hello-from-core-02" in lab.run(*argv).stdout, argv
    finally:
        lab.run("ssh", "core-01", f"fleetctl destroy {name}", check=False, timeout=300)


def test_host_fleetctl_through_a_tunnel(lab: Lab, tmp_path: Path) -> None:
    """The tutorials' laptop set-up: the host's fleetctl with --tunnel, the lab's key and
    pinned host keys from `lab ssh-config` (fleetctl/fleetctl.go's tunnel flag)."""
    ssh_config = tmp_path / "lab.ssh"
    ssh_config.write_text(lab.run("ssh-config").stdout)
    env = {**os.environ, "FLEETCTL_SSH_CONFIG": str(ssh_config)}
    fleetctl = [str(Path(sys.executable).with_name("fleetctl")), "--tunnel", "core-01"]

    def host_fleetctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*fleetctl, *args], capture_output=True, text=True, env=env,
                              timeout=300, check=False)  # fmt: skip

    machines = host_fleetctl("list-machines", "--no-legend", "--full")
    assert machines.returncode == 0, machines.stderr
    assert len(machines.stdout.splitlines()) == 3, machines.stdout
    unit = tmp_path / "tunnel-hello.service"
    unit.write_text("[Service]\nExecStart=/bin/sleep 100000\n")
    try:
        started = host_fleetctl("start", str(unit))
        assert started.returncode == 0, started.stderr
        lab.wait_for(
            "tunnel-hello.service active",
            lambda: "active" in host_fleetctl("list-units", "--no-legend").stdout,
            300,
        )
    finally:
        host_fleetctl("destroy", "tunnel-hello.service")


def test_patched_machine_metadata_moves_a_unit(lab: Lab, tmp_path: Path) -> None:
    """fleet's PATCH /fleet/v1/machines (api/machines.go): metadata added to a machine
    draws a MachineMetadata unit there; moved to another machine, the unit follows."""
    ids = {n["name"]: n["machine_id"] for n in lab.status()["nodes"]}

    def patch(node: str, ops: str) -> None:
        lab.run("exec", node, "--", "sudo", "curl", "-sf", "--unix-socket", "/var/run/fleet.sock",
                "-X", "PATCH", "-H", "Content-Type: application/json", "-d", ops,
                "http://fleet/fleet/v1/machines")  # fmt: skip

    def op(kind: str, node: str) -> str:
        value = ', "value": {"value": "gold"}' if kind != "remove" else ""  # fleet's op shape
        return f'{{"op": "{kind}", "path": "/{ids[node]}/metadata/tier"{value}}}'

    unit = tmp_path / "gold.service"
    unit.write_text(
        "[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\nMachineMetadata=tier=gold\n"
    )

    def runs_on() -> list[str]:
        return [
            node for node in ids
            if lab.run("systemctl", node, "is-active", "gold.service",
                       check=False).stdout.strip() == "active"
        ]  # fmt: skip

    lab.run("fleetctl", "start", "--no-block", str(unit), timeout=300)
    try:
        patch("core-01", f"[{op('add', 'core-02')}]")
        assert lab.wait_for("gold.service on core-02", lambda: runs_on() == ["core-02"], 300)
        patch("core-01", f"[{op('remove', 'core-02')}, {op('add', 'core-03')}]")
        assert lab.wait_for("gold.service moved to core-03", lambda: runs_on() == ["core-03"], 300)
    finally:
        lab.run("fleetctl", "destroy", "gold.service", check=False, timeout=300)
        patch("core-01", f"[{op('remove', 'core-03')}]")
