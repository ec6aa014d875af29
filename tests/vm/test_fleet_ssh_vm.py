"""fleetctl across machines on the session's real lab, as a CoreOS user runs it: every
node knows every node's pinned host key, `lab ssh` forwards an agent with the lab's key
(never the key itself), and fleetctl's ssh, status and journal reach a unit or machine
on another node with host keys checked (fleet's fleetctl/ssh.go joins a command's words
into one remote line; `lab ssh` passes its command to the remote shell as OpenSSH does).
"""

from __future__ import annotations

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
