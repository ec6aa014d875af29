"""Apply a cloud-config to a machine, in coreos-cloudinit's order.

1. hostname; 2. users (create, or set the password of an existing one);
3. SSH keys (per user, and top-level keys for ``core``); 4. files: write_files,
/etc/oem-release, /etc/coreos/update.conf, /etc/hosts, /run/flannel/options.env;
5. /etc/environment with the ``COREOS_*`` addresses; 6. units: unit files and
drop-ins (the user's, then the generated etcd/etcd2/fleet/locksmith/update
ones), mask/unmask, enable, one ``daemon-reload`` if anything changed, a
systemd-networkd restart for network units, then the unit commands in order.

Every path is under the machine's root. Files are only rewritten when their
content, mode or owner differ, so applying the same config twice changes
nothing the second time (unit commands such as ``start`` are still issued;
they are idempotent in systemd).
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from provisioner.guest.cloudinit import render, schema
from provisioner.guest.cloudinit.config import CloudConfig, EnvSection, File, Unit
from provisioner.guest.cloudinit.datasource import Metadata
from provisioner.guest.cloudinit.errors import ApplyError
from provisioner.guest.cloudinit.sshkeys import (
    AUTHORIZING_KEYS,
    CORE_USER,
    DEFAULT_SSH_KEY_NAME,
    key_paths,
    keys_lock,
    updated_key_files,
)
from provisioner.guest.cloudinit.system import Host, Systemd, Users
from provisioner.guest.cloudinit.userdata import Addresses

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "/var/lib/coreos-cloudinit"
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)


@dataclass(frozen=True)
class Machine:
    """Where and through what the config is applied."""

    root: Path
    systemd: Systemd
    users: Users
    host: Host


def machine_path(path: str) -> str:
    """``path`` made absolute and normalised; ``..`` cannot climb above ``/``."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


