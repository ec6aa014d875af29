"""The default box on real guests: two TCG guests from one box, checked over SSH.

Guest 1 gets the cloud-config fixture; guest 2 the same with its own name. The
host keys are pinned from each guest's serial console, never trusted on first
use. On failure the console logs' paths are printed (pytest keeps its tmp dirs).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.box.build import BuiltBox, build_box
from provisioner.errors import LabError, RemoteError
from provisioner.guest.cloudinit.validate import validate
from provisioner.remote.hostkeys import sha256_fingerprint
from provisioner.remote.ssh import SSHRunner
from tests.qemu_support import GuestSpec, QemuGuest

pytestmark = pytest.mark.vm

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "box" / "vm-user-data.yaml"
BOOT_TIMEOUT = 420.0  # two guests under TCG on two shared cores
LOGIN_TIMEOUT = 180.0  # from SSH banner to cloud-config's key being accepted


@dataclass
class Booted:
    guest: QemuGuest
    pins: dict[str, str]
    runner: SSHRunner
    boot_seconds: float


def user_data(hostname: str, public_key: str) -> str:
    data: dict[str, Any] = yaml.safe_load(FIXTURE.read_text())
    data["hostname"] = hostname
    data["ssh_authorized_keys"] = [public_key]
    data["coreos"]["etcd2"]["name"] = hostname
    text = "#cloud-config\n" + yaml.safe_dump(data, sort_keys=False)
    errors = [r for r in validate(text) if r.kind == "error"]
    assert errors == [], f"the fixture is not valid cloud-config: {errors}"
    return text


def wait_for_login(guest: QemuGuest, runner: SSHRunner, timeout: float) -> None:
    """SSH answers before cloud-config has installed the key: retry until it is accepted."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            runner.run(["true"], timeout=30)
        except RemoteError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{guest.spec.name}: no SSH login with the cloud-config key within "
                    f"{timeout:.0f}s ({exc}); console: {guest.console_log}"
                ) from exc
            runner.close()
            time.sleep(3)
        else:
            return


def make_guest(box: BuiltBox, workdir: Path, name: str, key: Path) -> QemuGuest:
    public = key.with_suffix(".pub").read_text().strip()
    # the key in the drive's metadata too, as lab's config drives carry it
    meta = json.dumps({"uuid": name, "public_keys": {"lab": public}}) + "\n"
    text = user_data(name, public)
    spec = GuestSpec(image=box.image, workdir=workdir, name=name, user_data=text, meta_data=meta)
    return QemuGuest(spec)


def boot(guest: QemuGuest, key: Path) -> Booted:
    guest.start()
    seconds = guest.wait_for_ssh_banner(BOOT_TIMEOUT)
    pins = guest.wait_for_host_keys(30)
    runner = SSHRunner(
        guest.spec.name, "127.0.0.1", private_key=key, pinned_host_keys=pins, port=guest.ssh_port
    )
    wait_for_login(guest, runner, LOGIN_TIMEOUT)
    return Booted(guest, pins, runner, seconds)


@pytest.fixture(scope="module")
def box() -> BuiltBox:
    return build_box("default", add_to_vagrant=False)


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "box-vm-test", "-f", str(key)],
        check=True,
        timeout=60,
    )
    return key


@pytest.fixture(scope="module")
def guests(
    box: BuiltBox, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Booted, Booted]]:
    """Boot both guests at once; always stop them, and name the console logs on failure."""
    workdir = tmp_path_factory.mktemp("guests")
    machines = [make_guest(box, workdir, name, ssh_key) for name in ("box-vm-1", "box-vm-2")]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(boot, machine, ssh_key) for machine in machines]
        booted, failures = [], []
        for future in futures:
            try:
                booted.append(future.result())
            except (LabError, AssertionError) as exc:
                failures.append(str(exc))
        if failures:
            logs = "".join(f"\nconsole log: {m.console_log}" for m in machines)
            pytest.fail("; ".join(failures) + logs)
        yield booted[0], booted[1]
        for one in booted:
            one.runner.close()
    finally:
        for machine in machines:
            machine.stop()


def run(booted: Booted, command: list[str], timeout: float = 120) -> str:
    result = booted.runner.run(command, timeout=timeout)
    assert result.rc == 0, (command, result.stdout, result.stderr)
    return result.stdout


def eventually(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout:.0f}s")
        time.sleep(2)


