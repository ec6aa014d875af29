"""The agent's side effects on the machine, behind small protocols.

:class:`Systemd` (systemctl), :class:`Users` (the passwd database, useradd,
chpasswd) and :class:`Host` (the kernel hostname) are all the agent needs
beyond writing files under its root. The real implementations here call the
tools with argument lists; with a root other than ``/`` they work offline on
that tree (``systemctl --root``, ``useradd --prefix``) and skip what needs a
running system.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provisioner.guest.cloudinit.config import User
from provisioner.guest.cloudinit.errors import ApplyError

log = logging.getLogger(__name__)

#: systemctl verbs for coreos-cloudinit's unit commands.
SYSTEMCTL_VERBS = {
    "start": "start",
    "stop": "stop",
    "restart": "restart",
    "reload": "reload",
    "try-restart": "try-restart",
    "reload-or-restart": "reload-or-restart",
    "reload-or-try-restart": "try-reload-or-restart",
}

SCRIPT_DESCRIPTION = "Unit generated and executed by coreos-cloudinit on behalf of user"


class Systemd(Protocol):
    """The systemd operations the agent performs."""

    def daemon_reload(self) -> None:
        """Reload unit files."""

    def enable(self, unit: str, *, runtime: bool) -> None:
        """Enable a unit (its [Install] section), in /run when ``runtime``."""

    def run_command(self, command: str, unit: str) -> None:
        """Queue ``start``/``stop``/... (see :data:`SYSTEMCTL_VERBS`) without waiting for it."""

    def run_script(self, path: str) -> str:
        """Run ``/bin/bash path`` as a transient unit; returns the unit's name."""


@dataclass(frozen=True)
class Account:
    """A user account as the passwd and shadow files hold it."""

    name: str
    uid: int
    gid: int
    home: str
    password_hash: str | None = None


class Users(Protocol):
    """The user database operations the agent performs."""

    def lookup(self, name: str) -> Account | None:
        """The account called ``name``, or None."""

    def create(self, user: User) -> None:
        """Create the account (``useradd``) with the user's creation-time fields."""

    def set_password(self, name: str, password_hash: str) -> None:
        """Set an account's password hash (``chpasswd -e``)."""

    def resolve_owner(self, owner: str) -> tuple[int, int]:
        """``user``, ``user:group`` or ``:group`` as (uid, gid); -1 for "leave as is"."""


class Host(Protocol):
    """The running machine's identity."""

    def hostname(self) -> str:
        """The current hostname."""

    def set_hostname(self, name: str) -> None:
        """Set the running system's hostname."""


