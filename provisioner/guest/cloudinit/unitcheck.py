"""Checks of systemd unit file text, as systemd's own parser reports them.

systemd refuses to load a unit whose section header is malformed and ignores
(with a warning) lines outside any section, lines without ``=`` and unknown
sections. Finding these while validating user-data saves a boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from provisioner.guest.cloudinit.goformat import quote

#: Sections systemd knows per unit type; ``X-`` sections are always allowed.
#: networkd files (.network/.netdev/.link) have many sections and are not checked.
KNOWN_SECTIONS: dict[str, frozenset[str]] = {
    "service": frozenset({"Unit", "Service", "Install"}),
    "socket": frozenset({"Unit", "Socket", "Install"}),
    "timer": frozenset({"Unit", "Timer", "Install"}),
    "path": frozenset({"Unit", "Path", "Install"}),
    "mount": frozenset({"Unit", "Mount", "Install"}),
    "automount": frozenset({"Unit", "Automount", "Install"}),
    "swap": frozenset({"Unit", "Swap", "Install"}),
    "slice": frozenset({"Unit", "Slice", "Install"}),
    "scope": frozenset({"Unit", "Scope"}),
    "target": frozenset({"Unit", "Install"}),
    "device": frozenset({"Unit", "Install"}),
}


@dataclass(frozen=True)
class Problem:
    """A problem on line ``index`` (0-based) of the unit text."""

    index: int
    kind: Literal["error", "warning"]
    message: str


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(index of first physical line, joined line) with backslash continuations."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for index, raw in enumerate(text.split("\n")):
        line = raw.rstrip("\r")
        if pending and line.lstrip().startswith(("#", ";")):
            continue
        if not pending:
            start = index
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        lines.append((start, " ".join(pending)))
        pending = []
    if pending:
        lines.append((start, " ".join(pending)))
    return lines


def sections(text: str) -> list[str]:
    """Names of the well-formed section headers in ``text``, in order."""
    found = []
    for _, line in _logical_lines(text):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]") and len(stripped) > 2:
            found.append(stripped[1:-1])
    return found


def check_unit_text(text: str, unit_type: str) -> list[Problem]:
    """Problems systemd would report when loading ``text`` as a ``unit_type`` unit."""
    known = KNOWN_SECTIONS.get(unit_type)
    problems: list[Problem] = []
    in_section = False
    for index, line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                problems.append(
                    Problem(index, "error", f"invalid section header {quote(stripped)}")
                )
                return problems
            name = stripped[1:-1]
            in_section = True
            if known is not None and name not in known and not name.startswith("X-"):
                problems.append(Problem(index, "warning", f"unknown section {quote(name)}"))
            continue
        if not in_section:
            problems.append(
                Problem(index, "warning", f"line outside of a section {quote(stripped)}")
            )
        elif "=" not in stripped:
            problems.append(Problem(index, "warning", f'missing "=" in line {quote(stripped)}'))
    return problems
