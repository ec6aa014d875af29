"""One node waiter, used by ``lab up`` and ``lab start``: from power-on to a node lab can use.

The wait goes banner -> host keys -> login -> systemd, each with the node's
deadline: the SSH banner on the lab network; the host-key fingerprints the
guest printed on its serial console, checked against (or first recorded as)
the pins in the lab's state; a login with the lab's key; then
``systemctl is-system-running --wait``, its machine-id and failed units.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING

from provisioner import nodes as node_access
from provisioner import readiness
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import HostError, NotReady, RemoteError, WaitTimeout
from provisioner.lifecycle.backends import Backends, NodeRunner
from provisioner.progress import Progress
from provisioner.state import StateFile
from provisioner.waits import wait_for

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost

NODE_TIMEOUT = 600.0  # per node: banner, host keys, login, systemd
LOGIN_POLL = 1.0  # reading the console log is cheap; a login try is not
LOGIN_BLIND_EVERY = 10  # before the console shows the keys written, try once per 10 polls
BANNER_POLL = readiness.POLL
BANNER_CONNECT = 5.0
# A restored node answers within seconds, once QEMU has translated its code again:
# fresh probes often and each given up soon find that moment (one probe's SYN would
# wait for the kernel's retransmits, 1 s and then 3 s after the first).
RESTORED_BANNER_POLL = 0.2
RESTORED_BANNER_CONNECT = 0.5


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type for an empty one (Ctrl-C)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def step_clock_command() -> list[str]:
    """Set the guest's wall clock to the host's now (a restored guest's stood still)."""
    return ["sudo", "date", "-u", "-s", f"@{time.time():.3f}"]


class NodeWaiter:
    """Waits for nodes; keeps each node's SSH runner for the checks that follow."""

    def __init__(
        self,
        config: LabConfig,
        progress: Progress,
        backends: Backends,
        book: StateFile,
        cancel: threading.Event | None = None,
        *,
        pinned: bool = False,
    ) -> None:
        # pinned: the nodes run on from a known state (a restored snapshot) and their
        # host keys are pinned already; nothing new reaches the console, so the wait
        # goes banner (probed often) -> login with the pins, whose first command steps
        # the guest's clock to the host's (it stood still while saved) -> systemd.
        self.pinned = pinned
        self.config = config
        self.progress = progress
        self.backends = backends
        self.book = book
        self.cancel = cancel or threading.Event()
        self.runners: dict[str, NodeRunner] = {}
        self._pins = threading.Lock()  # node threads record their pins in one state
        self._host: LibvirtHost | None = None  # reads the consoles; shared by the node threads
        self._host_lock = threading.Lock()

    def ready(
        self, node: NodeSpec, deadline: float | None = None
    ) -> readiness.NodeFacts | BaseException:
        """The node's facts once it is ready, or what went wrong (every node is reported)."""
        try:
            return self.wait(node, deadline or time.monotonic() + NODE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - every node's outcome is reported together
            self.progress.update(node.name, "ready", "failed", first_line(exc)[:100])
            return exc

    def close(self) -> None:
        """Close every node's connection (ends a remote wait under way)."""
        for runner in list(self.runners.values()):
            runner.close()
        with self._host_lock:
            host, self._host = self._host, None
        if host is not None:
            host.close()

    def console(self, node: NodeSpec) -> None:
        """Bring the node's console log under ``.lab/logs`` up to date (through libvirt)."""
        with self._host_lock:
            if self._host is None:
                self._host = self.backends.open_host()
            host = self._host
        try:
            node_access.sync_console(self.config, node, host)
        except HostError as exc:  # the volume is being written or refreshed: read it later
            raise NotReady(f"cannot read the console yet: {exc.message}") from exc

    def _fingerprints(self, node: NodeSpec) -> dict[str, str] | None:
        self.console(node)
        return node_access.console_fingerprints(self.config, node) or None

    def wait(self, node: NodeSpec, deadline: float) -> readiness.NodeFacts:
        runner = self.login(node, deadline)
        self.progress.update(node.name, "systemd", "running")
        remaining = min(NODE_TIMEOUT, deadline - time.monotonic())
        facts = readiness.system_facts(node.name, runner, max(10.0, remaining))
        detail = facts.system_state + (
            f" ({', '.join(facts.failed_units)})" if facts.failed_units else ""
        )
        self.progress.update(node.name, "systemd", "ok", detail)
        return facts

    def login(self, node: NodeSpec, deadline: float) -> NodeRunner:
        """banner -> host keys pinned from the console -> a login with the lab's key:
        the node's runner (kept in ``runners``), trusting only the pinned keys."""
        cancelled = self.cancel.is_set
        self.progress.update(node.name, "ssh banner", "running")
        connect = RESTORED_BANNER_CONNECT if self.pinned else BANNER_CONNECT
        banner = wait_for(
            node.name,
            f"an SSH banner on {node.ip}:22",
            deadline,
            lambda: self.backends.banner(node.ip, connect),
            interval=RESTORED_BANNER_POLL if self.pinned else BANNER_POLL,
            cancelled=cancelled,
        )
        self.progress.update(node.name, "ssh banner", "ok", banner)
        runner = self._pinned_runner(node) if self.pinned else self._pin(node, deadline)
        self.runners[node.name] = runner
        self.progress.update(node.name, "login", "running")
        self._login(node, runner, deadline)
        return runner

    def _pinned_runner(self, node: NodeSpec) -> NodeRunner:
        state = self.book.state
        if not state.host_keys.get(node.name):
            raise HostError(
                f"{node.name}: no pinned host keys in the lab's state",
                hint="`lab destroy` and `lab up` make a lab whose keys are known",
            )
        return self.backends.runner(self.config, state, node)

    def pin(self, node: NodeSpec, deadline: float) -> dict[str, str]:
        """The host keys the guest printed on its console, checked against (or first
        recorded as) the node's pins in the lab's state; the pins now."""
        cancelled = self.cancel.is_set
        self.progress.update(node.name, "host keys", "running")
        console = node_access.node_paths(self.config, node).console
        printed = wait_for(
            node.name,
            f"host-key fingerprints on the serial console ({console})",
            deadline,
            lambda: self._fingerprints(node),
            interval=BANNER_POLL,
            cancelled=cancelled,
        )
        with self._pins:
            state = self.book.state
            pinned = dict(node_access.pinned_pairs(state.host_keys.get(node.name, [])))
            node_access.check_pins(node.name, pinned, printed)
            state.host_keys[node.name] = node_access.stored_pins({**printed, **pinned})
            self.book.save()
        self.progress.update(node.name, "host keys", "ok", ", ".join(sorted(printed)))
        return {**printed, **pinned}

    def _pin(self, node: NodeSpec, deadline: float) -> NodeRunner:
        """:meth:`pin`, then a runner that trusts only the pinned keys."""
        self.pin(node, deadline)
        with self._pins:
            return self.backends.runner(self.config, self.book.state, node)

    def _login(self, node: NodeSpec, runner: NodeRunner, deadline: float) -> None:
        polls = itertools.count()

        def login() -> bool:
            # Until the agent has written authorized_keys (its console says so), a try
            # is a whole SSH handshake refused at the end, work an emulated guest feels
            # while it boots: try only now and then (the console could miss the line).
            blind = self.pinned or not next(polls) % LOGIN_BLIND_EVERY
            if not blind:
                self.console(node)
                if not node_access.console_keys_authorized(self.config, node, runner.user):
                    raise NotReady("the console does not show the lab's key authorized yet")
            command = step_clock_command() if self.pinned else ["true"]
            result = runner.run(command, timeout=30)
            if not result.succeeded:
                raise NotReady(f"`{' '.join(command)}` failed after login: {result.stderr.strip()}")
            return True

        # a refused, dropped or stalled login is a guest still booting; a changed host key is not
        wait_for(
            node.name,
            "a login with the lab's key",
            deadline,
            login,
            interval=LOGIN_POLL,
            transient=(RemoteError, WaitTimeout),
            cancelled=self.cancel.is_set,
        )
