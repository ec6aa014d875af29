"""The discovery service: a real etcd with its v2 keys API on, run and stopped by lab.

One etcd per listen address, sharing nothing. ``lab up`` needs the service on
its lab's gateway address, and a gateway comes and goes with its lab's
network. One etcd per address means that a new lab starts an etcd of its own
instead of restarting one that other labs are bootstrapping through, that
``lab destroy`` stops only the etcd of its own address (and only once it holds
no token), and that an address gone with its network never makes a later
start fail. The price is one small etcd per running lab. Nothing listens
anywhere else: the client URL is the one address, the peer URL a unix socket
in the service's directory, and the cluster has this one member.

Each service lives in ``$XDG_STATE_HOME/lab/discovery/<host>-<port>/``
(default ``~/.local/state/lab/discovery/``): ``data/`` (etcd's data
directory, so tokens survive restarts), ``etcd.pid`` (pid and URL),
``etcd.log`` and the peer socket. A process is ours when it is an etcd whose
command line names that data directory; stale pid files, and etcds left
running without one, are found that way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Final
from urllib.parse import urlsplit

from provisioner import background
from provisioner.discovery.client import check_health, delete_token, ensure_registry, list_tokens
from provisioner.discovery.protocol import base_url, http_url
from provisioner.errors import DiscoveryError

log = logging.getLogger(__name__)

PID_FILE: Final = "etcd.pid"
LOG_FILE: Final = "etcd.log"
PEER: Final = "unix://peer.sock:2380"  # a socket file in the service directory
NAME: Final = "lab-discovery"
INSTALL_HINT: Final = "install etcd 3.4 with `apt-get install etcd-server`"

# Detached etcds this process started, kept so they are not reported as leaked.
_detached: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class DaemonInfo:
    """The pid file: which etcd serves a service directory, and where."""

    pid: int
    url: str


def state_root(environ: dict[str, str] | None = None) -> Path:
    """Where every discovery service of this host keeps its directory."""
    return background.state_home(environ) / "discovery"


def service_dir(host: str, port: int, root: Path | None = None) -> Path:
    """The directory of the service listening on ``host:port``."""
    return (root or state_root()) / f"{host or '0.0.0.0'}-{port}"  # noqa: S104 - a name


def etcd_argv(etcd: str, listen: tuple[str, int], directory: Path) -> list[str]:
    """etcd's command line for a one-member discovery service on ``listen`` only."""
    host, port = listen
    client = http_url(host or "0.0.0.0", port)  # noqa: S104 - `:PORT` asks for every interface
    return [
        etcd,
        f"--name={NAME}",
        f"--data-dir={directory / 'data'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={base_url(host, port)}",
        f"--listen-peer-urls={PEER}",
        f"--initial-advertise-peer-urls={PEER}",
        f"--initial-cluster={NAME}={PEER}",
        "--enable-v2=true",
        "--heartbeat-interval=50",
        "--election-timeout=500",
        "--logger=zap",
        "--log-outputs=stderr",
    ]


