"""Drive ``vagrant`` (with vagrant-libvirt) for one rendered lab directory.

Built on python-vagrant. Every command:

- writes stdout and stderr to the lab's log file, never to a terminal:
  vagrant-libvirt draws progress bars (one line per percent while a box image is
  uploaded into the storage pool);
- runs with a deadline. python-vagrant has none, so the subclass below replaces
  its two process helpers: on expiry the whole process group gets SIGINT (Vagrant
  then cleans up, e.g. destroys a half-created domain), and SIGKILL after a grace
  period;
- is recorded in the lab's ``.lab/`` while it runs, so that one a dead lab left
  running (lab SIGKILLed: vagrant runs in a group of its own) is found and stopped
  by the next lab command (:mod:`provisioner.hypervisor.vagrantpid`);
- fails with an error that quotes the end of its own output.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import vagrant

from provisioner.config import STATE_DIR
from provisioner.errors import HostError, LabError, NodeError, WaitTimeout
from provisioner.hypervisor import vagrantpid
from provisioner.hypervisor.libvirt import SYSTEM_URI

DEFAULT_UP_TIMEOUT = 1800.0  # first `up` uploads the box into the pool; TCG boots are slow
DEFAULT_HALT_TIMEOUT = 300.0
DEFAULT_DESTROY_TIMEOUT = 300.0
DEFAULT_QUERY_TIMEOUT = 120.0
INTERRUPT_GRACE = 60.0
_TAIL_LINES = 15
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # progress bars redraw with ESC[K
_HEADER = "=== "  # starts the line the log gets before each command

T = TypeVar("T")
log = logging.getLogger(__name__)
# vagrant-libvirt's words when a network it listed a moment ago is gone
RACED_NETWORK = "Network not found: no network with matching uuid"

# The environment every vagrant command gets, over the caller's.
BASE_ENV = {
    "VAGRANT_DEFAULT_PROVIDER": "libvirt",
    "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check against HashiCorp's servers
    "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
    "VAGRANT_NO_COLOR": "1",
    # lab drives this vagrant: the Vagrantfile leaves its hooks (`lab vagrant-hook`) to lab
    "LAB_DRIVING_VAGRANT": "1",
}


def vagrant_env(
    uri: str = SYSTEM_URI,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for vagrant: ``base`` (default: ours), BASE_ENV, the URI, ``extra``."""
    env = dict(os.environ if base is None else base)
    env.update(BASE_ENV)
    env["LIBVIRT_DEFAULT_URI"] = uri
    env.update(extra or {})
    return env


