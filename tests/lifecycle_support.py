"""Fakes for a lab's lifecycle under libvirt's test:///default driver: Vagrant defines
and starts domains in the test driver, the guests' SSH answers lab's checks, the pool
volumes the test driver cannot stream are files in a directory. Used by the lifecycle
integration tests (``up``, ``destroy``, snapshots, ``start``, ``scale``)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provisioner import nodes as node_access
from provisioner.config import LabConfig
from provisioner.errors import LabError
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.lifecycle import Backends
from provisioner.progress import PlainProgress, Progress
from provisioner.remote.hostkeys import BEGIN_MARKER, END_MARKER
from provisioner.remote.runner import CommandResult, Runner
from provisioner.state import LabState

TEST_URI = "test:///default"
FINGERPRINT = "SHA256:" + "A" * 43


def console_text(user: str) -> str:
    return (
        f"{BEGIN_MARKER}\n256 {FINGERPRINT} root@core (ED25519)\n{END_MARKER}\n"
        f"coreos-cloudinit: Authorizing 1 SSH keys for user '{user}'\n"
    )


@dataclass
class FakeRunner:
    """A guest that answers lab's node checks; ``broken`` raises what SSH would."""

    name: str
    broken: LabError | None = None
    commands: list[tuple[str, ...]] = field(default_factory=list)
    user: str = "core"
    back: Callable[[], bool] | None = None  # its etcd member healthy yet
    fleet: Callable[[], list[str]] | None = None  # the machine-ids fleet lists
    address: str = ""
    stdin: dict[tuple[str, ...], str] = field(default_factory=dict)
    # etcd's answers to etcdctl (member list, add, remove, health), None: not etcd's
    etcd: Callable[[Sequence[str]], CommandResult | None] | None = None

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        if self.broken is not None:
            raise self.broken
        self.commands.append(tuple(argv))
        if stdin is not None:
            self.stdin[tuple(argv)] = stdin
        if list(argv) == ["cat", "/etc/machine-id"]:
            return CommandResult(0, f"{uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex}\n", "")
        from_etcd = self.etcd(argv) if self.etcd is not None else None
        if from_etcd is not None:
            return from_etcd
        if "is-system-running" in argv:
            return CommandResult(0, "running\n", "")
        if argv[:2] == ["sudo", "journalctl"]:
            return CommandResult(0, f"journal of {self.name}\n", "")
        if "endpoint" in argv and "health" in argv:
            (endpoint,) = [a.split("=", 1)[1] for a in argv if a.startswith("--endpoints=")]
            healthy = self.back is None or self.back()
            answer = f'[{{"endpoint":"{endpoint}","health":{str(healthy).lower()},"took":"1ms"}}]'
            return CommandResult(0 if healthy else 1, answer, "")
        if list(argv[:2]) == ["fleetctl", "list-machines"]:
            listed = self.fleet() if self.fleet is not None else []
            return CommandResult(0, "".join(f"{m}\t10.0.0.1\t-\n" for m in listed), "")
        return CommandResult(0, "", "")

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise AssertionError("not used by up")

    def close(self) -> None:
        pass

    def known_hosts_entry(self) -> str:
        return f"{self.address} ssh-ed25519 AAAA{self.name}"


class StreamlessHost(LibvirtHost):
    """The test driver, with a directory for the pool volumes it cannot stream."""

    pool_dir: Path

    def upload_volume(self, pool: str, name: str, source: Path) -> str:
        target = self.pool_dir / name
        target.write_bytes(source.read_bytes())
        return str(target)

    def ensure_empty_volume(self, pool: str, name: str) -> str:
        (self.pool_dir / name).touch()
        return str(self.pool_dir / name)

    def delete_volume(self, pool: str, name: str) -> bool:
        path = self.pool_dir / name
        found = path.exists()
        path.unlink(missing_ok=True)
        return found

    def read_volume(self, pool: str, name: str) -> bytes | None:
        path = self.pool_dir / name
        return path.read_bytes() if path.exists() else None


