"""ssh argument lists for status/journal/ssh and the --tunnel transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.guest.fleet.client import ApiEndpoint, parse_api_endpoint
from provisioner.guest.fleet.commands import journal_argv
from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.remote import (
    SshOptions,
    host_key_options,
    remote_command_line,
    ssh_argv,
    ssh_command_line,
    tunnel_address,
)
from provisioner.guest.fleet.tunnel import tunnel_argv

pytestmark = pytest.mark.unit


def test_status_and_journal_quote_each_word() -> None:
    """fleetctl/ssh.go runRemoteCommand quotes each argument (Go %q; here shlex)."""
    line = remote_command_line(["systemctl", "status", "-l", "x$(reboot).service"])
    assert line == "systemctl status -l 'x$(reboot).service'"


def test_fleetctl_ssh_joins_its_arguments_for_the_remote_shell() -> None:
    """fleetctl/ssh.go runSSH: pkg.TrimToDashes, then strings.Join(args, " ")."""
    assert ssh_command_line(["echo a; echo b"]) == "echo a; echo b"
    assert ssh_command_line(["ls", "-l", "/a b"]) == "ls -l /a b"
    assert ssh_command_line(["ignored", "--", "ps", "aux", "|", "grep", "x"]) == "ps aux | grep x"
    assert ssh_command_line([]) == ""


def test_ssh_argv_with_fleets_default_flags() -> None:
    argv = ssh_argv("10.0.0.2", "echo a; echo b", SshOptions(), tty=False)
    known = str(Path("~/.fleetctl/known_hosts").expanduser())
    assert argv == [
        "ssh",
        "-l",
        "core",
        "-p",
        "22",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "StrictHostKeyChecking=ask",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "HashKnownHosts=no",
        "-o",
        "PreferredAuthentications=publickey",
        "-T",
        "10.0.0.2",
        "--",
        "echo a; echo b",
    ]


def test_ssh_argv_options() -> None:
    options = SshOptions(
        username="admin",
        port=2222,
        forward_agent=True,
        tunnel="bastion",
        strict_host_key_checking=False,
        timeout=2.5,
    )
    argv = ssh_argv("10.0.0.3", "", options, tty=True)
    assert argv == [
        "ssh",
        "-l",
        "admin",
        "-p",
        "2222",
        "-o",
        "ConnectTimeout=3",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "PreferredAuthentications=publickey",
        "-A",
        "-J",
        "bastion:22",
        "-t",
        "10.0.0.3",
    ]


def test_known_hosts_file_is_expanded() -> None:
    options = SshOptions(known_hosts_file="/etc/fleet/known_hosts")
    assert host_key_options(options)[3] == "UserKnownHostsFile=/etc/fleet/known_hosts"


def test_tunnel_address_gets_the_default_port() -> None:
    assert tunnel_address("host") == "host:22"
    assert tunnel_address("host:2200") == "host:2200"
    assert tunnel_address("") == ""


def test_tunnel_transport_commands() -> None:
    options = SshOptions(tunnel="bastion:2200", strict_host_key_checking=False)
    unix = tunnel_argv(ApiEndpoint(unix_path="/var/run/fleet.sock"), options)
    assert unix[:5] == ["ssh", "-l", "core", "-p", "2200"]
    assert unix[-3:] == ["bastion", "--", "fleetctl fd-forward /var/run/fleet.sock"]
    assert "-J" not in unix
    tcp = tunnel_argv(ApiEndpoint(base_url="http://10.0.0.5:8080"), options)
    assert tcp[-3:] == ["-W", "10.0.0.5:8080", "bastion"]


def test_tunnel_through_an_ssh_config_takes_host_key_and_user_from_it() -> None:
    """FLEETCTL_SSH_CONFIG (`lab ssh-config`): ``ssh -F``; a port only if --tunnel names one."""
    options = SshOptions(tunnel="core-01", ssh_config="/lab/ssh_config", timeout=10.0)
    unix = tunnel_argv(ApiEndpoint(unix_path="/var/run/fleet.sock"), options)
    assert unix == [
        "ssh",
        "-F",
        "/lab/ssh_config",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "BatchMode=yes",
        "-T",
        "core-01",
        "--",
        "fleetctl fd-forward /var/run/fleet.sock",
    ]
    assert not {"-l", "-p", "StrictHostKeyChecking=ask"} & set(unix)
    ported = SshOptions(tunnel="core-01:2222", ssh_config="/lab/ssh_config")
    tcp = tunnel_argv(ApiEndpoint(base_url="http://127.0.0.1:49153"), ported)
    assert tcp[-6:] == ["-p", "2222", "-T", "-W", "127.0.0.1:49153", "core-01"]


def test_journal_command_line() -> None:
    assert journal_argv("a.service", lines=10, output="short", follow=False, sudo=False) == [
        "journalctl",
        "--unit",
        "a.service",
        "--no-pager",
        "-n",
        "10",
        "--output",
        "short",
    ]
    assert journal_argv("a.service", lines=1, output="json", follow=True, sudo=True)[:2] == [
        "sudo",
        "journalctl",
    ]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("unix:///var/run/fleet.sock", ApiEndpoint(unix_path="/var/run/fleet.sock")),
        ("http://10.0.0.1:49153", ApiEndpoint(base_url="http://10.0.0.1:49153")),
        ("https://fleet.example/", ApiEndpoint(base_url="https://fleet.example")),
    ],
)
def test_api_endpoints(endpoint: str, expected: ApiEndpoint) -> None:
    assert parse_api_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("unix://var/run/fleet.sock", 'unable to connect to host "var" with scheme "unix"'),
        ("/var/run/fleet.sock", "URL scheme undefined"),
        ("ftp://x/y", 'unable to connect to host "x" with scheme "ftp"'),
    ],
)
def test_bad_api_endpoints(endpoint: str, message: str) -> None:
    with pytest.raises(FleetError) as err:
        parse_api_endpoint(endpoint)
    assert err.value.message == message
