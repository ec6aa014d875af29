"""Applying cloud-config to a scratch root: exact files, modes, owners and systemd calls."""

from __future__ import annotations

import base64
import gzip
import stat
from pathlib import Path

import pytest

from provisioner.guest.cloudinit.apply import apply_cloud_config, run_script, with_metadata
from provisioner.guest.cloudinit.config import parse_cloud_config
from provisioner.guest.cloudinit.datasource import Metadata
from provisioner.guest.cloudinit.errors import CloudInitError
from provisioner.guest.cloudinit.system import Account
from provisioner.guest.cloudinit.userdata import Addresses, substitute
from tests.cloudinit_support import GID, UID, core_account, fake_machine, snapshot

ADDRESSES = Addresses(public_ipv4="172.17.8.101", private_ipv4="172.17.8.101")

SEED = """#cloud-config
hostname: core-01
ssh_authorized_keys:
  - ssh-ed25519 AAAAtop top@host
users:
  - name: ops
    groups: [sudo]
    ssh_authorized_keys:
      - ssh-rsa AAAAops ops@host
write_files:
  - path: /etc/lab/secret
    permissions: '0600'
    owner: ops:ops
    content: |
      s3cret
  - path: /opt/bin/tool
    permissions: 0755
    encoding: gzip+base64
    content: GZIPPED
coreos:
  etcd2:
    name: core-01
    advertise-client-urls: http://$public_ipv4:2379
    initial-advertise-peer-urls: http://$private_ipv4:2380
    listen-client-urls: http://0.0.0.0:2379,http://0.0.0.0:4001
    listen-peer-urls: http://$private_ipv4:2380
    initial-cluster: core-01=http://$private_ipv4:2380
  fleet:
    public-ip: $public_ipv4
    metadata: region=us-west
  flannel:
    interface: $public_ipv4
  units:
    - name: etcd2.service
      command: start
    - name: fleet.service
      command: start
    - name: flanneld.service
      drop-ins:
        - name: 50-network-config.conf
          content: |
            [Service]
            ExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config NETWORK
      command: start
    - name: docker-tcp.socket
      command: start
      enable: true
      content: |
        [Socket]
        ListenStream=2375

        [Install]
        WantedBy=sockets.target
""".replace("GZIPPED", base64.b64encode(gzip.compress(b"#!/bin/sh\necho tool\n")).decode()).replace(
    "NETWORK", """'{ "Network": "10.1.0.0/16" }'"""
)


def seed_config() -> str:
    return substitute(SEED, ADDRESSES.substitutions())


def read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text()


def mode(root: Path, path: str) -> int:
    return stat.S_IMODE((root / path.lstrip("/")).lstat().st_mode)


def owner(root: Path, path: str) -> tuple[int, int]:
    info = (root / path.lstrip("/")).lstat()
    return info.st_uid, info.st_gid


@pytest.mark.unit
def test_seed_config_writes_exact_files(tmp_path: Path) -> None:
    machine, _, _, host = fake_machine(tmp_path, core_account())
    apply_cloud_config(parse_cloud_config(seed_config()), machine, ADDRESSES)

    assert read(tmp_path, "/etc/hostname") == "core-01\n"
    assert host.set_calls == ["core-01"]
    assert read(tmp_path, "/run/systemd/system/etcd2.service.d/20-cloudinit.conf") == (
        "[Service]\n"
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.101:2379"\n'
        'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://172.17.8.101:2380"\n'
        'Environment="ETCD_INITIAL_CLUSTER=core-01=http://172.17.8.101:2380"\n'
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001"\n'
        'Environment="ETCD_LISTEN_PEER_URLS=http://172.17.8.101:2380"\n'
        'Environment="ETCD_NAME=core-01"\n'
    )
    assert read(tmp_path, "/run/systemd/system/fleet.service.d/20-cloudinit.conf") == (
        '[Service]\nEnvironment="FLEET_METADATA=region=us-west"\nEnvironment="FLEET_PUBLIC_IP=172.17.8.101"\n'
    )
    assert read(tmp_path, "/run/flannel/options.env") == "FLANNELD_IFACE=172.17.8.101"
    assert read(tmp_path, "/etc/systemd/system/flanneld.service.d/50-network-config.conf") == (
        "[Service]\n"
        "ExecStartPre=/usr/bin/etcdctl set /coreos.com/network/config "
        '\'{ "Network": "10.1.0.0/16" }\'\n'
    )
    assert read(tmp_path, "/etc/systemd/system/docker-tcp.socket") == (
        "[Socket]\nListenStream=2375\n\n[Install]\nWantedBy=sockets.target\n"
    )
    for path in (
        "/run/systemd/system/etcd2.service.d/20-cloudinit.conf",
        "/run/flannel/options.env",
        "/etc/systemd/system/docker-tcp.socket",
    ):
        assert mode(tmp_path, path) == 0o644
    assert not (tmp_path / "etc/systemd/system/etcd2.service").exists()
    assert read(tmp_path, "/etc/environment") == (
        "COREOS_PRIVATE_IPV4=172.17.8.101\nCOREOS_PUBLIC_IPV4=172.17.8.101\n"
    )


