"""The host's image registry: Debian's ``docker-registry`` (CNCF distribution 2.8), run
by lab, one per host, and a relay per lab that carries it onto the lab's gateway.

distribution listens on one address. The registry listens on ``127.0.0.1:PORT``
only, for the host's tools (skopeo, ``lab image``); each running lab gets a
relay (``socat``, a listener on ``GATEWAY:PORT`` that forwards every connection
to the registry) on its own gateway address, the one address its isolated
network reaches on the host. So nothing listens on every address, the labs'
networks stay apart, a new lab never restarts the registry other labs pull
from, and ``lab destroy`` stops its own relay only. With an ``upstream`` a
second registry, in distribution's proxy mode (which refuses pushes, so it
cannot be the local one), caches that registry at ``127.0.0.1:PORT+1``, with a
relay at ``GATEWAY:PORT+1``.

Everything lives in ``$XDG_STATE_HOME/lab/registry/`` (default
``~/.local/state/lab/registry/``)::

    local/config.yml  local/data/  local/registry.pid  local/registry.log
    cache/...         (the same, for the pull-through cache)
    relays/<host>-<port>.pid  relays/<host>-<port>.log
    lock              (held by imports, removals and starts)

A process is lab's when its command line names that directory's ``config.yml``
(a registry) or its listen address (a relay).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from provisioner import background
from provisioner.config import REGISTRY_PORT
from provisioner.errors import RegistryError
from provisioner.locks import file_lock

log = logging.getLogger(__name__)

REGISTRY_BIN: Final = "docker-registry"
RELAY_BIN: Final = "socat"
HOST: Final = "127.0.0.1"
START_TIMEOUT: Final = 30.0
Kind = Literal["local", "cache"]
INSTALL_HINT: Final = "install them with `apt-get install docker-registry skopeo socat`"
PORT_HINT: Final = (
    "another process holds it (see `ss -ltnp`; Debian's own registry service: "
    "`systemctl disable --now docker-registry`); or choose another port with "
    "registry.port in lab.yaml"
)


def registry_root(environ: dict[str, str] | None = None) -> Path:
    """Where the host's registry, its cache and the relays keep everything."""
    return background.state_home(environ) / "registry"


def lock(root: Path, what: str, timeout: float = 3600.0) -> AbstractContextManager[None]:
    """The registry's host-wide lock: a removal's garbage collection must not run while
    an import uploads blobs no manifest names yet."""
    return file_lock(root / "lock", what, timeout, error=RegistryError)