def _run(args: list[str], *, stdin: str | None = None) -> None:
    shown = " ".join(
        "***" if previous == "--password" else arg
        for previous, arg in zip(["", *args], args, strict=False)
    )
    try:
        subprocess.run(args, input=stdin, check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ApplyError(
            f"{args[0]} is not installed", hint=f"install the package providing {args[0]}"
        ) from None
    except subprocess.TimeoutExpired:
        raise ApplyError(f"{shown} did not finish within 120 s") from None
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()
        raise ApplyError(f"{shown} failed (exit {exc.returncode}): {detail}") from None


class SystemctlSystemd:
    """:class:`Systemd` through ``systemctl`` and ``systemd-run``."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self.live = root.resolve() == Path("/")

    def daemon_reload(self) -> None:
        if not self.live:
            log.info("Not reloading systemd: %s is not the running system", self.root)
            return
        _run(["systemctl", "daemon-reload"])

    def enable(self, unit: str, *, runtime: bool) -> None:
        args = ["systemctl"]
        if not self.live:
            args.append(f"--root={self.root}")
        args.append("enable")
        if runtime:
            args.append("--runtime")
        _run([*args, "--", unit])

    def run_command(self, command: str, unit: str) -> None:
        verb = SYSTEMCTL_VERBS.get(command)
        if verb is None:
            raise ApplyError(f"Unsupported systemd command {command!r} for {unit}")
        if not self.live:
            log.info("Not running %s %s: %s is not the running system", command, unit, self.root)
            return
        _run(["systemctl", "--no-block", verb, "--", unit])

    def run_script(self, path: str) -> str:
        name = f"coreos-cloudinit-{Path(path).name}.service"
        if not self.live:
            log.info("Not running script %s: %s is not the running system", path, self.root)
            return name
        _run(
            [
                "systemd-run",
                "--no-block",
                f"--unit={name}",
                f"--description={SCRIPT_DESCRIPTION}",
                "/bin/bash",
                path,
            ]
        )
        return name


def _read_table(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, PermissionError):
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


class SystemUsers:
    """:class:`Users` on the passwd/shadow/group files under ``root``.

    Lookups read the files directly; changes go through ``useradd --prefix``
    and ``chpasswd --root`` when ``root`` is not ``/``.
    """

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self.live = root.resolve() == Path("/")

    def lookup(self, name: str) -> Account | None:
        for row in _read_table(self.root / "etc/passwd"):
            if len(row) >= 6 and row[0] == name:
                shadow = next(
                    (s for s in _read_table(self.root / "etc/shadow") if s[0] == name), None
                )
                password = shadow[1] if shadow is not None and len(shadow) > 1 else None
                return Account(name, int(row[2]), int(row[3]), row[5], password)
        return None

    def create(self, user: User) -> None:
        args = ["useradd"]
        if not self.live:
            args += ["--prefix", str(self.root)]
        args += ["--password", user.passwd or "*"]
        if user.gecos:
            args += ["--comment", user.gecos]
        if user.homedir:
            args += ["--home-dir", user.homedir]
        args.append("--no-create-home" if user.no_create_home else "--create-home")
        if user.primary_group:
            args += ["--gid", user.primary_group]
        if user.groups:
            args += ["--groups", ",".join(user.groups)]
        if user.no_user_group:
            args.append("--no-user-group")
        if user.system:
            args.append("--system")
        if user.no_log_init:
            args.append("--no-log-init")
        if user.shell:
            args += ["--shell", user.shell]
        _run([*args, "--", user.name])

    def set_password(self, name: str, password_hash: str) -> None:
        args = ["chpasswd", "--encrypted"]
        if not self.live:
            args += ["--root", str(self.root)]
        _run(args, stdin=f"{name}:{password_hash}\n")

    def resolve_owner(self, owner: str) -> tuple[int, int]:
        user, _, group = owner.partition(":")
        uid = self._user_id(user, owner) if user else -1
        gid = self._group_id(group, owner) if group else -1
        return uid, gid

    def _user_id(self, user: str, owner: str) -> int:
        if user.isdigit():
            return int(user)
        account = self.lookup(user)
        if account is None:
            raise ApplyError(f"unknown user {user!r} in owner {owner!r}")
        return account.uid

    def _group_id(self, group: str, owner: str) -> int:
        if group.isdigit():
            return int(group)
        for row in _read_table(self.root / "etc/group"):
            if len(row) >= 3 and row[0] == group:
                return int(row[2])
        raise ApplyError(f"unknown group {group!r} in owner {owner!r}")


class KernelHost:
    """:class:`Host` on the running kernel; offline (root not ``/``) it only logs."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.live = root.resolve() == Path("/")

    def hostname(self) -> str:
        return socket.gethostname()

    def set_hostname(self, name: str) -> None:
        if not self.live:
            log.info("Not setting the running hostname to %s: offline root", name)
            return
        try:
            socket.sethostname(name)
        except OSError as exc:
            raise ApplyError(f"cannot set hostname to {name!r}: {exc}") from None


_SIOCGIFADDR = 0x8915


def local_ipv4_addresses() -> list[str]:
    """IPv4 addresses of the network interfaces, in interface order, loopback excluded."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # interface without an IPv4 address
            address = socket.inet_ntoa(reply[20:24])
            if not address.startswith("127."):
                found.append(address)
    return found