@pytest.mark.unit
def test_write_files_modes_owners_and_encodings(tmp_path: Path) -> None:
    machine, _, _, _ = fake_machine(tmp_path, core_account())
    apply_cloud_config(parse_cloud_config(seed_config()), machine, ADDRESSES)

    assert read(tmp_path, "/etc/lab/secret") == "s3cret\n"
    assert mode(tmp_path, "/etc/lab/secret") == 0o600
    assert owner(tmp_path, "/etc/lab/secret") == (UID, GID)
    assert read(tmp_path, "/opt/bin/tool") == "#!/bin/sh\necho tool\n"
    assert mode(tmp_path, "/opt/bin/tool") == 0o755
    assert mode(tmp_path, "/opt/bin") == 0o755
    assert not list((tmp_path / "etc/lab").glob(".cloudinit-*"))


@pytest.mark.unit
def test_users_and_ssh_keys(tmp_path: Path) -> None:
    machine, _, users, _ = fake_machine(tmp_path, core_account())
    apply_cloud_config(parse_cloud_config(seed_config()), machine, ADDRESSES)

    assert [user.name for user in users.created] == ["ops"]
    assert users.created[0].groups == ("sudo",)
    assert read(tmp_path, "/home/core/.ssh/authorized_keys") == "ssh-ed25519 AAAAtop top@host\n"
    assert (
        read(tmp_path, "/home/core/.ssh/authorized_keys.d/coreos-cloudinit")
        == "ssh-ed25519 AAAAtop top@host\n"
    )
    assert read(tmp_path, "/home/ops/.ssh/authorized_keys") == "ssh-rsa AAAAops ops@host\n"
    for path in ("/home/core/.ssh", "/home/core/.ssh/authorized_keys.d"):
        assert mode(tmp_path, path) == 0o700
        assert owner(tmp_path, path) == (UID, GID)
    for path in (
        "/home/core/.ssh/authorized_keys",
        "/home/core/.ssh/authorized_keys.d/coreos-cloudinit",
    ):
        assert mode(tmp_path, path) == 0o600
        assert owner(tmp_path, path) == (UID, GID)


@pytest.mark.unit
def test_unit_commands_run_in_order_after_one_daemon_reload(tmp_path: Path) -> None:
    machine, systemd, _, _ = fake_machine(tmp_path, core_account())
    apply_cloud_config(parse_cloud_config(seed_config()), machine, ADDRESSES)

    assert systemd.calls == [
        ("enable", "docker-tcp.socket", ""),
        ("daemon-reload",),
        ("start", "etcd2.service"),
        ("start", "fleet.service"),
        ("start", "flanneld.service"),
        ("start", "docker-tcp.socket"),
    ]


@pytest.mark.unit
def test_second_run_changes_nothing(tmp_path: Path) -> None:
    config = parse_cloud_config(seed_config())
    machine, systemd, users, host = fake_machine(tmp_path, core_account())
    first = apply_cloud_config(config, machine, ADDRESSES)
    before = snapshot(tmp_path)
    systemd.calls.clear()

    second = apply_cloud_config(config, machine, ADDRESSES)

    assert len(first) > 10
    assert second == []
    assert snapshot(tmp_path) == before
    assert ("daemon-reload",) not in systemd.calls
    assert [user.name for user in users.created] == ["ops"]
    assert users.passwords == []
    assert host.set_calls == ["core-01"]
    assert systemd.calls[-4:] == [
        ("start", "etcd2.service"),
        ("start", "fleet.service"),
        ("start", "flanneld.service"),
        ("start", "docker-tcp.socket"),
    ]


