"""Pinned SSH host keys: the fingerprint block a guest prints, and checking keys against it.

On first boot the box prints, on its serial console::

    -----BEGIN SSH HOST KEY FINGERPRINTS-----
    256 SHA256:AbC...xyz root@core-01 (ED25519)
    3072 SHA256:dEf...uvw root@core-01 (RSA)
    -----END SSH HOST KEY FINGERPRINTS-----

each line the output of ``ssh-keygen -l -f KEY``. The host learns the guest's keys
from that console log (a channel the network cannot tamper with) and refuses any
other key over SSH.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from provisioner.errors import HostKeyError, RemoteError

BEGIN_MARKER = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
END_MARKER = "-----END SSH HOST KEY FINGERPRINTS-----"

# ``ssh-keygen -l`` output: bits, fingerprint, comment (may be empty), (TYPE).
# Serial consoles may prefix lines (timestamps, "cloud-init: "), so search, not match.
_FINGERPRINT_LINE = re.compile(
    r"(?P<bits>\d+)\s+(?P<fp>SHA256:[A-Za-z0-9+/]{43})=?\s+(?:.*?\s)?\((?P<type>[A-Z0-9-]+)\)\s*$"
)

# SSH wire names of public keys -> the label ``ssh-keygen -l`` prints.
_KEY_TYPE_LABELS = {
    "ssh-ed25519": "ED25519",
    "ssh-rsa": "RSA",
    "ssh-dss": "DSA",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
}


# What to do about a host key that is not the pinned one; every refusal says it.
CHANGED_KEY_FIX = "if the node was rebuilt on purpose, run `lab destroy` and `lab up` again"

# What the config-drive agent prints (provisioner.guest.cloudinit.apply) just before
# it writes a user's authorized_keys: until then every login is refused.
_KEYS_AUTHORIZED_LINE = re.compile(r"Authorizing \d+ SSH keys for user '(?P<user>[^']+)'")


def console_shows_keys_authorized(console: str, user: str) -> bool:
    """True once this boot's console (after its last fingerprint block) shows the
    agent authorizing ``user``'s SSH keys."""
    boot = console[console.rfind(BEGIN_MARKER) :] if BEGIN_MARKER in console else console
    return any(found["user"] == user for found in _KEYS_AUTHORIZED_LINE.finditer(boot))


def key_type_label(wire_name: str) -> str:
    """The ``ssh-keygen -l`` label (``ED25519``) for an SSH key type (``ssh-ed25519``)."""
    try:
        return _KEY_TYPE_LABELS[wire_name]
    except KeyError:
        raise RemoteError(f"unsupported SSH host key type {wire_name!r}") from None


def sha256_fingerprint(key_blob: bytes) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key in wire format."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_host_key_fingerprints(console: str) -> dict[str, str]:
    """Pinned fingerprints by key type (``{"ED25519": "SHA256:..."}``) from a console log.

    Uses the last complete block, so a later boot's block wins; returns ``{}`` when
    no complete block has been printed yet. Lines inside the block that are not
    fingerprints (kernel messages interleaved on the console) are skipped.
    Raises :class:`RemoteError` if a complete block holds no fingerprint or names
    one key type twice with different fingerprints.
    """
    block: list[str] | None = None
    last_block: list[str] | None = None
    for raw in console.splitlines():
        line = raw.replace("\r", "")
        if BEGIN_MARKER in line:
            block = []
        elif END_MARKER in line and block is not None:
            last_block, block = block, None
        elif block is not None:
            block.append(line)
    if last_block is None:
        return {}
    pins: dict[str, str] = {}
    for line in last_block:
        found = _FINGERPRINT_LINE.search(line)
        if found is None:
            continue
        key_type, fingerprint = found["type"], found["fp"]
        if pins.setdefault(key_type, fingerprint) != fingerprint:
            raise RemoteError(
                f"host key fingerprint block lists two different {key_type} keys",
                hint="the guest's console log is garbled; check it by hand",
            )
    if not pins:
        raise RemoteError(
            "host key fingerprint block on the console holds no fingerprint",
            hint="the box should print `ssh-keygen -l -f` output for each host key",
        )
    return pins


def check_host_key(host: str, wire_name: str, key_blob: bytes, pinned: Mapping[str, str]) -> None:
    """Raise RemoteError unless the key's fingerprint is the one pinned for its type."""
    label = key_type_label(wire_name)
    offered = sha256_fingerprint(key_blob)
    expected = pinned.get(label)
    if expected is None:
        known = ", ".join(sorted(pinned)) or "none"
        raise HostKeyError(
            f"{host}: offered an {label} host key ({offered}) but no {label} key is pinned"
            f" (pinned: {known})",
            hint="the guest's console fingerprint block is the source of pinned keys",
        )
    if offered != expected:
        raise HostKeyError(
            f"{host}: host key {label} {offered} does not match the pinned {expected};"
            " refusing to connect",
            hint="someone may be impersonating the node, or it was rebuilt: compare the"
            f" fingerprints on its serial console; {CHANGED_KEY_FIX}",
        )
