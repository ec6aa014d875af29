"""SSH keys for a user: the managed key set, and the config drive's keys at first sight.

coreos-cloudinit keeps the keys it manages in ``~/.ssh/authorized_keys.d/<name>``
and merges them into ``~/.ssh/authorized_keys``, leaving other lines alone.

``lab-configdrive-keys`` (this module's :func:`main`, run by
``lab-configdrive-keys.service`` as soon as the config drive appears) does the
first part of that for the drive's ``meta_data.json`` ``public_keys`` only,
before the agent has even loaded: the agent needs many seconds to start on an
emulated guest, and until a key is there every login try (Vagrant makes one
every couple of seconds) is a whole SSH handshake refused at the end, paid for
by a guest that is still booting. The agent then writes the same file again,
with the user-data's keys added, under the same name. The two run side by side
(the agent's start is not held up); :func:`keys_lock` keeps them from writing at
once.

Standard library only, and little of it: this runs while the guest boots, when
importing ``pathlib`` or ``tempfile`` costs an emulated guest a good part of a
second, so plain ``os`` functions do the file work.
"""

# ruff: noqa: PTH102, PTH103, PTH105, PTH106, PTH108, PTH110, PTH112, PTH118, PTH120, PTH123

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence

# On the console too: lab waits for it before it tries to log in (provisioner.remote.hostkeys).
AUTHORIZING_KEYS = "Authorizing %d SSH keys for user '%s'"
DEFAULT_SSH_KEY_NAME = "coreos-cloudinit"
CORE_USER = "core"
METADATA = "openstack/latest/meta_data.json"
MOUNT_POINT = "/run/lab-configdrive-keys"
LOCK_FILE = "run/lock/lab-authorized-keys.lock"  # under the machine's root


@contextlib.contextmanager
def keys_lock(root: str = "/") -> Iterator[None]:
    """Held while a user's key files are read and rewritten (by this step or the agent)."""
    path = os.path.join(root, LOCK_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def key_paths(home: str, name: str) -> tuple[str, str, str]:
    """An account's ``.ssh`` directory, its managed key set ``authorized_keys.d/<name>``
    and its ``authorized_keys``: where this step and the agent both keep the keys."""
    ssh = os.path.join(home, ".ssh")
    return ssh, os.path.join(ssh, "authorized_keys.d", name), os.path.join(ssh, "authorized_keys")


def updated_key_files(
    managed: str | None, authorized: str | None, keys: Iterable[str]
) -> tuple[str, str]:
    """The new managed key set and authorized_keys once ``keys`` are the managed set
    (``managed`` and ``authorized``: the files' current text, None if missing)."""
    wanted = list(dict.fromkeys(key.strip() for key in keys if key.strip()))
    previous = (managed or "").splitlines()
    merged = merge_authorized_keys(authorized or "", previous, wanted)
    return "".join(key + "\n" for key in wanted), merged


def merge_authorized_keys(existing: str, previous: Iterable[str], keys: Iterable[str]) -> str:
    """authorized_keys with the managed key set replaced and other lines kept.

    ``previous`` is what this agent managed last time (lines it may remove),
    ``keys`` what it manages now (appended when missing).
    """
    wanted = list(dict.fromkeys(key.strip() for key in keys if key.strip()))
    stale = {key.strip() for key in previous} - set(wanted)
    lines = [line for line in existing.splitlines() if line.strip() not in stale]
    present = {line.strip() for line in lines}
    lines.extend(key for key in wanted if key not in present)
    return "".join(line + "\n" for line in lines)


def metadata_public_keys(text: str) -> list[str]:
    """The ``public_keys`` of an OpenStack ``meta_data.json``, by key name (as the agent
    orders them); nothing for anything that is not such a document."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    keys = data.get("public_keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict):
        return []
    return [str(keys[name]).strip() for name in sorted(keys) if str(keys[name]).strip()]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(path: str, text: str, uid: int, gid: int) -> None:
    """Replace ``path`` atomically with ``text`` (mode 0600, owned by uid:gid)."""
    tmp = f"{path}.lab-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchown(handle.fileno(), uid, gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ensure_dir(path: str, uid: int, gid: int) -> None:
    if not os.path.isdir(path):
        os.mkdir(path, 0o700)
        os.chown(path, uid, gid)


def authorize(home: str, uid: int, gid: int, keys: Sequence[str], name: str) -> None:
    """Make ``keys`` the managed set ``name`` of the account at ``home``, merged into
    its authorized_keys (what the agent does for each user's keys)."""
    ssh, managed, authorized = key_paths(home, name)
    _ensure_dir(ssh, uid, gid)
    _ensure_dir(os.path.dirname(managed), uid, gid)
    new_managed, new_authorized = updated_key_files(_read(managed), _read(authorized), keys)
    _write(managed, new_managed, uid, gid)
    _write(authorized, new_authorized, uid, gid)


def _drive_metadata(device: str, target: str = MOUNT_POINT) -> str | None:
    """``meta_data.json`` of the config drive at ``device`` (mounted read-only for it)."""
    os.makedirs(target, mode=0o700, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-o", "ro", device, target],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if mounted.returncode != 0:
            print(f"cannot mount {device}: {mounted.stderr.strip()}", file=sys.stderr)
            return None
        try:
            return _read(os.path.join(target, METADATA))
        finally:
            subprocess.run(["umount", target], check=False, capture_output=True, timeout=60)
    finally:
        os.rmdir(target)


def main(argv: Sequence[str] | None = None) -> int:
    """``lab-configdrive-keys DEVICE``: authorize the drive's public keys for core.

    Nothing to do (no drive, no keys, no core user) is not an error: the agent
    applies the whole config later and reports what is wrong with it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: lab-configdrive-keys DEVICE", file=sys.stderr)
        return 2
    text = _drive_metadata(args[0])
    keys = metadata_public_keys(text or "")
    if not keys:
        print(f"no public keys in {args[0]}'s {METADATA}")
        return 0
    try:
        account = pwd.getpwnam(CORE_USER)
    except KeyError:
        print(f"no user {CORE_USER!r} to authorize keys for")
        return 0
    with keys_lock():
        authorize(account.pw_dir, account.pw_uid, account.pw_gid, keys, DEFAULT_SSH_KEY_NAME)
    print(AUTHORIZING_KEYS % (len(keys), CORE_USER), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