@pytest.mark.unit
def test_existing_user_gets_only_password_and_keys(tmp_path: Path) -> None:
    account = Account("ops", 4000, 4000, "/srv/ops", "$6$old$hash")
    machine, _, users, _ = fake_machine(tmp_path, account)
    text = "#cloud-config\nusers:\n  - name: ops\n    passwd: $6$new$hash\n    groups: [wheel]\n"

    apply_cloud_config(parse_cloud_config(text), machine, Addresses())
    apply_cloud_config(parse_cloud_config(text), machine, Addresses())

    assert users.created == []
    assert users.passwords == [("ops", "$6$new$hash")]


@pytest.mark.unit
def test_keys_outside_the_managed_set_are_kept(tmp_path: Path) -> None:
    machine, _, _, _ = fake_machine(tmp_path, core_account())
    keys = tmp_path / "home/core/.ssh/authorized_keys"
    keys.parent.mkdir(parents=True)
    keys.write_text("ssh-rsa VAGRANT vagrant insecure public key\n")

    apply_cloud_config(
        parse_cloud_config("#cloud-config\nssh_authorized_keys: [ssh-rsa ONE one]\n"),
        machine,
        Addresses(),
    )
    apply_cloud_config(
        parse_cloud_config("#cloud-config\nssh_authorized_keys: [ssh-rsa TWO two]\n"),
        machine,
        Addresses(),
    )

    assert keys.read_text() == "ssh-rsa VAGRANT vagrant insecure public key\nssh-rsa TWO two\n"


@pytest.mark.unit
def test_ssh_key_name_names_the_key_set(tmp_path: Path) -> None:
    machine, _, _, _ = fake_machine(tmp_path, core_account())
    config = parse_cloud_config("#cloud-config\nssh_authorized_keys: [ssh-rsa ONE one]\n")
    apply_cloud_config(config, machine, Addresses(), ssh_key_name="lab")
    assert read(tmp_path, "/home/core/.ssh/authorized_keys.d/lab") == "ssh-rsa ONE one\n"
    with pytest.raises(CloudInitError, match="invalid SSH key name"):
        apply_cloud_config(config, machine, Addresses(), ssh_key_name="../x")


@pytest.mark.unit
def test_keys_for_a_missing_core_user_fail_with_a_hint(tmp_path: Path) -> None:
    machine, _, _, _ = fake_machine(tmp_path)
    with pytest.raises(
        CloudInitError, match="cannot authorize SSH keys for user 'core': no such user"
    ) as caught:
        apply_cloud_config(
            parse_cloud_config("#cloud-config\nssh_authorized_keys: [k]\n"), machine, Addresses()
        )
    assert caught.value.hint is not None


@pytest.mark.unit
def test_mask_runtime_enable_and_network_units(tmp_path: Path) -> None:
    masked = tmp_path / "etc/systemd/system/old.service"
    masked.parent.mkdir(parents=True)
    masked.symlink_to("/dev/null")
    text = """#cloud-config
coreos:
  units:
    - name: bad.service
      mask: true
      content: "[Service]\\nExecStart=/bin/false\\n"
      command: stop
    - name: old.service
      runtime: true
      enable: true
      content: "[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target\\n"
      command: restart
    - name: 10-eth1.network
      content: "[Match]\\nName=eth1\\n"
      enable: true
      command: start
"""
    machine, systemd, _, _ = fake_machine(tmp_path)
    apply_cloud_config(parse_cloud_config(text), machine, Addresses())

    assert (tmp_path / "etc/systemd/system/bad.service").readlink() == Path("/dev/null")
    assert not masked.is_symlink()
    assert read(tmp_path, "/run/systemd/system/old.service").startswith(
        "[Service]\nExecStart=/bin/true"
    )
    assert read(tmp_path, "/etc/systemd/network/10-eth1.network") == "[Match]\nName=eth1\n"
    assert systemd.calls == [
        ("enable", "old.service", "--runtime"),
        ("daemon-reload",),
        ("restart", "systemd-networkd.service"),
        ("stop", "bad.service"),
        ("restart", "old.service"),
    ]
    systemd.calls.clear()
    assert apply_cloud_config(parse_cloud_config(text), machine, Addresses()) == []
    assert ("daemon-reload",) not in systemd.calls