def log_tail(text: str, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of a command's output, progress bars dropped."""
    plain = _ANSI.sub("", text)
    kept = [line.rsplit("\r", 1)[-1].rstrip() for line in plain.split("\n")]
    useful = [line for line in kept if line.strip() and not line.startswith(_HEADER)]
    return "\n".join(useful[-lines:])


class _DeadlineVagrant(vagrant.Vagrant):  # python-vagrant has no type hints
    """python-vagrant whose commands run in their own process group under a deadline,
    each recorded in ``state_dir`` while it runs (see :mod:`.vagrantpid`)."""

    def __init__(self, timeout: float, state_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.timeout = timeout
        self.state_dir = state_dir

    def _call_vagrant_command(self, args: Sequence[str | None]) -> None:
        self._run(args, capture=False)

    def _run_vagrant_command(self, args: Sequence[str | None]) -> str:
        return self._run(args, capture=True)

    def _run(self, args: Sequence[str | None], *, capture: bool) -> str:
        command: list[str] = self._make_vagrant_command(args)  # type: ignore[no-untyped-call]
        command = niced(command)
        with self.out_cm() as out_fh, self.err_cm() as err_fh:
            out_fh.write(f"\n{_HEADER}{time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
            out_fh.flush()
            proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else out_fh,
                stderr=err_fh,
                start_new_session=True,
            )
            words = [a for a in args if a is not None and not a.startswith("-")]
            record = vagrantpid.remember(
                self.state_dir, proc.pid, Path(self.root), " ".join(["vagrant", *words])
            )
            try:
                stdout, _ = proc.communicate(timeout=self.timeout)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                # its own session keeps it from our terminal's Ctrl-C: pass it on
                _interrupt(proc)
                raise
            finally:
                if proc.poll() is not None:
                    vagrantpid.forget(record)
            text = stdout.decode(errors="replace") if stdout is not None else ""
            if capture:
                out_fh.write(text)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, command, text)
        return text


VAGRANT_NICENESS = 10


def niced(command: list[str]) -> list[str]:
    """``command`` under ``nice``: Vagrant mostly waits, and its Ruby should not take CPU
    from the guests it waits for (under TCG they use every core there is)."""
    nice = shutil.which("nice")
    return [nice, "-n", str(VAGRANT_NICENESS), *command] if nice else command


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the command's process group (Vagrant cleans up), then kill it."""
    for sig, grace in ((signal.SIGINT, INTERRUPT_GRACE), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        return


class VagrantLab:
    """``vagrant`` in one rendered lab directory, its output appended to ``log_path``."""

    def __init__(
        self,
        root: Path,
        log_path: Path,
        *,
        uri: str = SYSTEM_URI,
        env: Mapping[str, str] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.log_path = log_path
        self._env = vagrant_env(uri, env)
        # where each running command is recorded: the lab's .lab/ unless told
        self.state_dir = state_dir if state_dir is not None else root / STATE_DIR

    def validate(self, *, timeout: float = DEFAULT_QUERY_TIMEOUT) -> None:
        """``vagrant validate``: the Vagrantfile, config.rb and every machine's config."""
        self._call("validate", None, timeout, lambda v: v._call_vagrant_command(["validate"]))

    def status(
        self, node: str | None = None, *, timeout: float = DEFAULT_QUERY_TIMEOUT
    ) -> dict[str, str]:
        """Machine name -> state (``not_created``, ``running``, ``poweroff``, ...)."""
        found: list[Any] = self._call("status", node, timeout, lambda v: v.status(vm_name=node))  # type: ignore[no-untyped-call]
        return {entry.name: entry.state for entry in found}

    def up(
        self,
        node: str | None = None,
        *,
        timeout: float = DEFAULT_UP_TIMEOUT,
        provision: bool | None = None,
    ) -> None:
        """``vagrant up`` one node, or all of them (in parallel) when ``node`` is None.

        Bring several nodes up with one call, not one process per node:
        vagrant-libvirt serialises the box upload with an in-process lock only.

        vagrant-libvirt looks at every network of the host while it creates a domain;
        another lab's network removed in between (its `lab destroy`) fails that node
        with "Network not found". ``vagrant up`` is idempotent, so that failure is
        retried once: nodes already up are left alone, the failed one is made again.
        """
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._call(
                    "up",
                    node,
                    max(1.0, deadline - time.monotonic()),
                    lambda v: v.up(vm_name=node, provider="libvirt", provision=provision),  # type: ignore[no-untyped-call]
                )
            except LabError as exc:
                if attempt == 2 or RACED_NETWORK not in self._log_since(start):
                    raise
                log.info("vagrant up met a network removed meanwhile; once more: %s", exc)
            else:
                return

    def halt(
        self,
        node: str | None = None,
        *,
        timeout: float = DEFAULT_HALT_TIMEOUT,
        force: bool = False,
    ) -> None:
        """``vagrant halt``: clean shutdown, or pull the plug with ``force``."""
        self._call("halt", node, timeout, lambda v: v.halt(vm_name=node, force=force))  # type: ignore[no-untyped-call]

    def destroy(self, node: str | None = None, *, timeout: float = DEFAULT_DESTROY_TIMEOUT) -> None:
        """``vagrant destroy --force``: the domain and its volumes (not the lab network)."""
        self._call("destroy", node, timeout, lambda v: v.destroy(vm_name=node))  # type: ignore[no-untyped-call]

    def _call(
        self,
        verb: str,
        node: str | None,
        timeout: float,
        action: Callable[[_DeadlineVagrant], T],
    ) -> T:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_cm = vagrant.make_file_cm(str(self.log_path))  # type: ignore[no-untyped-call]
        runner = _DeadlineVagrant(
            timeout,
            self.state_dir,
            root=str(self.root),
            env=self._env,
            out_cm=log_cm,
            err_cm=log_cm,
        )
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        what = f"vagrant {verb}" + (f" {node}" if node else "")
        subject = node or str(self.root)
        try:
            return action(runner)
        except RuntimeError as exc:  # python-vagrant: executable not found
            raise HostError(
                f"cannot run vagrant: {exc}", hint="apt-get install vagrant vagrant-libvirt"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise WaitTimeout(
                subject,
                f"`{what}` did not finish within {timeout:g}s",
                hint=f"its output is in {self.log_path}",
            ) from exc
        except subprocess.CalledProcessError as exc:
            tail = log_tail(self._log_since(start))
            message = f"`{what}` failed (exit {exc.returncode})" + (f":\n{tail}" if tail else "")
            hint = f"full output in {self.log_path}"
            if node:
                raise NodeError(node, message, hint=hint) from exc
            raise LabError(f"{self.root}: {message}", hint=hint) from exc

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""
