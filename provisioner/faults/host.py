"""Making the host's network match a lab's :class:`~provisioner.faults.plan.Faults`.

Everything goes through a :class:`~provisioner.remote.runner.Runner` on the host
(``nft`` and ``tc`` as root), so a test can run the same code in a network
namespace it made. Only the lab's own table and IFB devices are ever changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from provisioner.errors import HostError
from provisioner.faults.plan import (
    Faults,
    Port,
    ifb_name,
    netem_commands,
    netem_removal,
    render_ruleset,
    table_name,
)
from provisioner.remote.runner import Runner, quote_argv

TIMEOUT = 30.0
GUEST_LEVER = "`lab netem` (--on auto or guest) sets it in the guest instead"
NO_NETEM_HINT = (
    "this host's kernel has no netem qdisc (CONFIG_NET_SCH_NETEM; `modprobe sch_netem` "
    f"where it is a module); partitions work without it; {GUEST_LEVER}"
)
NO_IFB_HINT = (
    "this host's kernel has no IFB device (CONFIG_IFB; `modprobe ifb` where it is a "
    f"module); partitions work without it; {GUEST_LEVER}"
)


def probe_device() -> str:
    """The IFB device :func:`netem_unavailable` makes and removes (one per process, so
    two commands probing at once do not meet; at most 15 characters)."""
    return f"labnetem{os.getpid() % 10_000_000}"


def netem_unavailable(runner: Runner) -> str | None:
    """Why this host cannot carry a node's netem, or None: what :func:`apply_netem`
    needs is tried on a device made for it and removed again, an IFB device
    (``CONFIG_IFB``) with a netem qdisc (``CONFIG_NET_SCH_NETEM``) on it."""
    device = probe_device()
    made = runner.run(["ip", "link", "add", device, "type", "ifb"], timeout=TIMEOUT)
    if made.failed:
        return f"`ip link add ... type ifb` failed on this host: {_said(made.stderr, made.rc)}"
    try:
        added = runner.run(
            ["tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "1ms"],
            timeout=TIMEOUT,
        )
    finally:
        runner.run(["ip", "link", "del", device], timeout=TIMEOUT)
    if added.failed:
        return f"`tc qdisc add ... netem` failed on this host: {_said(added.stderr, added.rc)}"
    return None


def _said(stderr: str, rc: int) -> str:
    return stderr.strip() or f"exit {rc}"


def _run(runner: Runner, argv: Sequence[str], stdin: str | None = None) -> None:
    result = runner.run(argv, timeout=TIMEOUT, stdin=stdin)
    if result.failed:
        detail = (result.stderr or result.stdout).strip().splitlines()
        hint = (
            NO_NETEM_HINT
            if "qdisc kind is unknown" in result.stderr
            else NO_IFB_HINT
            if "Unknown device type" in result.stderr
            else None
        )
        raise HostError(
            f"`{quote_argv(argv)}` failed: {' / '.join(detail[-3:]) or f'exit {result.rc}'}",
            hint=hint or "lab injects network faults as root, with nft and tc (nftables, iproute2)",
        )


def apply_partitions(runner: Runner, lab: str, faults: Faults, ports: Mapping[str, Port]) -> str:
    """Replace the lab's nftables table with ``faults``' rules in one transaction; the
    script that was applied."""
    script = render_ruleset(lab, faults, ports)
    _run(runner, ["nft", "-f", "-"], stdin=script)
    return script


def apply_netem(
    runner: Runner, lab: str, faults: Faults, ports: Mapping[str, Port], nodes: Iterable[str]
) -> None:
    """Make netem on each of ``nodes`` what ``faults`` says: set, changed or removed.

    A node whose netem cannot be set has it removed again before the error is raised.
    """
    for node in nodes:
        ifb = ifb_name(lab, node)
        port = ports.get(node)
        clear_netem(runner, port, ifb)
        netem = faults.netem.get(node)
        if netem is None or port is None:
            continue
        try:
            for argv in netem_commands(port, ifb, netem):
                _run(runner, argv)
        except HostError:
            clear_netem(runner, port, ifb)
            raise


def clear_netem(runner: Runner, port: Port | None, ifb: str) -> None:
    """Remove netem from a node; nothing if there is none."""
    for argv in netem_removal(port, ifb):
        runner.run(argv, timeout=TIMEOUT)  # "no such device" is the job already done


def clear_all(runner: Runner, lab: str, nodes: Iterable[str], ports: Mapping[str, Port]) -> None:
    """Remove every fault of the lab: its table and each node's netem, whether or not
    a record of them exists (names come from the lab and its nodes alone)."""
    apply_partitions(runner, lab, Faults(), {})
    for node in nodes:
        clear_netem(runner, ports.get(node), ifb_name(lab, node))


def table_exists(runner: Runner, lab: str) -> bool:
    argv = ["nft", "list", "table", "bridge", table_name(lab)]
    return runner.run(argv, timeout=TIMEOUT).succeeded


def leftovers(runner: Runner, lab: str, nodes: Iterable[str]) -> bool:
    """Whether the lab's table or any of its IFB devices exists (read only)."""
    if table_exists(runner, lab):
        return True
    return any(
        runner.run(["ip", "link", "show", "dev", ifb_name(lab, node)], timeout=TIMEOUT).succeeded
        for node in nodes
    )
