"""Netem inside a guest, over the lab's SSH: the lever when the host has none.

A netem qdisc on the guest's lab link delays what the node sends, as the host's
IFB does, but the guest's root can take it off again and a restart of the node
ends it. The commands are in :mod:`provisioner.faults.plan`.
"""

from __future__ import annotations

from provisioner.errors import NodeError
from provisioner.faults.plan import Netem, guest_netem_command, guest_netem_removal
from provisioner.remote.runner import Runner, quote_argv

TIMEOUT = 30.0
# what tc says when the link has no root qdisc to delete: the kernel's default one
# (handle 0) or, with older iproute2, none at all
NOTHING_TO_DELETE = ("handle of zero", "No such file or directory", "Cannot find specified qdisc")


def set_netem(runner: Runner, netem: Netem) -> None:
    """Put ``netem`` on the guest's lab link; NodeError naming the node if tc refuses."""
    argv = guest_netem_command(netem)
    result = runner.run(argv, timeout=TIMEOUT)
    if result.failed:
        said = (result.stderr or result.stdout).strip() or f"exit {result.rc}"
        raise NodeError(
            runner.name,
            f"`{quote_argv(argv)}` failed: {said}",
            hint="the guest needs tc (iproute2) and its kernel netem (sch_netem)",
        )


def clear_netem(runner: Runner) -> None:
    """Take netem off the guest's lab link; nothing if there is none. NodeError when
    tc fails otherwise (the node answers but its netem stays)."""
    argv = guest_netem_removal()
    result = runner.run(argv, timeout=TIMEOUT)
    if result.failed and not any(text in result.stderr for text in NOTHING_TO_DELETE):
        said = (result.stderr or result.stdout).strip() or f"exit {result.rc}"
        raise NodeError(runner.name, f"`{quote_argv(argv)}` failed: {said}")
