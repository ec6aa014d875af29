"""The lab's ssh_config: rendered text, and reading it back for the pinned backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.remote.sshconfig import (
    HostSpec,
    render_ssh_config,
    render_system_known_hosts,
    ssh_options,
    write_ssh_config,
)

KEY = Path("/labs/demo/.lab/ssh/id_ed25519")
KNOWN = Path("/labs/demo/.lab/known_hosts")
NODES = [HostSpec("core-01", "192.168.150.101"), HostSpec("core-02", "192.168.150.102")]


def test_renders_one_pinned_block_per_node() -> None:
    text = render_ssh_config(NODES, KEY, KNOWN)
    block = text.split("\n\n")[1]
    assert block.splitlines() == [
        "Host core-01",
        "  HostName 192.168.150.101",
        "  Port 22",
        "  User core",
        f"  IdentityFile {KEY}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {KNOWN}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  UpdateHostKeys no",
        "  PasswordAuthentication no",
        "  KbdInteractiveAuthentication no",
        "  ConnectTimeout 10",
        "  ServerAliveInterval 15",
    ]
    assert text.count("\nHost ") == 2
    assert "StrictHostKeyChecking no" not in text


def test_options_read_back_what_was_rendered() -> None:
    text = render_ssh_config([*NODES, HostSpec("local", "127.0.0.1", 2222, "root")], KEY, KNOWN)
    options = ssh_options(text, "core-02")
    assert (options.hostname, options.port, options.user) == ("192.168.150.102", 22, "core")
    assert (options.identity_file, options.known_hosts) == (KEY, KNOWN)
    assert (options.connect_timeout, options.keepalive) == (10.0, 15)
    local = ssh_options(text, "local")
    assert (local.hostname, local.port, local.user) == ("127.0.0.1", 2222, "root")


def test_paths_with_spaces_are_quoted_and_read_back() -> None:
    key = Path("/home/me/my labs/demo/.lab/ssh/id_ed25519")
    known = Path("/home/me/my labs/demo/.lab/known_hosts")
    text = render_ssh_config(NODES, key, known)
    assert f'IdentityFile "{key}"' in text
    options = ssh_options(text, "core-01")
    assert (options.identity_file, options.known_hosts) == (key, known)


@pytest.mark.parametrize(
    "path", ["relative/key", "/labs/100%/key", "/labs/~me/key", '/labs/"q"/key', "/a\\b/key"]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(ConfigError, match="SSH key"):
        render_ssh_config(NODES, Path(path), KNOWN)


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (HostSpec("core 01", "10.0.0.1"), "cannot be an ssh_config Host alias"),
        (HostSpec("core-*", "10.0.0.1"), "cannot be an ssh_config Host alias"),
        (HostSpec("core-01", "10.0.0.1\n  ProxyCommand x"), "is not a host name or IP"),
        (HostSpec("core-01", "10.0.0.1", 0), "out of range"),
        (HostSpec("core-01", "10.0.0.1", 22, "core bar"), "not a valid login name"),
    ],
)
def test_bad_nodes_are_refused(node: HostSpec, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        render_ssh_config([node], KEY, KNOWN)


def test_duplicate_nodes_are_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        render_ssh_config([NODES[0], NODES[0]], KEY, KNOWN)


def test_write_is_the_rendered_text(tmp_path: Path) -> None:
    path = write_ssh_config(tmp_path / "ssh_config", NODES, KEY, KNOWN)
    assert path.read_text() == render_ssh_config(NODES, KEY, KNOWN)


@pytest.mark.parametrize(
    ("drop", "problem"),
    [
        ("  IdentityFile", "no IdentityFile"),
        ("  UserKnownHostsFile", "no UserKnownHostsFile"),
        ("  StrictHostKeyChecking", "StrictHostKeyChecking is 'unset'"),
    ],
)
def test_options_refuse_a_config_that_would_not_pin(drop: str, problem: str) -> None:
    text = "\n".join(
        line
        for line in render_ssh_config(NODES, KEY, KNOWN).splitlines()
        if not line.startswith(drop)
    )
    with pytest.raises(ConfigError, match=problem):
        ssh_options(text, "core-01", source="/labs/demo/.lab/ssh_config")


@pytest.mark.parametrize("value", ["no", "accept-new", "ask", "off"])
def test_options_refuse_lax_host_key_checking(value: str) -> None:
    text = render_ssh_config(NODES, KEY, KNOWN).replace(
        "StrictHostKeyChecking yes", f"StrictHostKeyChecking {value}"
    )
    with pytest.raises(ConfigError, match=f"StrictHostKeyChecking is '{value}'"):
        ssh_options(text, "core-01")


def test_options_for_an_unknown_alias_are_refused() -> None:
    with pytest.raises(ConfigError, match="Host core-09: no IdentityFile"):
        ssh_options(render_ssh_config(NODES, KEY, KNOWN), "core-09")


def test_system_known_hosts_lists_every_pinned_node_by_name_and_address() -> None:
    lab_known_hosts = (
        "10.0.0.101 ssh-ed25519 AAAAone\n"
        "10.0.0.103 ssh-ed25519 AAAAthree\n"
        "[127.0.0.1]:2222 ssh-ed25519 AAAAloop\n"
    )
    nodes = [
        HostSpec("core-01", "10.0.0.101"),
        HostSpec("core-02", "10.0.0.102"),  # not pinned yet: left out
        HostSpec("core-03", "10.0.0.103"),
        HostSpec("loop", "127.0.0.1", 2222),
    ]
    text = render_system_known_hosts(nodes, lab_known_hosts)
    assert text.splitlines()[1:] == [
        "core-01,10.0.0.101 ssh-ed25519 AAAAone",
        "core-03,10.0.0.103 ssh-ed25519 AAAAthree",
        "[loop]:2222,[127.0.0.1]:2222 ssh-ed25519 AAAAloop",
    ]
    assert text.startswith("# ")
    with pytest.raises(ConfigError):
        render_system_known_hosts([HostSpec("bad name", "10.0.0.1")], lab_known_hosts)