@pytest.mark.unit
def test_update_strategy_off_masks_and_stops_an_installed_locksmithd(tmp_path: Path) -> None:
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/locksmithd.service").write_text("[Service]\n")
    (tmp_path / "usr/share/coreos").mkdir(parents=True)
    (tmp_path / "usr/share/coreos/update.conf").write_text(
        "GROUP=stable\nREBOOT_STRATEGY=etcd-lock\n"
    )
    text = "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: off\n    server: https://u.example\n"
    machine, systemd, _, _ = fake_machine(tmp_path)

    apply_cloud_config(parse_cloud_config(text), machine, Addresses())

    assert read(tmp_path, "/etc/coreos/update.conf") == (
        "GROUP=stable\nREBOOT_STRATEGY=off\nSERVER=https://u.example\n"
    )
    assert (tmp_path / "etc/systemd/system/locksmithd.service").readlink() == Path("/dev/null")
    assert systemd.calls == [("daemon-reload",), ("stop", "locksmithd.service")]


@pytest.mark.unit
def test_update_and_locksmith_of_services_not_installed_are_written_but_not_run(
    tmp_path: Path,
) -> None:
    text = (
        "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: reboot\n    group: beta\n"
        "  locksmith:\n    window-start: Thu 04:00\n    window-length: 1h\n"
    )
    machine, systemd, _, _ = fake_machine(tmp_path)

    apply_cloud_config(parse_cloud_config(text), machine, Addresses())

    assert read(tmp_path, "/etc/coreos/update.conf") == "GROUP=beta\nREBOOT_STRATEGY=reboot\n"
    assert read(tmp_path, "/run/systemd/system/locksmithd.service.d/20-cloudinit.conf") == (
        "[Service]\n"
        'Environment="REBOOT_WINDOW_START=Thu 04:00"\n'
        'Environment="REBOOT_WINDOW_LENGTH=1h"\n'
    )
    assert systemd.calls == [("daemon-reload",)]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("manage_etc_hosts: true", 'Invalid option to manage_etc_hosts: "true"'),
        (
            "coreos:\n  update:\n    reboot-strategy: always",
            'invalid value "always" for option "reboot_strategy"',
        ),
        (
            "coreos:\n  locksmith:\n    window-start: noon",
            'invalid value "noon" for option "window_start"',
        ),
        (
            "coreos:\n  units:\n    - name: a.service\n      command: begin",
            "Unsupported systemd command 'begin'",
        ),
        (
            "coreos:\n  units:\n    - name: ../../etc/x.service\n      content: x",
            "invalid unit name",
        ),
        (
            "write_files:\n  - path: /a\n    encoding: b64\n    content: '%%'",
            "/a: content cannot be decoded",
        ),
        ("write_files:\n  - path: /a\n    permissions: '0999'", "unable to parse file permissions"),
    ],
)
def test_apply_errors(tmp_path: Path, text: str, message: str) -> None:
    machine, _, _, _ = fake_machine(tmp_path)
    with pytest.raises(CloudInitError, match=message.replace("(", r"\(").replace(".", r"\.")):
        apply_cloud_config(parse_cloud_config("#cloud-config\n" + text), machine, Addresses())


@pytest.mark.unit
def test_etc_hosts_and_oem_release(tmp_path: Path) -> None:
    machine, _, _, host = fake_machine(tmp_path)
    host.name = "from-kernel"
    text = (
        "#cloud-config\nmanage_etc_hosts: localhost\n"
        "coreos:\n  oem:\n    id: lab\n    version-id: 1\n"
    )
    apply_cloud_config(parse_cloud_config(text), machine, Addresses())
    assert read(tmp_path, "/etc/hosts") == "127.0.0.1 from-kernel\n"
    assert read(tmp_path, "/etc/oem-release").startswith("ID=lab\nVERSION_ID=1\n")


