"""The coreos-cloudinit command line: sources, --validate, substitution, exit codes."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from provisioner.guest.cloudinit import VERSION
from provisioner.guest.cloudinit.datasource import (
    ConfigDrive,
    LocalFile,
    parse_metadata,
    wait_for_datasource,
)
from provisioner.guest.cloudinit.errors import DatasourceError
from provisioner.guest.cloudinit.main import main, parse_args, run
from tests.cloudinit_support import core_account, fake_machine

VALID = "#cloud-config\nhostname: node-1\n"
INVALID = (
    "#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: begin\nbogus: 1\n"
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


def config_drive(base: Path, userdata: str, metadata: Mapping[str, object] | None = None) -> Path:
    latest = base / "drive" / "openstack" / "latest"
    write(latest / "user_data", userdata)
    if metadata is not None:
        write(latest / "meta_data.json", json.dumps(metadata))
    return base / "drive"


@pytest.mark.unit
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"coreos-cloudinit {VERSION}\n"


@pytest.mark.unit
def test_no_source_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "Provide at least one of --from-file or --from-configdrive" in err
    assert "usage: coreos-cloudinit [-h]" in err


@pytest.mark.unit
def test_unknown_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--from-url", "http://x"])
    assert caught.value.code == 2


@pytest.mark.unit
def test_validate_prints_entries_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "user-data", INVALID)
    assert main(["--validate", f"--from-file={source}"]) == 1
    err = capsys.readouterr().err.splitlines()
    stamped = [re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (line .*)", line) for line in err]
    assert [match.group(1) for match in stamped if match] == [
        "line 5: error: invalid value begin",
        'line 6: warning: unrecognized key "bogus"',
    ]


@pytest.mark.unit
def test_validate_clean_file_exits_0_with_go_style_flags(tmp_path: Path) -> None:
    source = write(tmp_path / "user-data", VALID)
    assert main(["-validate", "-from-file", str(source)]) == 0


@pytest.mark.unit
def test_validate_decompresses_gzip(tmp_path: Path) -> None:
    source = write(tmp_path / "user-data.gz", gzip.compress(INVALID.encode()))
    assert main(["--validate", "--from-file", str(source)]) == 1


@pytest.mark.unit
def test_missing_source_times_out_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["--from-file", str(missing), "--source-timeout", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "No datasources available in time" in err
    assert f"waited 0.2 s for: local-file {missing}" in err
    assert main(["--from-file", str(missing), "--source-timeout", "0", "--ignore-failure"]) == 0


@pytest.mark.unit
def test_config_drive_directory_with_metadata(tmp_path: Path) -> None:
    userdata = (
        "#cloud-config\n"
        "coreos:\n"
        "  etcd2:\n"
        "    advertise-client-urls: http://$private_ipv4:2379\n"
        "    name: \\$private_ipv4\n"
        "  fleet:\n"
        "    public-ip: $public_ipv4\n"
    )
    metadata = {
        "hostname": "meta-host",
        "public_keys": {"b": "ssh-rsa BBBB b", "a": "ssh-rsa AAAA a"},
        "private_ipv4": "172.17.8.102",
        "public_ipv4": "203.0.113.2",
    }
    drive = config_drive(tmp_path, userdata, metadata)
    root = tmp_path / "root"
    machine, systemd, _, host = fake_machine(root, core_account())
    options = parse_args(["--from-configdrive", str(drive), "--root", str(root)])

    assert run(options, machine, environ={}, local_ipv4=lambda: "192.168.121.9") == 0

    assert (root / "run/systemd/system/etcd2.service.d/20-cloudinit.conf").read_text() == (
        "[Service]\n"
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.102:2379"\n'
        'Environment="ETCD_NAME=$private_ipv4"\n'
    )
    assert (root / "run/systemd/system/fleet.service.d/20-cloudinit.conf").read_text() == (
        '[Service]\nEnvironment="FLEET_PUBLIC_IP=203.0.113.2"\n'
    )
    assert host.set_calls == ["meta-host"]
    assert (
        root / "home/core/.ssh/authorized_keys"
    ).read_text() == "ssh-rsa AAAA a\nssh-rsa BBBB b\n"
    assert (root / "etc/environment").read_text() == (
        "COREOS_PRIVATE_IPV4=172.17.8.102\nCOREOS_PUBLIC_IPV4=203.0.113.2\n"
    )
    assert systemd.calls == [("daemon-reload",)]


@pytest.mark.unit
def test_addresses_from_environment_then_local_address(tmp_path: Path) -> None:
    source = write(
        tmp_path / "user-data", "#cloud-config\ncoreos:\n  flannel:\n    interface: $private_ipv4\n"
    )
    root = tmp_path / "root"
    machine, _, _, _ = fake_machine(root)
    options = parse_args(["--from-file", str(source)])

    assert (
        run(options, machine, environ={"COREOS_PRIVATE_IPV4": "10.1.1.1"}, local_ipv4=lambda: "")
        == 0
    )
    assert (root / "run/flannel/options.env").read_text() == "FLANNELD_IFACE=10.1.1.1"

    assert run(options, machine, environ={}, local_ipv4=lambda: "192.168.121.7") == 0
    assert (root / "run/flannel/options.env").read_text() == "FLANNELD_IFACE=192.168.121.7"


@pytest.mark.unit
def test_invalid_config_is_logged_and_still_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "user-data", "#cloud-config\nhostname: h\nbogus: 1\n")
    root = tmp_path / "root"
    machine, _, _, host = fake_machine(root)
    assert (
        run(parse_args(["--from-file", str(source)]), machine, environ={}, local_ipv4=lambda: "")
        == 0
    )
    assert host.set_calls == ["h"]


@pytest.mark.unit
def test_apply_failure_exits_1_unless_ignored(tmp_path: Path) -> None:
    source = write(tmp_path / "user-data", "#cloud-config\nmanage_etc_hosts: yes-please\n")
    machine, _, _, _ = fake_machine(tmp_path / "root")
    options = parse_args(["--from-file", str(source)])
    assert run(options, machine, environ={}, local_ipv4=lambda: "") == 1
    ignoring = parse_args(["--from-file", str(source), "--ignore-failure"])
    assert run(ignoring, machine, environ={}, local_ipv4=lambda: "") == 0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("userdata", "status"),
    [('{"ignition": {"version": "2.0.0"}}', 0), ("hello: world\n", 1), ("", 0)],
    ids=["ignition", "unrecognized", "empty"],
)
def test_other_formats(tmp_path: Path, userdata: str, status: int) -> None:
    source = write(tmp_path / "user-data", userdata)
    root = tmp_path / "root"
    machine, systemd, _, _ = fake_machine(root)
    options = parse_args(["--from-file", str(source)])
    assert run(options, machine, environ={}, local_ipv4=lambda: "10.0.0.9") == status
    assert systemd.calls == []
    assert not (root / "etc").exists()


@pytest.mark.unit
def test_script_userdata_runs_with_substitution(tmp_path: Path) -> None:
    source = write(tmp_path / "user-data", "#!/bin/bash\necho $private_ipv4\n")
    root = tmp_path / "root"
    machine, systemd, _, _ = fake_machine(root)
    options = parse_args(["--from-file", str(source), "--workspace", "/var/lib/ci"])
    assert run(options, machine, environ={}, local_ipv4=lambda: "10.2.2.2") == 0
    (script,) = (root / "var/lib/ci/scripts").glob("tmp*")
    assert script.read_text() == "#!/bin/bash\necho 10.2.2.2\n"
    assert systemd.calls == [("run-script", f"/var/lib/ci/scripts/{script.name}")]


@pytest.mark.unit
def test_config_drive_without_user_data_is_empty(tmp_path: Path) -> None:
    (tmp_path / "drive" / "openstack" / "latest").mkdir(parents=True)
    fetched = ConfigDrive(tmp_path / "drive").fetch()
    assert (fetched.userdata, fetched.metadata.hostname) == (b"", "")


@pytest.mark.unit
def test_parse_metadata() -> None:
    metadata = parse_metadata(
        '{"hostname": "h", "public_keys": {"k": "ssh-rsa K"}, "private_ipv4": "10.0.0.1"}'
    )
    assert (metadata.hostname, metadata.public_keys, metadata.addresses) == (
        "h",
        ("ssh-rsa K",),
        {"private_ipv4": "10.0.0.1"},
    )
    with pytest.raises(DatasourceError, match=r"meta_data\.json is not valid JSON"):
        parse_metadata("{")
    with pytest.raises(DatasourceError, match="must hold a JSON object"):
        parse_metadata("[]")


@pytest.mark.unit
def test_wait_for_datasource_backs_off_until_the_deadline(tmp_path: Path) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    source = LocalFile(tmp_path / "later")
    with pytest.raises(DatasourceError, match="No datasources available in time"):
        wait_for_datasource([source], 40.0, sleep=sleep, clock=lambda: now[0])
    assert sleeps[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(sleeps) <= 30.0
    assert now[0] == pytest.approx(40.0)

    def appear(seconds: float) -> None:
        write(tmp_path / "later", VALID)

    assert wait_for_datasource([source], 40.0, sleep=appear, clock=lambda: 0.0) is source


@pytest.mark.unit
def test_config_drive_with_only_metadata_applies_it(tmp_path: Path) -> None:
    drive = config_drive(tmp_path, "", {"hostname": "only-meta"})
    machine, _, _, host = fake_machine(tmp_path / "root")
    options = parse_args(["--from-configdrive", str(drive)])
    assert run(options, machine, environ={}, local_ipv4=lambda: "") == 0
    assert host.set_calls == ["only-meta"]