class FileWriter:
    """Writes files under a root, atomically and only when something differs.

    ``changed`` lists the paths (as given, root-relative) that were modified.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.changed: list[str] = []

    def path(self, path: str) -> Path:
        """``path`` (absolute in the machine) under the root, without escaping it."""
        return self.root / machine_path(path).lstrip("/")

    def read(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        """Whether anything (even a dangling symlink) is at ``path``."""
        return os.path.lexists(self.path(path))

    def ensure_dir(self, path: str, mode: int = 0o755, uid: int = -1, gid: int = -1) -> None:
        """Create a directory (and its parents, 0755) and give it ``mode`` and owner."""
        target = self.path(path)
        if not target.is_dir():
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            self._note(path)
        info = target.stat()
        if stat.S_IMODE(info.st_mode) != mode:
            target.chmod(mode)
            self._note(path)
        if _owner_differs(info, uid, gid):
            os.chown(target, uid, gid)
            self._note(path)

    def write(
        self, path: str, data: bytes, mode: int = 0o644, uid: int = -1, gid: int = -1
    ) -> bool:
        """Replace the file with ``data`` unless it already matches; True when written."""
        target = self.path(path)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if _up_to_date(target, data, mode, uid, gid):
            return False
        fd, name = tempfile.mkstemp(prefix=".cloudinit-", dir=target.parent)
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                os.fchmod(handle.fileno(), mode)
                if uid != -1 or gid != -1:
                    os.fchown(handle.fileno(), uid, gid)
            temporary.replace(target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._note(path)
        return True

    def symlink(self, path: str, destination: str) -> bool:
        """Make ``path`` a symlink to ``destination``, replacing what is there."""
        target = self.path(path)
        if target.is_symlink() and str(target.readlink()) == destination:
            return False
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if os.path.lexists(target):
            target.unlink()
        target.symlink_to(destination)
        self._note(path)
        return True

    def remove_symlink_to(self, path: str, destination: str) -> bool:
        """Remove ``path`` if it is a symlink to ``destination``; True when removed."""
        target = self.path(path)
        if target.is_symlink() and str(target.readlink()) == destination:
            target.unlink()
            self._note(path)
            return True
        return False

    def _note(self, path: str) -> None:
        if path not in self.changed:
            self.changed.append(path)


def _owner_differs(info: os.stat_result, uid: int, gid: int) -> bool:
    return uid not in (-1, info.st_uid) or gid not in (-1, info.st_gid)


def _up_to_date(target: Path, data: bytes, mode: int, uid: int, gid: int) -> bool:
    try:
        info = target.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != mode:
        return False
    if _owner_differs(info, uid, gid) or info.st_size != len(data):
        return False
    return target.read_bytes() == data


def with_metadata(config: CloudConfig, metadata: Metadata) -> CloudConfig:
    """Merge datasource metadata: its hostname when user-data has none, its SSH keys appended."""
    hostname = config.hostname
    if metadata.hostname and not hostname:
        hostname = metadata.hostname
    elif metadata.hostname and metadata.hostname != hostname:
        log.warning(
            "Warning: user-data hostname %s overrides metadata hostname %s",
            hostname,
            metadata.hostname,
        )
    return replace(
        config,
        hostname=hostname,
        ssh_authorized_keys=config.ssh_authorized_keys + metadata.public_keys,
    )


@dataclass
class _Run:
    """One application of a config: the machine, its file writer and options."""

    machine: Machine
    files: FileWriter
    ssh_key_name: str
    keys: dict[str, list[str]] = field(default_factory=dict)


def apply_cloud_config(
    config: CloudConfig,
    machine: Machine,
    addresses: Addresses,
    *,
    ssh_key_name: str = DEFAULT_SSH_KEY_NAME,
) -> list[str]:
    """Apply ``config``; returns the paths it changed (empty when already applied)."""
    if not ssh_key_name or "/" in ssh_key_name or ssh_key_name in (".", ".."):
        raise ApplyError(
            f"invalid SSH key name {ssh_key_name!r}",
            hint="use a plain name such as coreos-cloudinit",
        )
    run = _Run(machine, FileWriter(machine.root), ssh_key_name)
    _apply_hostname(run, config.hostname)
    _apply_users(run, config)
    _apply_ssh_keys(run)
    _apply_files(run, config)
    _apply_environment(run, config, addresses)
    _apply_units(run, config)
    return run.files.changed


def _apply_hostname(run: _Run, hostname: str) -> None:
    if not hostname:
        return
    run.files.write("/etc/hostname", f"{hostname}\n".encode())
    if run.machine.host.hostname() != hostname:
        run.machine.host.set_hostname(hostname)
    log.info("Set hostname to %s", hostname)


def _apply_users(run: _Run, config: CloudConfig) -> None:
    users = run.machine.users
    for user in config.users:
        if not user.name:
            log.info("User object has no 'name' field, skipping")
            continue
        account = users.lookup(user.name)
        if account is not None:
            log.info("User '%s' exists, ignoring creation-time fields", user.name)
            if user.passwd and user.passwd != account.password_hash:
                log.info("Setting '%s' user's password", user.name)
                users.set_password(user.name, user.passwd)
        else:
            log.info("Creating user '%s'", user.name)
            users.create(user)
        if user.ssh_authorized_keys:
            run.keys.setdefault(user.name, []).extend(user.ssh_authorized_keys)
    if config.ssh_authorized_keys:
        run.keys.setdefault(CORE_USER, []).extend(config.ssh_authorized_keys)


def _apply_ssh_keys(run: _Run) -> None:
    if not run.keys:
        return
    with keys_lock(str(run.machine.root)):  # lab-configdrive-keys may be writing them too
        for name, keys in run.keys.items():
            _authorize_keys(run, name, keys)
            log.info(AUTHORIZING_KEYS, len(keys), name)


def _authorize_keys(run: _Run, name: str, keys: list[str]) -> None:
    """Keep the key set in ~/.ssh/authorized_keys.d/<key name> and merge it into authorized_keys."""
    account = run.machine.users.lookup(name)
    if account is None:
        raise ApplyError(
            f"cannot authorize SSH keys for user {name!r}: no such user",
            hint=f"add {name!r} under users: or create it in the image",
        )
    uid, gid = account.uid, account.gid
    ssh, managed, authorized = key_paths(account.home, run.ssh_key_name)
    files = run.files
    files.ensure_dir(ssh, 0o700, uid, gid)
    files.ensure_dir(posixpath.dirname(managed), 0o700, uid, gid)
    new_managed, merged = updated_key_files(files.read(managed), files.read(authorized), keys)
    files.write(managed, new_managed.encode(), 0o600, uid, gid)
    files.write(authorized, merged.encode(), 0o600, uid, gid)


def _apply_files(run: _Run, config: CloudConfig) -> None:
    for item in config.write_files:
        _write_user_file(run, item)
    coreos = config.coreos
    files = run.files
    if coreos.oem.id:
        files.write("/etc/oem-release", render.oem_release(coreos.oem).encode())
    if coreos.update.values:
        render.assert_valid(EnvSection(coreos.update.values), schema.UPDATE)
        existing = files.read(render.UPDATE_CONF)
        if existing is None:
            existing = files.read(render.UPDATE_CONF_DEFAULT) or ""
        files.write(render.UPDATE_CONF, render.update_conf(coreos.update, existing).encode())
    if config.manage_etc_hosts:
        hostname = config.hostname or run.machine.host.hostname()
        files.write("/etc/hosts", render.etc_hosts(config.manage_etc_hosts, hostname).encode())
    if coreos.flannel:
        files.write(render.FLANNEL_OPTIONS, render.flannel_options(coreos.flannel).encode())


def _write_user_file(run: _Run, item: File) -> None:
    if not item.path:
        log.info("File has no 'path' field, skipping")
        return
    uid, gid = run.machine.users.resolve_owner(item.owner) if item.owner else (-1, -1)
    run.files.write(item.path, item.decoded(), item.mode(), uid, gid)
    log.info("Wrote file %s to filesystem", item.path)


def _apply_environment(run: _Run, config: CloudConfig, addresses: Addresses) -> None:
    if any(machine_path(item.path) == "/etc/environment" for item in config.write_files):
        return
    values = addresses.environment()
    if not values:
        return
    merged = render.merge_env_file(run.files.read("/etc/environment") or "", values)
    run.files.write("/etc/environment", merged.encode())


def _unit_dir(unit: Unit) -> str:
    return f"/{'run' if unit.runtime else 'etc'}/systemd/{unit.group}"


def _check_name(name: str, what: str) -> None:
    if "/" in name or name in (".", "..") or not name.strip():
        raise ApplyError(
            f"invalid {what} name {name!r}", hint="names are plain file names such as etcd2.service"
        )


def _installed(run: _Run, name: str) -> bool:
    return any(run.files.exists(posixpath.join(directory, name)) for directory in UNIT_DIRS)


def _apply_units(run: _Run, config: CloudConfig) -> None:
    render.assert_valid(config.coreos.locksmith, schema.LOCKSMITH)
    update_units = []
    for unit in render.update_units(config.coreos.update):
        if _installed(run, unit.name):
            update_units.append(unit)
        else:
            log.info("%s is not installed; ignoring it for coreos.update", unit.name)
    units = [*config.coreos.units, *render.drop_in_units(config), *update_units]
    _process_units(run, units)


def _process_units(run: _Run, units: list[Unit]) -> None:
    files, systemd = run.files, run.machine.systemd
    before = len(files.changed)
    commands: list[tuple[str, str]] = []
    restart_networkd = False
    for unit in units:
        if not unit.name:
            log.info("Skipping unit without name")
            continue
        _place_unit(run, unit)
        if unit.group == "network":
            restart_networkd = True
        elif unit.command:
            if unit.command not in schema.UNIT_COMMANDS:
                raise ApplyError(
                    f"Unsupported systemd command {unit.command!r} for unit {unit.name!r}",
                    hint="command is one of " + ", ".join(schema.UNIT_COMMANDS),
                )
            commands.append((unit.command, unit.name))
    if len(files.changed) > before:
        log.info("Reloading systemd units")
        systemd.daemon_reload()
    if restart_networkd:
        log.info("Restarting systemd-networkd")
        systemd.run_command("restart", "systemd-networkd.service")
    for command, name in commands:
        log.info("Calling unit command %r on %r", command, name)
        systemd.run_command(command, name)


def _place_unit(run: _Run, unit: Unit) -> None:
    """Write the unit and its drop-ins, mask or unmask it, enable it."""
    files = run.files
    _check_name(unit.name, "unit")
    directory = _unit_dir(unit)
    unit_path = posixpath.join(directory, unit.name)
    mask_path = posixpath.join("/etc/systemd/system", unit.name)
    if unit.content and unit.mask and unit_path == mask_path:
        log.info("Not writing unit %r: it is masked", unit.name)
    elif unit.content and files.write(unit_path, unit.content.encode()):
        log.info("Wrote unit %r", unit.name)
    for drop_in in unit.drop_ins:
        if drop_in.name and drop_in.content:
            _check_name(drop_in.name, "drop-in")
            path = posixpath.join(directory, f"{unit.name}.d", drop_in.name)
            if files.write(path, drop_in.content.encode()):
                log.info("Wrote drop-in unit %r", drop_in.name)
    if unit.mask:
        if files.symlink(mask_path, "/dev/null"):
            log.info("Masked unit %r", unit.name)
    elif unit.runtime and files.remove_symlink_to(mask_path, "/dev/null"):
        log.info("Unmasked unit %r", unit.name)
    if unit.enable and unit.group == "network":
        log.info("Skipping enable for network-like unit %r", unit.name)
    elif unit.enable:
        log.info("Enabling unit file %r", unit.name)
        run.machine.systemd.enable(unit.name, runtime=unit.runtime)


def run_script(script: str, machine: Machine, workspace: str = DEFAULT_WORKSPACE) -> str:
    """Save a user-data script in the workspace and run it as a transient unit."""
    files = FileWriter(machine.root)
    scripts = posixpath.join(workspace, "scripts")
    files.ensure_dir(scripts)
    fd, name = tempfile.mkstemp(dir=files.path(scripts))
    path = Path(name)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(script)
    path.chmod(0o744)
    unit = machine.systemd.run_script(posixpath.join(scripts, path.name))
    files.write(posixpath.join(scripts, "unit-name"), unit.encode())
    log.info("Started script %s as %s", path, unit)
    return unit
