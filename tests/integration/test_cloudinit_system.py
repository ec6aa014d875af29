"""The cloud-config agent with its real implementations, on a scratch root.

useradd/chpasswd (--prefix/--root), systemctl --root and systemd-analyze run
for real here; starting units and setting the hostname need a booted guest
and are covered by the VM tests.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.guest.cloudinit.config import User
from provisioner.guest.cloudinit.errors import ApplyError
from provisioner.guest.cloudinit.main import main
from provisioner.guest.cloudinit.system import SystemctlSystemd, SystemUsers, local_ipv4_addresses

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "cloudinit"
UNITS = REPO / "provisioner" / "guest" / "cloudinit" / "units"
SYSTEM_PYTHON = Path("/usr/bin/python3")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="useradd --prefix and chown need root")


def scratch_root(base: Path) -> Path:
    """A root with just the account files useradd and chpasswd need."""
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nsudo:x:27:\ndocker:x:990:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\nsudo:*::\ndocker:!::\n")
    (root / "etc/shadow").chmod(0o640)
    return root


def validator_lines(stderr: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in stderr.splitlines() if " line " in line]


@pytest.mark.parametrize(
    "fixture",
    sorted(path for path in FIXTURES.iterdir() if path.suffix != ".expected"),
    ids=lambda path: path.name,
)
def test_system_python_runs_the_validator(fixture: Path) -> None:
    """The guest's bare /usr/bin/python3 (no venv, no site dirs) gives the same report."""
    result = subprocess.run(
        [
            str(SYSTEM_PYTHON),
            "-s",
            "-E",
            "-m",
            "provisioner.guest.cloudinit",
            "--validate",
            "--from-file",
            str(fixture),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    expected = fixture.with_suffix(".expected").read_text().splitlines()
    assert validator_lines(result.stderr) == expected
    assert result.returncode == (1 if expected else 0)


def test_agent_imports_nothing_beyond_stdlib_and_yaml() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import provisioner.guest.cloudinit.main\n"
        "added = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(' '.join(sorted(added - set(sys.stdlib_module_names))))\n"
    )
    result = subprocess.run(
        [str(SYSTEM_PYTHON), "-s", "-E", "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    added = set(result.stdout.split())
    # cython_runtime is loaded by PyYAML's compiled extension
    assert {"provisioner", "yaml"} <= added <= {"provisioner", "yaml", "_yaml", "cython_runtime"}


def test_validator_without_libyaml_reports_the_same_structure_problems() -> None:
    """PyYAML without its C extension composes the same nodes (only syntax messages differ)."""
    fixtures = [path for path in FIXTURES.glob("*.yaml") if path.stem != "yaml-syntax-error"]
    code = (
        "import sys\n"
        "sys.modules['yaml._yaml'] = None\n"
        "import yaml\n"
        "assert not yaml.__with_libyaml__\n"
        "from provisioner.guest.cloudinit.validate import validate\n"
        "for path in sys.argv[1:]:\n"
        "    print('==', path)\n"
        "    for report in validate(open(path).read()):\n"
        "        print(report)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, fixtures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = []
    for path in fixtures:
        expected += [f"== {path}", *path.with_suffix(".expected").read_text().splitlines()]
    assert result.stdout.splitlines() == expected


def test_local_ipv4_addresses_match_the_ip_command() -> None:
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("iproute2 is not installed")
    output = subprocess.run(
        [ip, "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True, timeout=30
    )
    expected = [line.split()[3].split("/")[0] for line in output.stdout.splitlines()]
    expected = [address for address in expected if not ipaddress.ip_address(address).is_loopback]
    assert sorted(local_ipv4_addresses()) == sorted(dict.fromkeys(expected))


@needs_root
def test_system_users_on_a_scratch_root(tmp_path: Path) -> None:
    root = scratch_root(tmp_path)
    users = SystemUsers(root)
    assert users.lookup("core") is None

    users.create(
        User(name="core", gecos="CoreOS Admin", groups=("sudo", "docker"), shell="/bin/sh")
    )
    account = users.lookup("core")
    assert account is not None
    assert (account.home, account.password_hash) == ("/home/core", "*")
    assert (root / "home/core").is_dir()
    assert (root / "home/core").stat().st_uid == account.uid
    assert "sudo:x:27:core" in (root / "etc/group").read_text()
    assert "core:x:" in (root / "etc/passwd").read_text()
    assert ":CoreOS Admin:/home/core:/bin/sh" in (root / "etc/passwd").read_text()

    users.set_password("core", "$6$salt$hash")
    changed = users.lookup("core")
    assert changed is not None
    assert changed.password_hash == "$6$salt$hash"

    assert users.resolve_owner("core:docker") == (account.uid, 990)
    assert users.resolve_owner("core") == (account.uid, -1)
    assert users.resolve_owner(":sudo") == (-1, 27)
    assert users.resolve_owner("0:0") == (0, 0)
    with pytest.raises(ApplyError, match="unknown user 'nobody-here'"):
        users.resolve_owner("nobody-here:sudo")
    with pytest.raises(ApplyError, match="unknown group 'nogroup-here'"):
        users.resolve_owner("core:nogroup-here")
    with pytest.raises(ApplyError, match=r"--password \*\*\* .*user 'core' already exists"):
        users.create(User(name="core", passwd="$6$secret$hash"))


def test_systemctl_enable_offline(tmp_path: Path) -> None:
    root = tmp_path / "root"
    unit = root / "etc/systemd/system/demo.socket"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Socket]\nListenStream=2375\n[Install]\nWantedBy=sockets.target\n")
    systemd = SystemctlSystemd(root)

    systemd.enable("demo.socket", runtime=False)
    systemd.daemon_reload()  # offline: logged, nothing to reload
    systemd.run_command("start", "demo.socket")

    link = root / "etc/systemd/system/sockets.target.wants/demo.socket"
    assert link.readlink() == Path("/etc/systemd/system/demo.socket")
    with pytest.raises(ApplyError, match="does not exist"):
        systemd.enable("missing.service", runtime=False)
    with pytest.raises(ApplyError, match="Unsupported systemd command"):
        systemd.run_command("explode", "demo.socket")


@needs_root
def test_main_applies_the_seed_to_an_offline_root(tmp_path: Path) -> None:
    root = scratch_root(tmp_path)
    SystemUsers(root).create(User(name="core", groups=("sudo",)))
    userdata = tmp_path / "user-data"
    userdata.write_text(
        "#cloud-config\n"
        "ssh_authorized_keys: [ssh-ed25519 AAAAkey lab@host]\n"
        "users:\n"
        "  - name: ops\n"
        "    passwd: $6$ops$hash\n"
        "write_files:\n"
        "  - path: /etc/lab/owned\n"
        "    owner: ops:docker\n"
        "    permissions: '0640'\n"
        "    content: x\n"
        "coreos:\n"
        "  etcd2:\n"
        "    name: core-01\n"
        "    listen-peer-urls: http://$private_ipv4:2380\n"
        "  units:\n"
        "    - name: etcd2.service\n"
        "      command: start\n"
        "    - name: demo.socket\n"
        "      enable: true\n"
        "      content: |\n"
        "        [Socket]\n"
        "        ListenStream=2375\n"
        "        [Install]\n"
        "        WantedBy=sockets.target\n"
    )
    env = {"COREOS_PRIVATE_IPV4": "172.17.8.101"}
    os.environ.update(env)
    try:
        status = main(["--from-file", str(userdata), "--root", str(root)])
    finally:
        for key in env:
            os.environ.pop(key)

    assert status == 0
    users = SystemUsers(root)
    core, ops = users.lookup("core"), users.lookup("ops")
    assert core is not None
    assert ops is not None
    assert ops.password_hash == "$6$ops$hash"
    keys = root / "home/core/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAAkey lab@host\n"
    assert (keys.stat().st_uid, stat.S_IMODE(keys.stat().st_mode)) == (core.uid, 0o600)
    owned = (root / "etc/lab/owned").stat()
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (ops.uid, 990, 0o640)
    assert (root / "run/systemd/system/etcd2.service.d/20-cloudinit.conf").read_text() == (
        '[Service]\nEnvironment="ETCD_LISTEN_PEER_URLS=http://172.17.8.101:2380"\nEnvironment="ETCD_NAME=core-01"\n'
    )
    assert (root / "etc/systemd/system/sockets.target.wants/demo.socket").is_symlink()
    assert main(["--from-file", str(userdata), "--root", str(root)]) == 0


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not Path("/usr/lib/systemd/system").is_dir():
        pytest.skip("systemd-analyze and the systemd unit set are needed")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    for command in ("coreos-cloudinit", "lab-configdrive-keys"):
        binary = root / "usr/bin" / command
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    target = root / "etc/systemd/system"
    shutil.copytree(UNITS, target)
    units = sorted(str(path) for path in target.iterdir())
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", *units],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
