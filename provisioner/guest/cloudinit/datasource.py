"""Where user-data comes from: a config drive or a local file.

A config drive is an ISO9660/FAT filesystem labelled ``config-2`` holding
``openstack/latest/user_data`` and optionally ``openstack/latest/meta_data.json``
(``hostname``, ``public_keys``; this project also reads ``public_ipv4``,
``private_ipv4``, ``public_ipv6`` and ``private_ipv6`` from it). It is given
either as a mounted directory or as the block device, which is then mounted
read-only on a temporary directory for the read. Sources are polled until one
is available or the deadline passes, as coreos-cloudinit does.
"""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from provisioner.guest.cloudinit.errors import DatasourceError

log = logging.getLogger(__name__)

CONFIG_DRIVE_LABEL = "config-2"
CONFIG_DRIVE_DEVICE = "/dev/disk/by-label/config-2"
VAGRANT_USER_DATA = "/var/lib/coreos-vagrant/vagrantfile-user-data"
ADDRESS_KEYS = ("public_ipv4", "private_ipv4", "public_ipv6", "private_ipv6")

Mounter = Callable[[Path], AbstractContextManager[Path]]


@dataclass(frozen=True)
class Metadata:
    """What a datasource knows about the machine besides the user-data."""

    hostname: str = ""
    public_keys: tuple[str, ...] = ()
    addresses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fetched:
    """User-data bytes and metadata from one source."""

    source: str
    userdata: bytes
    metadata: Metadata = field(default_factory=Metadata)


class Datasource(Protocol):
    """A place user-data may come from."""

    @property
    def name(self) -> str:
        """Shown in log lines."""

    def available(self) -> bool:
        """Whether the source can be read now."""

    def fetch(self) -> Fetched:
        """Read the user-data (and metadata)."""


def parse_metadata(text: str) -> Metadata:
    """Parse an OpenStack ``meta_data.json``."""
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise DatasourceError(f"meta_data.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DatasourceError("meta_data.json must hold a JSON object")
    keys = data.get("public_keys")
    public_keys = tuple(str(keys[name]) for name in sorted(keys)) if isinstance(keys, dict) else ()
    addresses = {key: str(data[key]) for key in ADDRESS_KEYS if data.get(key)}
    hostname = data.get("hostname")
    return Metadata(
        hostname=hostname if isinstance(hostname, str) else "",
        public_keys=public_keys,
        addresses=addresses,
    )


@dataclass(frozen=True)
class LocalFile:
    """User-data in a file (``--from-file``)."""

    path: Path

    @property
    def name(self) -> str:
        return f"local-file {self.path}"

    def available(self) -> bool:
        return self.path.is_file()

    def fetch(self) -> Fetched:
        try:
            return Fetched(self.name, self.path.read_bytes())
        except OSError as exc:
            raise DatasourceError(
                f"cannot read user-data from {self.path}: {exc.strerror}"
            ) from None


@contextmanager
def mount_readonly(device: Path) -> Iterator[Path]:
    """Mount ``device`` read-only on a temporary directory for the ``with`` block."""
    target = Path(tempfile.mkdtemp(prefix="coreos-cloudinit-"))
    try:
        _mount_command(["mount", "-o", "ro", str(device), str(target)])
        try:
            yield target
        finally:
            _mount_command(["umount", str(target)])
    finally:
        target.rmdir()


def _mount_command(args: list[str]) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True, text=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        raise DatasourceError(f"{' '.join(args)} failed: {exc.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise DatasourceError(f"{' '.join(args)} did not finish within 60 s") from None


@dataclass(frozen=True)
class ConfigDrive:
    """An OpenStack config drive (``--from-configdrive``): a directory or block device."""

    path: Path
    mount: Mounter = mount_readonly

    @property
    def name(self) -> str:
        return f"config-drive {self.path}"

    def available(self) -> bool:
        return self.path.exists()

    def fetch(self) -> Fetched:
        if self._is_block_device():
            log.info("Mounting %s read-only", self.path)
            with self.mount(self.path) as directory:
                return self._read(directory)
        return self._read(self.path)

    def _is_block_device(self) -> bool:
        try:
            return stat.S_ISBLK(self.path.stat().st_mode)
        except OSError:
            return False

    def _read(self, root: Path) -> Fetched:
        latest = root / "openstack" / "latest"
        userdata = _read_optional(latest / "user_data")
        metadata = parse_metadata(
            _read_optional(latest / "meta_data.json").decode("utf-8", errors="replace")
        )
        return Fetched(self.name, userdata, metadata)


def _read_optional(path: Path) -> bytes:
    log.info("Attempting to read from %s", path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise DatasourceError(f"cannot read {path}: {exc.strerror}") from None


def wait_for_datasource(
    sources: Sequence[Datasource],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Datasource:
    """The first available source, polling with backoff (100 ms up to 30 s) until ``timeout``."""
    deadline = clock() + timeout
    delay = 0.1
    while True:
        for source in sources:
            if source.available():
                return source
        remaining = deadline - clock()
        if remaining <= 0:
            names = ", ".join(source.name for source in sources)
            raise DatasourceError(
                "No datasources available in time",
                hint=f"waited {timeout:g} s for: {names}",
            )
        sleep(min(delay, remaining))
        delay = min(delay * 2, 30.0)