def registry_config(
    port: int, data: Path, *, upstream: str | None = None, readonly: bool = False
) -> str:
    """distribution's configuration: ``127.0.0.1:port`` only, filesystem storage in
    ``data``, deletes on (for ``lab image rm``); ``readonly`` while garbage is
    collected; a pull-through cache of ``upstream`` when given."""
    lines = [
        "# written by lab (provisioner/registry/service.py); rewritten at every start",
        "version: 0.1",
        "log:",
        "  level: warn",
        "  formatter: text",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {data}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: true",
        "      age: 168h",
        "      interval: 24h",
        "      dryrun: false",
        "    readonly:",
        f"      enabled: {'true' if readonly else 'false'}",
        "http:",
        f"  addr: {HOST}:{port}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if upstream:
        lines += ["proxy:", f"  remoteurl: {upstream}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RegistryInfo:
    """A running registry: its pid, port and (for the cache) upstream."""

    kind: Kind
    pid: int
    port: int
    upstream: str | None
    readonly: bool = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Registry:
    """One registry process of the host: ``local`` (the one images go into) or ``cache``."""

    kind: Kind
    root: Path

    @property
    def directory(self) -> Path:
        return self.root.resolve() / self.kind  # as the command line names it

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "config.yml"

    @property
    def pid_file(self) -> Path:
        return self.directory / "registry.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "registry.log"

    @property
    def what(self) -> str:
        return "the lab registry" if self.kind == "local" else "the registry's pull-through cache"

    def _ours(self, argv: list[bytes]) -> bool:
        return (
            bool(argv)
            and Path(os.fsdecode(argv[0])).name == REGISTRY_BIN
            and os.fsencode(str(self.config_file)) in argv
        )

    def pids(self) -> list[int]:
        recorded = background.read_json(self.pid_file) or {}
        return background.find_pids(self._ours, int(recorded.get("pid", 0)))

    def running(self) -> RegistryInfo | None:
        """The registry as its pid file records it, when that process runs."""
        recorded = background.read_json(self.pid_file)
        if recorded is None:
            return None
        try:
            info = RegistryInfo(
                self.kind,
                int(recorded["pid"]),
                int(recorded["port"]),
                recorded.get("upstream"),
                bool(recorded.get("readonly", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None
        argv = background.cmdline(info.pid)
        return info if argv is not None and self._ours(argv) else None

    def start(
        self,
        port: int,
        *,
        upstream: str | None = None,
        readonly: bool = False,
        timeout: float = START_TIMEOUT,
    ) -> RegistryInfo:
        """Start it in a session of its own (it outlives lab) and wait until it answers."""
        binary = shutil.which(REGISTRY_BIN)
        if binary is None:
            raise RegistryError(f"{self.what} needs {REGISTRY_BIN}, not found", hint=INSTALL_HINT)
        stopped = self.stop()  # strays without a pid file, or a readonly one being restarted
        problem = (background.wait_bindable if stopped else background.bind_error)(HOST, port)
        if problem is not None:
            raise port_error(self.what, HOST, port, problem)
        self.data.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            registry_config(port, self.data, upstream=upstream, readonly=readonly)
        )
        with self.log_file.open("ab") as out:
            process = subprocess.Popen(
                [binary, "serve", str(self.config_file)],
                cwd=self.directory,
                env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _detached.append(process)
        info = RegistryInfo(self.kind, process.pid, port, upstream, readonly)
        background.write_json(
            self.pid_file,
            {"pid": info.pid, "port": port, "upstream": upstream, "readonly": readonly},
        )
        try:
            self._wait_ready(info, process, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("started %s pid %d on %s", self.what, info.pid, info.address)
        return info

    def _wait_ready(
        self, info: RegistryInfo, process: subprocess.Popen[bytes], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while not answers(info.url):
            status = process.poll()
            if status is not None:
                tail = background.log_tail(self.log_file)
                if "address already in use" in tail:
                    raise port_error(self.what, HOST, info.port, OSError(errno.EADDRINUSE, tail))
                raise RegistryError(
                    f"{self.what} exited with status {status} at start: {tail}",
                    hint=f"see {self.log_file}",
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"{self.what} did not answer {info.url}/v2/ within {timeout:g}s",
                    hint=f"see {self.log_file}",
                )
            time.sleep(background.POLL)

    def stop(self) -> bool:
        """Stop every process of this registry; False if none ran."""
        pids = self.pids()
        for pid in pids:
            background.terminate(
                pid,
                lambda p: (argv := background.cmdline(p)) is not None and self._ours(argv),
                self.what,
                error=RegistryError,
            )
            log.info("stopped %s pid %d", self.what, pid)
        self.pid_file.unlink(missing_ok=True)
        return bool(pids)


# Detached registries and relays this process started, kept so they are not reported as leaked.
_detached: list[subprocess.Popen[bytes]] = []


def port_error(what: str, host: str, port: int, problem: OSError) -> RegistryError:
    """The error for an address lab cannot listen on, naming it and the lab.yaml key."""
    if problem.errno == errno.EADDRNOTAVAIL:
        return RegistryError(
            f"{what} cannot listen on {host}:{port}: {host} is not an address of this host",
            hint="is the lab's network up? (`lab up` creates it; a lab on another "
            "host's libvirt has its gateway there)",
        )
    return RegistryError(
        f"{what} cannot listen on {host}:{port}: {problem.strerror or problem}", hint=PORT_HINT
    )


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a registry answers its API base (``GET /v2/``) at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=timeout) as reply:  # noqa: S310 - http on loopback
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def local(root: Path | None = None) -> Registry:
    return Registry("local", root or registry_root())


def cache(root: Path | None = None) -> Registry:
    return Registry("cache", root or registry_root())


def ensure_local(root: Path | None = None, port: int = REGISTRY_PORT) -> RegistryInfo:
    """The local registry, started on ``127.0.0.1:port`` unless it runs already (on
    whichever port it was started with: every lab's relay follows that one)."""
    registry = local(root)
    info = registry.running()
    if info is not None and not info.readonly and answers(info.url):
        return info
    with lock(registry.root, f"starting {registry.what}"):
        info = registry.running()
        if info is not None and not info.readonly and answers(info.url):
            return info
        return registry.start(info.port if info is not None else port)


def ensure_cache(root: Path | None, port: int, upstream: str) -> RegistryInfo:
    """The pull-through cache of ``upstream`` (one per host; another upstream is refused)."""
    registry = cache(root)
    info = registry.running()
    if info is not None and info.upstream != upstream:
        raise RegistryError(
            f"the host's pull-through cache already runs for {info.upstream}, "
            f"not {upstream} (lab.yaml registry.upstream)",
            hint="one cache serves every lab on the host: use the same upstream, or "
            "`lab registry stop` first",
        )
    if info is not None and answers(info.url):
        return info
    with lock(registry.root, f"starting {registry.what}"):
        return registry.start(info.port if info is not None else port, upstream=upstream)


# --- relays -------------------------------------------------------------------


@dataclass(frozen=True)
class Relay:
    """A socat that carries ``host:port`` (a lab's gateway) to the registry on loopback."""

    host: str
    port: int
    root: Path

    @property
    def name(self) -> str:
        return f"{self.host}-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.root / "relays" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "relays" / f"{self.name}.log"

    @property
    def listen_spec(self) -> str:
        return f"TCP-LISTEN:{self.port},bind={self.host},reuseaddr,fork"

    def _ours(self, argv: list[bytes]) -> bool:
        return (
            len(argv) > 1
            and Path(os.fsdecode(argv[0])).name == RELAY_BIN
            and os.fsencode(self.listen_spec) in argv
        )

    def running_target(self) -> int | None:
        """The loopback port the running relay forwards to, None when it does not run."""
        recorded = background.read_json(self.pid_file)
        if recorded is None:
            return None
        argv = background.cmdline(int(recorded.get("pid", 0)))
        if argv is None or not self._ours(argv):
            return None
        return int(recorded.get("target", 0)) or None

    def start(self, target: int, lab: str, timeout: float = 10.0) -> None:
        binary = shutil.which(RELAY_BIN)
        if binary is None:
            raise RegistryError(
                f"lab {lab}: the registry relay needs {RELAY_BIN}, not found", hint=INSTALL_HINT
            )
        stopped = self.stop()
        problem = (background.wait_bindable if stopped else background.bind_error)(
            self.host, self.port
        )
        if problem is not None:
            raise port_error(f"lab {lab}: the registry relay", self.host, self.port, problem)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            process = subprocess.Popen(
                [binary, self.listen_spec, f"TCP:{HOST}:{target}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _detached.append(process)
        background.write_json(self.pid_file, {"pid": process.pid, "target": target, "lab": lab})
        deadline = time.monotonic() + timeout
        while not _connects(self.host, self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = background.log_tail(self.log_file)
                self.stop()
                raise RegistryError(
                    f"lab {lab}: the registry relay on {self.host}:{self.port} did not start: "
                    f"{tail or 'no answer'}",
                    hint=f"see {self.log_file}; {PORT_HINT}",
                )
            time.sleep(background.POLL)
        log.info("relay %s:%d -> %s:%d pid %d", self.host, self.port, HOST, target, process.pid)

    def stop(self) -> bool:
        """Stop the relay (its forked children too); False if none ran."""
        recorded = background.read_json(self.pid_file) or {}
        pids = background.find_pids(self._ours, int(recorded.get("pid", 0)))
        for pid in pids:
            background.terminate(
                pid,
                lambda p: (argv := background.cmdline(p)) is not None and self._ours(argv),
                "registry relay",
                error=RegistryError,
            )
        self.pid_file.unlink(missing_ok=True)
        return bool(pids)


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def ensure_relay(root: Path | None, host: str, port: int, target: int, lab: str) -> bool:
    """A relay from ``host:port`` to the registry's loopback ``target``; True if started."""
    relay = Relay(host, port, root or registry_root())
    if relay.running_target() == target:
        return False
    relay.start(target, lab)
    return True


def relays(root: Path | None = None) -> list[tuple[Relay, int | None]]:
    """Every relay with a pid file, and the port it forwards to (None: not running)."""
    base = root or registry_root()
    found = []
    for path in sorted((base / "relays").glob("*.pid")):
        host, _, port = path.stem.rpartition("-")
        if host and port.isdigit():
            relay = Relay(host, int(port), base)
            found.append((relay, relay.running_target()))
    return found


def stop_relays(host: str, root: Path | None = None) -> list[int]:
    """Stop every relay on ``host`` (a lab's gateway); the ports they listened on."""
    stopped = []
    for relay, _ in relays(root):
        if relay.host == host and relay.stop():
            stopped.append(relay.port)
        relay.log_file.unlink(missing_ok=True)
    return stopped
