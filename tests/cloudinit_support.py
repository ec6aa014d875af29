"""Recording stand-ins for the cloud-config agent's Systemd, Users and Host.

Their real counterparts (provisioner.guest.cloudinit.system) are exercised in
tests/integration/test_cloudinit_system.py and on booted guests.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import replace
from pathlib import Path

from provisioner.guest.cloudinit.apply import Machine
from provisioner.guest.cloudinit.config import User
from provisioner.guest.cloudinit.system import Account

#: Owner ids the fakes hand out: real other ids when running as root (so chown is
#: observable), else our own (so chown is allowed).
UID = 4321 if os.geteuid() == 0 else os.getuid()
GID = 4322 if os.geteuid() == 0 else os.getgid()


class RecordingSystemd:
    """Records calls as tuples, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def daemon_reload(self) -> None:
        self.calls.append(("daemon-reload",))

    def enable(self, unit: str, *, runtime: bool) -> None:
        self.calls.append(("enable", unit, "--runtime" if runtime else ""))

    def run_command(self, command: str, unit: str) -> None:
        self.calls.append((command, unit))

    def run_script(self, path: str) -> str:
        self.calls.append(("run-script", path))
        return f"coreos-cloudinit-{posixpath.basename(path)}.service"


class FakeUsers:
    """An in-memory account table; every account and group has ids UID/GID."""

    def __init__(self, *accounts: Account) -> None:
        self.accounts = {account.name: account for account in accounts}
        self.created: list[User] = []
        self.passwords: list[tuple[str, str]] = []

    def lookup(self, name: str) -> Account | None:
        return self.accounts.get(name)

    def create(self, user: User) -> None:
        home = user.homedir or f"/home/{user.name}"
        self.accounts[user.name] = Account(user.name, UID, GID, home, user.passwd or "*")
        self.created.append(user)

    def set_password(self, name: str, password_hash: str) -> None:
        self.accounts[name] = replace(self.accounts[name], password_hash=password_hash)
        self.passwords.append((name, password_hash))

    def resolve_owner(self, owner: str) -> tuple[int, int]:
        user, _, group = owner.partition(":")
        return (UID if user else -1, GID if group else -1)


class FakeHost:
    """Remembers the hostname it was given."""

    def __init__(self, name: str = "localhost") -> None:
        self.name = name
        self.set_calls: list[str] = []

    def hostname(self) -> str:
        return self.name

    def set_hostname(self, name: str) -> None:
        self.name = name
        self.set_calls.append(name)


def core_account() -> Account:
    """The ``core`` user an image ships."""
    return Account("core", UID, GID, "/home/core", "*")


def fake_machine(
    root: Path, *accounts: Account
) -> tuple[Machine, RecordingSystemd, FakeUsers, FakeHost]:
    """A machine rooted at ``root`` with recording fakes."""
    systemd, users, host = RecordingSystemd(), FakeUsers(*accounts), FakeHost()
    return Machine(root, systemd, users, host), systemd, users, host


def snapshot(root: Path) -> dict[str, tuple[str, int, int, int, bytes]]:
    """Every path under ``root`` with its type, mode, owner, mtime and content (or link target)."""
    state: dict[str, tuple[str, int, int, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            data, kind = str(path.readlink()).encode(), "link"
        elif path.is_dir():
            data, kind = b"", "dir"
        else:
            data, kind = path.read_bytes(), "file"
        state[str(path.relative_to(root))] = (
            kind,
            info.st_mode,
            info.st_uid,
            info.st_mtime_ns,
            data,
        )
    return state