def test_box_guest_applies_cloud_config_and_runs_its_services(
    guests: tuple[Booted, Booted], ssh_key: Path
) -> None:
    first, second = guests
    problems: list[str] = []

    def check(label: str, body: Callable[[], None]) -> None:
        try:
            body()
        except (AssertionError, LabError) as exc:
            problems.append(f"{label}: {exc}")

    def hostname() -> None:
        assert run(first, ["hostname"]).strip() == "box-vm-1"
        assert run(second, ["hostname"]).strip() == "box-vm-2"

    def written_file() -> None:
        assert run(first, ["cat", "/etc/lab-box-test"]) == "written by cloud-config\n"

    def enabled_unit() -> None:
        # the agent starts units after it wrote files; a login can come before that
        def active() -> bool:
            state = first.runner.run(["systemctl", "is-active", "box-hello.service"], timeout=60)
            return state.stdout.strip() == "active"

        eventually("box-hello.service started by the cloud-config agent", active, 120)
        assert run(first, ["systemctl", "is-enabled", "box-hello.service"]).strip() == "enabled"

    def etcd_single_member() -> None:
        def listed() -> bool:
            result = first.runner.run(["etcdctl", "member", "list"], timeout=60)
            return result.rc == 0 and ", started, box-vm-1," in result.stdout

        eventually("etcd lists a started member box-vm-1", listed, 120)
        members = run(first, ["etcdctl", "member", "list"]).strip().splitlines()
        assert len(members) == 1, members
        assert run(first, ["systemctl", "is-active", "etcd2.service"]).strip() == "active"
        assert run(first, ["systemctl", "is-active", "etcd-member.service"]).strip() == "active"
        debian_unit = first.runner.run(["systemctl", "is-enabled", "etcd.service"], timeout=60)
        assert debian_unit.stdout.strip() == "disabled"  # exit status 1 means "not enabled"

    def docker_busybox() -> None:
        # as on CoreOS, docker.socket listens from boot and the first use starts docker
        idle = first.runner.run(["systemctl", "is-active", "docker.service"], timeout=60)
        assert idle.stdout.strip() == "inactive"
        assert run(first, ["systemctl", "is-active", "docker.socket"]).strip() == "active"
        out = run(first, ["docker", "run", "--rm", "busybox", "echo", "hi"], timeout=300)
        assert out == "hi\n"

        def docker_active() -> bool:
            state = first.runner.run(["systemctl", "is-active", "docker.service"], timeout=60)
            return state.stdout.strip() == "active"

        # dockerd answers on the socket systemd handed it a moment before it tells
        # systemd it is ready
        eventually("docker.service active after its first use", docker_active, 60)

    def machine_ids() -> None:
        ids = [run(g, ["cat", "/etc/machine-id"]).strip() for g in (first, second)]
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
        assert ids[0] != ids[1]

    def host_keys() -> None:
        for booted in (first, second):
            assert "ED25519" in booted.pins
            presented = booted.runner.known_hosts_entry().split()
            assert sha256_fingerprint(base64.b64decode(presented[2])) in booted.pins.values()
            on_disk = run(booted, ["ssh-keygen", "-l", "-f", "/etc/ssh/ssh_host_ed25519_key.pub"])
            assert on_disk.split()[1] == booted.pins["ED25519"]
        wrong = SSHRunner(  # the first guest's pins must not open the second guest
            "box-vm-2-wrong-pins",
            "127.0.0.1",
            private_key=ssh_key,
            pinned_host_keys=first.pins,
            port=second.guest.ssh_port,
        )
        try:
            with pytest.raises(RemoteError, match="does not match the pinned"):
                wrong.run(["true"], timeout=30)
        finally:
            wrong.close()

    def image_hygiene() -> None:
        assert run(first, ["sudo", "-n", "true"]) == ""
        config = run(first, ["sudo", "sshd", "-T"])
        assert "passwordauthentication no" in config
        lists = run(first, ["ls", "/var/lib/apt/lists"]).split()
        assert set(lists) <= {"lock", "partial"}, lists
        keys = run(first, ["cat", "/home/core/.ssh/authorized_keys"])
        assert ssh_key.with_suffix(".pub").read_text().split()[1] in keys
        assert "vagrant" not in keys.lower()

    def drive_keys_first() -> None:
        # the config drive's keys are authorized by the early step beside the agent
        unit = "lab-configdrive-keys.service"
        journal = run(first, ["journalctl", "-b", "-o", "cat", "-u", unit])
        assert re.search(r"Authorizing [1-9]\d* SSH keys for user 'core'", journal), journal
        result = run(first, ["systemctl", "show", "-P", "Result", unit]).strip()
        assert result == "success", result
        managed = run(first, ["cat", "/home/core/.ssh/authorized_keys.d/coreos-cloudinit"])
        assert ssh_key.with_suffix(".pub").read_text().split()[1] in managed

    for label, body in [
        ("config drive keys first", drive_keys_first),
        ("hostname", hostname),
        ("write_files", written_file),
        ("enabled unit", enabled_unit),
        ("etcd2", etcd_single_member),
        ("docker busybox", docker_busybox),
        ("machine-id", machine_ids),
        ("host keys", host_keys),
        ("image hygiene", image_hygiene),
    ]:
        check(label, body)
    if problems:
        logs = "\n".join(f"console log: {g.guest.console_log}" for g in guests)
        pytest.fail("\n".join(problems) + "\n" + logs)