@pytest.mark.unit
def test_environment_file_is_merged_unless_the_user_writes_it(tmp_path: Path) -> None:
    machine, _, _, _ = fake_machine(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/environment").write_text('LANG="C.UTF-8"\nCOREOS_PRIVATE_IPV4=10.9.9.9\n')
    apply_cloud_config(parse_cloud_config("#cloud-config\n"), machine, ADDRESSES)
    assert read(tmp_path, "/etc/environment") == (
        'LANG="C.UTF-8"\nCOREOS_PRIVATE_IPV4=172.17.8.101\nCOREOS_PUBLIC_IPV4=172.17.8.101\n'
    )
    text = "#cloud-config\nwrite_files:\n  - path: /etc/environment\n    content: MINE=1\n"
    apply_cloud_config(parse_cloud_config(text), machine, ADDRESSES)
    assert read(tmp_path, "/etc/environment") == "MINE=1"


@pytest.mark.unit
def test_paths_cannot_escape_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    machine, _, _, _ = fake_machine(root)
    text = "#cloud-config\nwrite_files:\n  - path: ../../outside\n    content: x\n"
    apply_cloud_config(parse_cloud_config(text), machine, Addresses())
    assert read(root, "/outside") == "x"
    assert not (tmp_path / "outside").exists()


@pytest.mark.unit
def test_metadata_merge() -> None:
    config = parse_cloud_config("#cloud-config\nssh_authorized_keys: [a]\n")
    merged = with_metadata(config, Metadata(hostname="meta", public_keys=("b",)))
    assert (merged.hostname, merged.ssh_authorized_keys) == ("meta", ("a", "b"))
    named = parse_cloud_config("#cloud-config\nhostname: mine\n")
    assert with_metadata(named, Metadata(hostname="meta")).hostname == "mine"


@pytest.mark.unit
def test_scripts_run_as_transient_units_from_the_workspace(tmp_path: Path) -> None:
    machine, systemd, _, _ = fake_machine(tmp_path)
    name = run_script("#!/bin/bash\necho hi\n", machine)
    (script,) = (tmp_path / "var/lib/coreos-cloudinit/scripts").glob("tmp*")
    assert script.read_text() == "#!/bin/bash\necho hi\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o744
    assert systemd.calls == [("run-script", f"/var/lib/coreos-cloudinit/scripts/{script.name}")]
    assert name == f"coreos-cloudinit-{script.name}.service"
    assert read(tmp_path, "/var/lib/coreos-cloudinit/scripts/unit-name") == name


@pytest.mark.unit
def test_a_lab_worker_gets_its_proxies_and_etcdctl_api(tmp_path: Path) -> None:
    """The golden 3 core + 5 workers render's worker, applied: etcd2 configured as the
    v2 proxy, the box's etcd-gateway.service given the core's endpoints, ETCDCTL_API
    for login shells and (through DefaultEnvironment=, read on the daemon-reload that
    precedes every start) for units."""
    golden = Path(__file__).resolve().parent.parent / "golden" / "production-3-core-5-workers"
    text = (golden / "nodes" / "core-05" / "user-data").read_text()
    machine, systemd, _, _ = fake_machine(tmp_path, core_account())
    apply_cloud_config(parse_cloud_config(text), machine, ADDRESSES)

    proxy = read(tmp_path, "/run/systemd/system/etcd2.service.d/20-cloudinit.conf")
    assert 'Environment="ETCD_PROXY=on"\n' in proxy
    gateway = "/etc/systemd/system/etcd-gateway.service.d/20-lab.conf"
    assert read(tmp_path, gateway) == (
        "[Service]\nEnvironment=ETCD_GATEWAY_ENDPOINTS="
        "192.168.58.101:2379,192.168.58.102:2379,192.168.58.103:2379\n"
    )
    assert "export ETCDCTL_API=2\n" in read(tmp_path, "/etc/profile.d/etcdctl-api.sh")
    assert read(tmp_path, "/etc/systemd/system.conf.d/10-etcdctl-api.conf").endswith(
        "[Manager]\nDefaultEnvironment=ETCDCTL_API=2\n"
    )
    starts = [call for call in systemd.calls if call[0] in ("daemon-reload", "start")]
    assert starts[:4] == [
        ("daemon-reload",),
        ("start", "etcd2.service"),
        ("start", "etcd-gateway.service"),
        ("start", "flannel-network-config.service"),
    ]
