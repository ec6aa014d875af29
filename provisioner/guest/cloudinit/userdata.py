"""User-data as fetched: gzip, its format, and ``$private_ipv4``-style substitution."""

from __future__ import annotations

import enum
import gzip
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from provisioner.guest.cloudinit.errors import CloudInitError
from provisioner.guest.cloudinit.validate import is_cloud_config, is_ignition, is_script

#: The substitution variables and the environment variables that supply them.
VARIABLES = {
    "$public_ipv4": "COREOS_PUBLIC_IPV4",
    "$private_ipv4": "COREOS_PRIVATE_IPV4",
    "$public_ipv6": "COREOS_PUBLIC_IPV6",
    "$private_ipv6": "COREOS_PRIVATE_IPV6",
}


class Format(enum.Enum):
    """What the user-data is."""

    EMPTY = "empty"
    CLOUD_CONFIG = "cloud-config"
    SCRIPT = "script"
    IGNITION = "ignition"
    UNKNOWN = "unknown"


def detect(text: str) -> Format:
    """Recognise user-data the way coreos-cloudinit does."""
    if not text:
        return Format.EMPTY
    if is_script(text):
        return Format.SCRIPT
    if is_cloud_config(text):
        return Format.CLOUD_CONFIG
    if is_ignition(text):
        return Format.IGNITION
    return Format.UNKNOWN


def decode(data: bytes) -> str:
    """The user-data text: gunzipped if gzip-compressed, then UTF-8."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CloudInitError(
                f"user-data looks gzip-compressed but cannot be decompressed: {exc}"
            ) from None
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Addresses:
    """The values of ``$public_ipv4``, ``$private_ipv4``, ``$public_ipv6``, ``$private_ipv6``."""

    public_ipv4: str = ""
    private_ipv4: str = ""
    public_ipv6: str = ""
    private_ipv6: str = ""

    def substitutions(self) -> dict[str, str]:
        """``{"$public_ipv4": value, ...}``."""
        return {
            "$public_ipv4": self.public_ipv4,
            "$private_ipv4": self.private_ipv4,
            "$public_ipv6": self.public_ipv6,
            "$private_ipv6": self.private_ipv6,
        }

    def environment(self) -> dict[str, str]:
        """``COREOS_*`` variables for the addresses that are known (for /etc/environment)."""
        return {VARIABLES[key]: val for key, val in self.substitutions().items() if val}


def resolve_addresses(
    metadata: Mapping[str, str], environ: Mapping[str, str], local_ipv4: str = ""
) -> Addresses:
    """Each address from the metadata, else ``COREOS_*`` in the environment.

    IPv4 addresses known from neither fall back to ``local_ipv4`` (the first
    non-loopback address of the machine); IPv6 ones stay empty.
    """

    def pick(variable: str, fallback: str) -> str:
        name = variable.lstrip("$")
        return metadata.get(name) or environ.get(VARIABLES[variable], "") or fallback

    return Addresses(
        public_ipv4=pick("$public_ipv4", local_ipv4),
        private_ipv4=pick("$private_ipv4", local_ipv4),
        public_ipv6=pick("$public_ipv6", ""),
        private_ipv6=pick("$private_ipv6", ""),
    )


def substitute(text: str, substitutions: Mapping[str, str]) -> str:
    """Replace ``$private_ipv4`` etc.; ``\\$private_ipv4`` stays a literal ``$private_ipv4``."""
    for key, val in substitutions.items():
        escaped = re.escape(key)
        text = re.sub(r"(?<!\\)" + escaped, _literal(val), text)
        text = re.sub(r"\\" + escaped, _literal(key), text)
    return text


def _literal(replacement: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement inserting ``replacement`` as is (no backslash processing)."""
    return lambda _match: replacement
