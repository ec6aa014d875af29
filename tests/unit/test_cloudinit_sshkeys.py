"""The SSH key set: merged into authorized_keys, and the config drive's keys at first sight."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provisioner.guest.cloudinit.sshkeys import (
    DEFAULT_SSH_KEY_NAME,
    authorize,
    keys_lock,
    merge_authorized_keys,
    metadata_public_keys,
)

pytestmark = pytest.mark.unit

LAB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab lab"
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIuser user@laptop"


def test_public_keys_come_from_meta_data_in_key_name_order() -> None:
    meta = json.dumps({"public_keys": {"b": USER_KEY, "a": LAB_KEY + "\n", "c": " "}})
    assert metadata_public_keys(meta) == [LAB_KEY, USER_KEY]
    assert metadata_public_keys('{"public_keys": ["not", "a", "map"]}') == []
    assert metadata_public_keys("[]") == []
    assert metadata_public_keys("not json") == []


def test_the_drive_keys_land_where_the_agent_keeps_them(tmp_path: Path) -> None:
    home = tmp_path / "core"
    home.mkdir()
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text("ssh-rsa AAAAB3 someone-elses\n")
    authorize(str(home), os.getuid(), os.getgid(), [LAB_KEY], DEFAULT_SSH_KEY_NAME)

    managed = home / ".ssh" / "authorized_keys.d" / DEFAULT_SSH_KEY_NAME
    assert managed.read_text() == LAB_KEY + "\n"
    authorized = home / ".ssh" / "authorized_keys"
    assert authorized.read_text() == f"ssh-rsa AAAAB3 someone-elses\n{LAB_KEY}\n"
    for path in (managed, authorized):
        assert path.stat().st_mode & 0o777 == 0o600
    assert (home / ".ssh" / "authorized_keys.d").stat().st_mode & 0o777 == 0o700

    # then the agent: the user-data's keys join the drive's; nothing is doubled
    authorize(str(home), os.getuid(), os.getgid(), [USER_KEY, LAB_KEY], DEFAULT_SSH_KEY_NAME)
    assert authorized.read_text() == f"ssh-rsa AAAAB3 someone-elses\n{LAB_KEY}\n{USER_KEY}\n"
    assert sorted(p.name for p in (home / ".ssh").iterdir()) == [
        "authorized_keys",
        "authorized_keys.d",
    ]


def test_a_fresh_home_gets_its_ssh_directory(tmp_path: Path) -> None:
    authorize(str(tmp_path), os.getuid(), os.getgid(), [LAB_KEY], "coreos-cloudinit")
    assert (tmp_path / ".ssh").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / ".ssh" / "authorized_keys").read_text() == LAB_KEY + "\n"
    assert merge_authorized_keys(LAB_KEY + "\n", [LAB_KEY], []) == ""


def test_the_key_files_are_written_under_one_lock(tmp_path: Path) -> None:
    import fcntl
    import threading

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with keys_lock(str(tmp_path)):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    lock = tmp_path / "run" / "lock" / "lab-authorized-keys.lock"
    with lock.open("r+") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        release.set()
        holder.join(10)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