def open_host(pool_dir: Path) -> LibvirtHost:
    host = StreamlessHost.open(TEST_URI)
    assert isinstance(host, StreamlessHost)
    host.pool_dir = pool_dir
    return host


@dataclass
class FakeVagrant:
    """`vagrant up`: defines and starts each node's domain in the test driver and
    writes its console as the guest would; ``interrupt`` acts like Ctrl-C."""

    config: LabConfig
    interrupt: bool = False
    ups: int = 0
    booted: list[str | None] = field(default_factory=list)  # the node of each `vagrant up`
    reload: Callable[[], LabConfig] | None = None  # the lab's config as vagrant reads it

    def __call__(self, directory: Path, log: Path) -> FakeVagrant:
        assert directory == self.config.directory
        return self

    def up(self, node: str | None = None, *, timeout: float, provision: bool | None = None) -> None:
        self.ups += 1
        self.booted.append(node)
        if self.interrupt:
            raise KeyboardInterrupt
        # as vagrant reads config.rb: the lab as rendered now (after a `lab scale` too)
        config = self.reload() if self.reload is not None else self.config
        chosen = [n for n in config.nodes if node is None or n.name == node]
        assert chosen, f"vagrant knows no machine {node}"
        with LibvirtHost.open(TEST_URI) as host:
            for spec in chosen:
                name = node_access.domain_of(config, spec)
                if name not in host.lab_objects(self.config.name).domains:
                    host.connection.defineXML(
                        f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                        "<os><type>hvm</type></os></domain>"
                    )
                host.start(name)
                # QEMU writes the console where the Vagrantfile says: the pool volume
                console = node_access.libvirt_paths(config)["consoles"][spec.name]
                Path(console).write_text(console_text("core"))


@dataclass
class Fakes:
    config: LabConfig
    vagrant: FakeVagrant
    broken: dict[str, LabError] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    runners: dict[str, FakeRunner] = field(default_factory=dict)
    back: Callable[[], bool] | None = None
    fleet: Callable[[], list[str]] | None = None
    etcd: Callable[[Sequence[str]], CommandResult | None] | None = None

    def backends(self) -> Backends:
        def runner(config: LabConfig, state: LabState, node: object) -> FakeRunner:
            name = node.name  # type: ignore[attr-defined]
            assert state.host_keys[name], "a runner is made only once the keys are pinned"
            made = FakeRunner(name, self.broken.get(name), address=node.ip)  # type: ignore[attr-defined]
            made.back, made.fleet, made.etcd = self.back, self.fleet, self.etcd
            self.runners[name] = made
            return made

        def prepare_host(config: LabConfig) -> str:
            self.calls.append("host")
            return "daemons running"

        def box(config: LabConfig, progress: Progress, open_host: object) -> str:
            self.calls.append("box")
            return "box cached"

        def check_cluster(
            config: LabConfig,
            runners: Mapping[str, Runner],
            machine_ids: Mapping[str, str],
            progress: Progress,
            cancelled: object,
        ) -> str:
            self.calls.append("cluster")
            assert sorted(machine_ids) == [n.name for n in config.nodes]
            return f"etcd {len(runners)}/{len(runners)}"

        def registry(config: LabConfig) -> str:
            self.calls.append("registry")
            return "registry off in this test"

        pool_dir = self.config.directory.parent / "pool"
        pool_dir.mkdir(exist_ok=True)
        return Backends(
            open_host=lambda: open_host(pool_dir),
            booter=self.vagrant,
            runner=runner,
            banner=lambda ip, timeout: "SSH-2.0-OpenSSH_9.2p1",
            prepare_host=prepare_host,
            box=box,
            registry=registry,
            check_cluster=check_cluster,
        )


def progress() -> PlainProgress:
    return PlainProgress(io.StringIO())
