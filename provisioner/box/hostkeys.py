"""SSH host keys that a guest prints on its serial console at boot.

The box's ``lab-ssh-host-keys.service`` writes::

    -----BEGIN SSH HOST KEY FINGERPRINTS-----
    256 SHA256:... no comment (ED25519)
    -----END SSH HOST KEY FINGERPRINTS-----
    -----BEGIN SSH HOST KEY KEYS-----
    ssh-ed25519 AAAA...
    -----END SSH HOST KEY KEYS-----

so the host can pin them before its first SSH connection. Console output can
interleave with kernel or systemd lines, so lines that do not parse inside a
block are skipped rather than trusted.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

FINGERPRINTS_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
FINGERPRINTS_END = "-----END SSH HOST KEY FINGERPRINTS-----"
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
KEYS_END = "-----END SSH HOST KEY KEYS-----"

_FINGERPRINT_RE = re.compile(r"(\d+) (SHA256:[A-Za-z0-9+/]{43}) .*\((\w+)\)\s*$")
_KEY_RE = re.compile(r"((?:ssh|ecdsa-sha2|sk-ssh|sk-ecdsa)[\w@.-]*) ([A-Za-z0-9+/]+={0,3})(?:\s|$)")


@dataclass(frozen=True)
class HostKeyFingerprint:
    bits: int
    sha256: str  # "SHA256:<base64 without padding>", as ssh-keygen -l prints it
    key_type: str  # "ED25519", "ECDSA", "RSA"


@dataclass(frozen=True)
class HostKey:
    key_type: str  # "ssh-ed25519", "ecdsa-sha2-nistp256", ...
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.blob)

    @property
    def openssh(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"


def fingerprint_of(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _blocks(console: str, begin: str, end: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in console.splitlines():
        line = raw.replace("\r", "").strip()
        if line.endswith(begin):
            current = []
        elif line.endswith(end) and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def parse_fingerprints(console: str) -> tuple[HostKeyFingerprint, ...]:
    """Fingerprints from the last complete block on the console (the latest boot)."""
    blocks = _blocks(console, FINGERPRINTS_BEGIN, FINGERPRINTS_END)
    if not blocks:
        return ()
    found = []
    for line in blocks[-1]:
        match = _FINGERPRINT_RE.search(line)
        if match:
            found.append(HostKeyFingerprint(int(match[1]), match[2], match[3]))
    return tuple(found)


def parse_host_keys(console: str) -> tuple[HostKey, ...]:
    """Public keys from the last complete keys block; each checked to decode."""
    blocks = _blocks(console, KEYS_BEGIN, KEYS_END)
    if not blocks:
        return ()
    keys = []
    for line in blocks[-1]:
        match = _KEY_RE.search(line)
        if not match:
            continue
        try:
            blob = base64.b64decode(match[2], validate=True)
        except ValueError:
            continue
        keys.append(HostKey(match[1], blob))
    return tuple(keys)


def pinned_keys(console: str) -> tuple[HostKey, ...]:
    """Host keys whose fingerprints were printed too: both blocks must agree."""
    printed = {fp.sha256 for fp in parse_fingerprints(console)}
    return tuple(key for key in parse_host_keys(console) if key.fingerprint in printed)


def known_hosts_lines(host: str, port: int, keys: tuple[HostKey, ...]) -> str:
    """OpenSSH known_hosts entries for ``host:port``."""
    name = host if port == 22 else f"[{host}]:{port}"
    return "".join(f"{name} {key.openssh}\n" for key in keys)
