"""Parsing the console's host key fingerprint block and checking keys against pins."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from provisioner.errors import RemoteError
from provisioner.guest.cloudinit.sshkeys import AUTHORIZING_KEYS
from provisioner.remote.hostkeys import (
    BEGIN_MARKER,
    END_MARKER,
    check_host_key,
    console_shows_keys_authorized,
    key_type_label,
    parse_host_key_fingerprints,
    sha256_fingerprint,
)
from provisioner.remote.ssh import disabled_host_key_algorithms, known_hosts_pins
from provisioner.remote.sshconfig import known_hosts_name

pytestmark = pytest.mark.unit

# A real key and the fingerprint `ssh-keygen -l -f` printed for it.
PUBLIC_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIFCFlPCGvTIh8TtpIsNuLmJCbkqRWrtePzenEtt+kmLD"
KEYGEN_LINE = "256 SHA256:yQwDJGZRrh7mH1CtvTnFeg/QIjwaExpoe5iSLJaU204 root@core-01 (ED25519)"
ED25519_FP = "SHA256:yQwDJGZRrh7mH1CtvTnFeg/QIjwaExpoe5iSLJaU204"
RSA_FP = "SHA256:" + "A" * 43
OTHER_FP = "SHA256:" + "B" * 43


# Captured from the serial console of the project's box on its first boot
# (lab-ssh-host-keys.service prints both blocks; keys are made with an empty comment).
BOX_CONSOLE = "\n".join(
    [
        "[  OK  ] Finished lab-ssh-host-keys.service - Make SSH host keys and show their"
        " fingerprints.",
        "",
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        "256 SHA256:O0oS3QlA+dlb/H44z+PVRx8VCtKdilx5tUfojzR55wk no comment (ECDSA)",
        "256 SHA256:kBQCTgxHPu8N9IL99QSWt1h8GiA4emhk2jx4fEVdqoQ no comment (ED25519)",
        "-----END SSH HOST KEY FINGERPRINTS-----",
        "-----BEGIN SSH HOST KEY KEYS-----",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBL/uV/Jaf+q1NBgng"
        "+bJxF7aC6x2JREbDplExomjnqdj6SLIApnCYlj50IgQS1HYD5+KTFFlYm36T3zRSUXZlNA= ",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO3L95tQszJa686YeIgJ/kvkydKzTuirQ+JxrT1Z5BI8 ",
        "-----END SSH HOST KEY KEYS-----",
        "",
        "Debian GNU/Linux 12 localhost ttyS0",
        "",
        "localhost login: ",
    ]
)


def block(*lines: str) -> str:
    return "\n".join([BEGIN_MARKER, *lines, END_MARKER])


def test_fingerprint_matches_ssh_keygen() -> None:
    assert sha256_fingerprint(base64.b64decode(PUBLIC_KEY)) == ED25519_FP


def test_parses_a_block() -> None:
    console = "boot noise\n" + block(KEYGEN_LINE, f"3072 {RSA_FP} root@core-01 (RSA)") + "\nlogin:"
    assert parse_host_key_fingerprints(console) == {"ED25519": ED25519_FP, "RSA": RSA_FP}


def test_parses_the_box_console_and_matches_its_public_keys() -> None:
    pins = parse_host_key_fingerprints(BOX_CONSOLE)
    assert set(pins) == {"ECDSA", "ED25519"}
    for line in BOX_CONSOLE.splitlines():
        if line.startswith(("ssh-ed25519 ", "ecdsa-sha2-nistp256 ")):
            wire, blob = line.split()[:2]
            check_host_key("core-01", wire, base64.b64decode(blob), pins)


def test_tolerates_console_prefixes_carriage_returns_and_missing_comment() -> None:
    console = "\r\n".join(
        [
            f"[   12.5] cloud-init: {BEGIN_MARKER}",
            f"[   12.5] cloud-init: {KEYGEN_LINE}",
            f"256 {OTHER_FP} no comment (ECDSA)",
            f"3072 {RSA_FP} (RSA)",
            "[   12.6] random: crng init done",
            f"[   12.7] cloud-init: {END_MARKER}",
        ]
    )
    assert parse_host_key_fingerprints(console) == {
        "ED25519": ED25519_FP,
        "ECDSA": OTHER_FP,
        "RSA": RSA_FP,
    }


def test_no_block_or_unfinished_block_gives_nothing() -> None:
    assert parse_host_key_fingerprints("just booting\n") == {}
    assert parse_host_key_fingerprints(f"{BEGIN_MARKER}\n{KEYGEN_LINE}\n") == {}


def test_last_complete_block_wins() -> None:
    first = block(f"256 {OTHER_FP} root@old (ED25519)")
    second = block(KEYGEN_LINE)
    assert parse_host_key_fingerprints(first + "\nreboot\n" + second) == {"ED25519": ED25519_FP}


def test_empty_block_is_an_error() -> None:
    with pytest.raises(RemoteError, match="holds no fingerprint"):
        parse_host_key_fingerprints(block("garbage"))


def test_conflicting_lines_are_an_error() -> None:
    with pytest.raises(RemoteError, match="two different ED25519 keys"):
        parse_host_key_fingerprints(block(KEYGEN_LINE, f"256 {OTHER_FP} x (ED25519)"))


def test_check_accepts_the_pinned_key() -> None:
    check_host_key("core-01", "ssh-ed25519", base64.b64decode(PUBLIC_KEY), {"ED25519": ED25519_FP})


def test_check_refuses_a_changed_key() -> None:
    with pytest.raises(RemoteError, match="does not match the pinned"):
        check_host_key(
            "core-01", "ssh-ed25519", base64.b64decode(PUBLIC_KEY), {"ED25519": OTHER_FP}
        )


def test_check_refuses_an_unpinned_key_type() -> None:
    with pytest.raises(RemoteError, match="no ED25519 key is pinned"):
        check_host_key("core-01", "ssh-ed25519", base64.b64decode(PUBLIC_KEY), {"RSA": RSA_FP})


@pytest.mark.parametrize(
    ("wire", "label"),
    [("ssh-ed25519", "ED25519"), ("ssh-rsa", "RSA"), ("ecdsa-sha2-nistp384", "ECDSA")],
)
def test_key_type_labels(wire: str, label: str) -> None:
    assert key_type_label(wire) == label


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(RemoteError, match="unsupported SSH host key type"):
        key_type_label("ssh-ed25519-cert-v01@openssh.com")


def test_only_pinned_types_stay_enabled() -> None:
    disabled = disabled_host_key_algorithms({"RSA": RSA_FP})
    assert "ssh-ed25519" in disabled
    assert "ecdsa-sha2-nistp256" in disabled
    assert not {"rsa-sha2-512", "rsa-sha2-256"} & set(disabled)
    assert (
        disabled_host_key_algorithms({"ED25519": ED25519_FP, "ECDSA": OTHER_FP, "RSA": RSA_FP})
        == []
    )


def test_pins_without_a_usable_type_are_refused() -> None:
    with pytest.raises(RemoteError, match="no usable pinned host key type"):
        disabled_host_key_algorithms({"DSA": RSA_FP})


def test_console_shows_the_agent_authorizing_keys_in_this_boot() -> None:
    block = f"{BEGIN_MARKER}\n256 SHA256:{'a' * 43} root@core-01 (ED25519)\n{END_MARKER}\n"
    line = "[ 85.29] coreos-cloudinit[239]: 2026/12/01 22:17:59 " + AUTHORIZING_KEYS % (2, "core")
    assert not console_shows_keys_authorized("", "core")
    assert not console_shows_keys_authorized(block, "core")
    assert console_shows_keys_authorized(block + line + "\r\n", "core")
    assert not console_shows_keys_authorized(block + line, "ops")
    # a later boot's fingerprint block starts over: the earlier line does not count
    assert not console_shows_keys_authorized(block + line + "\n" + block, "core")
    assert console_shows_keys_authorized(line, "core")  # no block at all: the whole log


def test_known_hosts_pins_are_the_fingerprints_of_the_hosts_keys(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"192.168.150.101 ssh-ed25519 {PUBLIC_KEY}\n[127.0.0.1]:2222 ssh-ed25519 {PUBLIC_KEY}\n"
    )
    assert known_hosts_pins(known_hosts, "192.168.150.101", 22) == {"ED25519": ED25519_FP}
    assert known_hosts_pins(known_hosts, "127.0.0.1", 2222) == {"ED25519": ED25519_FP}
    assert known_hosts_pins(known_hosts, "127.0.0.1", 22) == {}
    assert known_hosts_pins(known_hosts, "192.168.150.102", 22) == {}


def test_known_hosts_names_a_host_off_port_22_with_its_port() -> None:
    assert known_hosts_name("192.168.150.101", 22) == "192.168.150.101"
    assert known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_an_unreadable_known_hosts_is_a_remote_error(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="cannot read the lab's known_hosts") as caught:
        known_hosts_pins(tmp_path / "missing", "127.0.0.1", 22)
    assert "lab up" in (caught.value.hint or "")
