"""The lab's state on disk, under ``<lab>/.lab/`` (like ``.vagrant/``).

``state.json`` is rewritten atomically after every step, so a re-run resumes and
``lab destroy`` finds everything even after a crash. Secrets (the lab's SSH key)
live beside it with mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.errors import LabError

STATE_FILE = "state.json"
# What lab wrote into the lab directory ({path: sha256}), kept by `lab destroy` so
# that the next render may replace lab's own files while still refusing to
# overwrite ones the user edited.
RENDERED_RECORD = "rendered.json"
KEY_FILE = "ssh/id_ed25519"
LIBVIRT_PATHS_FILE = "libvirt-paths.json"  # the nodes' drives and consoles in the storage pool
# LabState.extra: the discovery URL of a cluster that is gone; a token is never used twice
SPENT_DISCOVERY = "discovery_spent"
# LabState.extra: the members `lab replace` joined to the running cluster (rendered with
# initial-cluster-state existing from then on), and a replacement under way
JOINED_EXISTING = "joined_existing"
REPLACING = "replacing"


@dataclass(frozen=True)
class DiscoveryRecord:
    """The etcd discovery token this lab's cluster bootstraps from."""

    mode: str
    url: str
    size: int


@dataclass(frozen=True)
class LabState:
    """What the lab has done so far. Phases are named steps, in order."""

    name: str = ""
    discovery: DiscoveryRecord | None = None
    rendered: dict[str, str] = field(default_factory=dict)  # path -> sha256 of what we wrote
    phases: tuple[str, ...] = ()
    host_keys: dict[str, list[str]] = field(default_factory=dict)  # node -> pinned fingerprints
    machine_ids: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def with_phase(self, phase: str) -> LabState:
        if phase in self.phases:
            return self
        return replace(self, phases=(*self.phases, phase))

    def without_phase(self, phase: str) -> LabState:
        return replace(self, phases=tuple(p for p in self.phases if p != phase))


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` so readers see the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(state_dir: Path) -> LabState:
    path = state_dir / STATE_FILE
    if not path.exists():
        return LabState()
    try:
        raw = json.loads(path.read_text())
        discovery = raw.get("discovery")
        return LabState(
            name=raw.get("name", ""),
            discovery=DiscoveryRecord(**discovery) if discovery else None,
            rendered=dict(raw.get("rendered", {})),
            phases=tuple(raw.get("phases", ())),
            host_keys={k: list(v) for k, v in raw.get("host_keys", {}).items()},
            machine_ids=dict(raw.get("machine_ids", {})),
            extra=dict(raw.get("extra", {})),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise LabError(
            f"{path}: lab state is unreadable ({exc})",
            hint="run `lab destroy` to clean up, or remove the .lab directory if no VMs exist",
        ) from exc


def save_state(state_dir: Path, state: LabState) -> None:
    payload = asdict(state)
    payload["phases"] = list(state.phases)
    data = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(state_dir / STATE_FILE, data.encode())


def keep_rendered_record(state_dir: Path, record: dict[str, str]) -> None:
    """Keep the record of rendered files beyond the state (``lab destroy``)."""
    if record:
        data = json.dumps(record, indent=2, sort_keys=True) + "\n"
        atomic_write(state_dir / RENDERED_RECORD, data.encode())


def rendered_record(state_dir: Path, state: LabState) -> dict[str, str]:
    """What lab last wrote: from the state, else from the record a destroy kept."""
    if state.rendered:
        return dict(state.rendered)
    path = state_dir / RENDERED_RECORD
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # unreadable: every existing file then counts as edited (the safe side)
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def ensure_ssh_key(state_dir: Path) -> tuple[Path, str]:
    """The lab's own ed25519 key (never Vagrant's insecure key): path and public line."""
    key_path = state_dir / KEY_FILE
    pub_path = key_path.with_suffix(".pub")
    if not key_path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.parent.chmod(0o700)
        atomic_write(key_path, private, mode=0o600)
        atomic_write(pub_path, public + b" lab\n", mode=0o644)
    if key_path.stat().st_mode & 0o077:
        key_path.chmod(0o600)
    if not pub_path.exists():
        raise LabError(
            f"{pub_path} is missing but {key_path} exists",
            hint=f"recreate it: ssh-keygen -y -f {key_path} > {pub_path}",
        )
    return key_path, pub_path.read_text().strip()


class StateFile:
    """A lab's state as one command changes it; :meth:`save` writes it after each change."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.state = load_state(state_dir)

    def save(self, phase: str | None = None) -> None:
        """Write the state, first recording ``phase`` as done when given."""
        if phase:
            self.state = self.state.with_phase(phase)
        save_state(self.state_dir, self.state)

    def reload(self) -> None:
        """Read what another step (the render) wrote meanwhile."""
        self.state = load_state(self.state_dir)