def read_pidfile(directory: Path) -> DaemonInfo | None:
    """The recorded etcd, or None when there is no readable pid file."""
    try:
        document = json.loads((directory / PID_FILE).read_text(encoding="utf-8"))
        return DaemonInfo(int(document["pid"]), str(document["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_pidfile(directory: Path, info: DaemonInfo) -> None:
    tmp = directory / f".{PID_FILE}.{info.pid}"
    tmp.write_text(json.dumps({"pid": info.pid, "url": info.url}), encoding="utf-8")
    tmp.replace(directory / PID_FILE)


def _cmdline(pid: int) -> list[bytes] | None:
    return background.cmdline(pid)


def _is_ours(argv: list[bytes], directory: Path) -> bool:
    return (
        bool(argv)
        and Path(os.fsdecode(argv[0])).name == "etcd"
        and os.fsencode(f"--data-dir={directory / 'data'}") in argv
    )


def _advertised(argv: list[bytes]) -> str:
    prefix = b"--advertise-client-urls="
    return next((os.fsdecode(a[len(prefix) :]) for a in argv if a.startswith(prefix)), "")


def is_running(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is a live etcd serving ``directory`` (not a zombie, not a reused pid)."""
    argv = _cmdline(pid) if pid > 0 else None
    return argv is not None and _is_ours(argv, directory)


def running_pids(directory: Path) -> list[int]:
    """Every live etcd using ``directory``'s data, the pid file's first."""
    recorded = read_pidfile(directory)
    return background.find_pids(
        lambda argv: _is_ours(argv, directory), recorded.pid if recorded else None
    )


def _summary(line: str) -> str:
    """One line of etcd's log, its JSON (``--logger=zap``) cut down to message and error."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict) or "msg" not in entry:
        return line
    return ": ".join(str(entry[k]) for k in ("msg", "address", "error") if k in entry)


def _log_tail(log_file: Path, lines: int = 3) -> str:
    return background.log_tail(log_file, lines, _summary)


class DiscoveryServer:
    """The etcd of one service directory, listening on ``listen`` only.

    ``with DiscoveryServer(...)`` (or :meth:`start`/:meth:`stop`) runs it as a
    child of this process; ``detached=True`` runs it in a session of its own,
    to outlive this process (:func:`ensure_running`).
    """

    def __init__(
        self,
        listen: tuple[str, int],
        state_dir: Path,
        *,
        timeout: float = 30.0,
        detached: bool = False,
    ) -> None:
        self.listen = listen
        self.state_dir = state_dir.absolute()
        self.timeout = timeout
        self.detached = detached
        self.url = base_url(*listen)
        self.log_file = self.state_dir / LOG_FILE
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start etcd and wait until it serves the v2 API; clear errors if it cannot."""
        etcd = shutil.which("etcd")
        if etcd is None:
            raise DiscoveryError("the discovery service needs etcd, not found", hint=INSTALL_HINT)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiscoveryError(
                f"cannot use discovery state directory {self.state_dir}: {exc.strerror}",
                hint="choose a writable --state-dir",
            ) from exc
        if running := running_pids(self.state_dir):
            raise DiscoveryError(
                f"discovery state directory {self.state_dir} is in use by another "
                f"discovery server (etcd pid {running[0]})",
                hint=f"stop it with `lab discovery stop --state-dir {self.state_dir}` "
                "or give this one another --state-dir",
            )
        self._check_port()
        (self.state_dir / PEER.removeprefix("unix://")).unlink(missing_ok=True)  # a killed etcd's
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                etcd_argv(etcd, self.listen, self.state_dir),
                cwd=self.state_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.detached,
            )
        if self.detached:
            _detached.append(self.process)
        _write_pidfile(self.state_dir, DaemonInfo(self.process.pid, self.url))
        log.info("started discovery etcd pid %d on %s", self.process.pid, self.url)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _check_port(self) -> None:
        """Fail clearly when the address is taken (else /health could answer from its holder)."""
        host, port = self.listen
        exc = background.bind_error(host, port)
        if exc is not None:
            raise DiscoveryError(
                f"the discovery service cannot listen on {host}:{port}: {exc.strerror}",
                hint="another process holds that port (see `ss -ltnp`); stop it or "
                "choose another address with --listen",
            ) from exc

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.timeout
        while check_health(self.url, timeout=1.0) is None:
            status = self.process.poll()
            if status is not None:
                raise self._exit_error(status)
            if time.monotonic() > deadline:
                raise DiscoveryError(
                    f"the discovery etcd did not answer {self.url}/health within {self.timeout:g}s",
                    hint=f"see {self.log_file}",
                )
            time.sleep(background.POLL)
        ensure_registry(self.url)

    def _exit_error(self, status: int) -> DiscoveryError:
        tail = _log_tail(self.log_file)
        host, port = self.listen
        if "address already in use" in tail:  # taken since _check_port
            return DiscoveryError(
                f"discovery etcd exited with status {status}: cannot listen on "
                f"{host}:{port}: {tail}",
                hint="another process holds that port (see `ss -ltnp`); stop it or "
                "choose another address with --listen",
            )
        return DiscoveryError(
            f"discovery etcd exited with status {status} at start: {tail}",
            hint=f"see {self.log_file}",
        )

    def _ours(self, pid: int) -> bool:
        return is_running(pid, self.state_dir)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the discovery etcd is not started")
        return self.process.pid

    def wait(self) -> int:
        """Wait until etcd exits; its exit status."""
        assert self.process is not None
        return self.process.wait()

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL) and forget its pid file."""
        process, self.process = self.process, None
        if process is not None:
            _terminate(process.pid, self._ours)
            process.wait(timeout=5)
            _remove_pidfile(self.state_dir, process.pid)

    def __enter__(self) -> DiscoveryServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _remove_pidfile(directory: Path, pid: int) -> None:
    info = read_pidfile(directory)
    if info is not None and info.pid == pid:
        (directory / PID_FILE).unlink(missing_ok=True)


def _terminate(pid: int, alive: Callable[[int], bool], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL; returns once ``alive(pid)`` is false."""
    background.terminate(pid, alive, "discovery etcd", error=DiscoveryError, timeout=timeout)


def ensure_running(
    host: str, port: int, state_dir: Path | None = None, timeout: float = 30.0
) -> str:
    """A healthy discovery etcd on ``host:port`` in the background; its URL.

    Reuses the etcd already serving ``state_dir`` (default: the host's directory
    for that address) when it answers there, else starts one in a session of
    its own that outlives this process.
    """
    directory = (state_dir or service_dir(host, port)).absolute()
    url = base_url(host, port)
    running = running_pids(directory)
    if running:
        where = _advertised(_cmdline(running[0]) or [])
        if where != url:
            raise DiscoveryError(
                f"the discovery service of {directory} already runs at {where} "
                f"(etcd pid {running[0]}), not at {url}",
                hint=f"stop it with `lab discovery stop --state-dir {directory}`",
            )
        deadline = time.monotonic() + timeout
        while check_health(url, timeout=1.0) is None:
            if time.monotonic() > deadline or not is_running(running[0], directory):
                raise DiscoveryError(
                    f"discovery etcd pid {running[0]} does not answer {url}/health "
                    f"within {timeout:g}s",
                    hint=f"see {directory / LOG_FILE}; stop it with "
                    f"`lab discovery stop --state-dir {directory}`",
                )
            time.sleep(background.POLL)
        log.info("reusing discovery etcd pid %d at %s", running[0], url)
        return url
    DiscoveryServer((host, port), directory, timeout=timeout, detached=True).start()
    return url


def stop_daemon(state_dir: Path) -> bool:
    """Stop every etcd serving ``state_dir``; False if none was running."""
    directory = state_dir.absolute()
    pids = running_pids(directory)
    for pid in pids:
        _terminate(pid, lambda p: is_running(p, directory))
        log.info("stopped discovery etcd pid %d", pid)
    (directory / PID_FILE).unlink(missing_ok=True)
    return bool(pids)


def retire(host: str, port: int, state_dir: Path | None = None) -> bool:
    """Stop and remove the service of ``host:port`` once it holds no token; True if it did.

    A service that does not answer is stopped and kept: its tokens are unknown.
    """
    directory = (state_dir or service_dir(host, port)).absolute()
    if not directory.exists():
        return False
    try:
        tokens = list_tokens(base_url(host, port), timeout=5)
    except DiscoveryError:
        stop_daemon(directory)
        return False
    if tokens:
        return False
    stop_daemon(directory)
    shutil.rmtree(directory, ignore_errors=True)
    return True


def release_token(discovery_url: str, timeout: float = 5.0) -> bool:
    """Delete a token of this host's service, then :func:`retire` the service if it is empty.

    False when the token was not deleted (no service for its address, or none answering).
    """
    parts = urlsplit(discovery_url)
    host, port = parts.hostname or "", parts.port or 80
    if not service_dir(host, port).exists():
        return False
    try:
        deleted = delete_token(discovery_url, timeout=timeout)
    except DiscoveryError:
        deleted = False  # not answering: retire stops it and keeps its data
    retire(host, port)
    return deleted


def stop_legacy_daemon(directory: Path) -> bool:
    """Stop the per-lab Python discovery service of earlier lab versions (``.lab/discovery``).

    It would hold the lab's gateway port against the etcd that replaces it.
    """
    try:
        pid = int(json.loads((directory / "discovery.pid").read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False

    def alive(pid: int) -> bool:
        argv = _cmdline(pid)
        return argv is not None and b"provisioner.discovery" in argv

    if not alive(pid):
        return False
    _terminate(pid, alive)
    return True


class _TerminatedError(Exception):
    """SIGTERM arrived; unwinds the foreground service so that etcd is stopped."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _TerminatedError(signum, frame)


def run_service(
    listen: tuple[str, int],
    state_dir: Path | None = None,
    ready: Callable[[DiscoveryServer], None] | None = None,
) -> None:
    """Serve in the foreground until SIGTERM, Ctrl-C or etcd's own exit."""
    server = DiscoveryServer(listen, state_dir or service_dir(*listen))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with server:
            if ready is not None:
                ready(server)
            status = server.wait()
            if status in (0, -signal.SIGTERM, -signal.SIGINT):
                log.info("discovery etcd stopped")
                return
            raise DiscoveryError(
                f"discovery etcd exited with status {status}: {_log_tail(server.log_file)}",
                hint=f"see {server.log_file}",
            )
    except (_TerminatedError, KeyboardInterrupt):
        log.info("discovery service stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
