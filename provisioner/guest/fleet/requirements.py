"""The ``[X-Fleet]`` section: scheduling requirements and fleet's validation rules.

Values go through specifier expansion with the unit's *own* name (``%n %N %p
%i``), so an instance ``pin@abc.service`` of a template with ``MachineID=%i``
requires machine ``abc``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from provisioner.guest.fleet.errors import UnitValidationError
from provisioner.guest.fleet.unitfile import (
    XFLEET_SECTION,
    UnitFile,
    expand_specifiers,
    go_quote,
    unit_name_info,
)

MACHINE_ID = "MachineID"
MACHINE_OF = "MachineOf"
MACHINE_METADATA = "MachineMetadata"
CONFLICTS = "Conflicts"
GLOBAL = "Global"
REPLACES = "Replaces"
DEPRECATED_MACHINE_ID = "X-ConditionMachineID"
DEPRECATED_MACHINE_BOOT_ID = "X-ConditionMachineBootID"
DEPRECATED_MACHINE_OF = "X-ConditionMachineOf"
DEPRECATED_MACHINE_METADATA = "X-ConditionMachineMetadata"
DEPRECATED_CONFLICTS = "X-Conflicts"

KNOWN_KEYS = frozenset(
    {
        MACHINE_ID,
        MACHINE_OF,
        MACHINE_METADATA,
        CONFLICTS,
        GLOBAL,
        REPLACES,
        DEPRECATED_MACHINE_ID,
        DEPRECATED_MACHINE_BOOT_ID,
        DEPRECATED_MACHINE_OF,
        DEPRECATED_MACHINE_METADATA,
        DEPRECATED_CONFLICTS,
    }
)

_TRUTHY = frozenset({"true", "yes", "1", "on", "t"})


@dataclass(frozen=True)
class Requirements:
    """What a unit asks of the machine it runs on."""

    machine_id: str | None = None
    peers: tuple[str, ...] = ()
    metadata: tuple[tuple[str, frozenset[str]], ...] = ()
    conflicts: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    is_global: bool = False

    def metadata_map(self) -> dict[str, frozenset[str]]:
        return dict(self.metadata)


def _raw_values(name: str | None, unit: UnitFile, key: str) -> list[str]:
    values = unit.values(XFLEET_SECTION, key)
    info = unit_name_info(name) if name else None
    if info is None:
        return values
    return [expand_specifiers(value, info) for value in values]


def requirements_of(name: str | None, unit: UnitFile) -> Requirements:
    """Extract the [X-Fleet] requirements of unit ``name`` (None: no specifier expansion)."""

    def values(key: str) -> list[str]:
        return _raw_values(name, unit, key)

    machine_id: str | None = None
    for key in (MACHINE_ID, DEPRECATED_MACHINE_ID, DEPRECATED_MACHINE_BOOT_ID):
        found = values(key)
        if found:
            machine_id = found[0]
            break

    metadata: dict[str, set[str]] = {}
    for key in (DEPRECATED_MACHINE_METADATA, MACHINE_METADATA):
        for pair in values(key):
            parts = pair.split("=")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                continue
            metadata.setdefault(parts[0], set()).add(parts[1])

    conflicts = list(values(DEPRECATED_CONFLICTS))
    for value in values(CONFLICTS):
        conflicts.extend(value.split())

    global_values = values(GLOBAL)
    is_global = bool(global_values) and global_values[-1].lower() in _TRUTHY

    return Requirements(
        machine_id=machine_id,
        peers=tuple(values(DEPRECATED_MACHINE_OF) + values(MACHINE_OF)),
        metadata=tuple(sorted((key, frozenset(vals)) for key, vals in metadata.items())),
        conflicts=tuple(conflicts),
        replaces=tuple(values(REPLACES)),
        is_global=is_global,
    )


def unrecognized_keys(unit: UnitFile) -> list[str]:
    """[X-Fleet] keys fleet does not know (fleetctl only warns about them)."""
    return [key for key in unit.option_names(XFLEET_SECTION) if key not in KNOWN_KEYS]


def _class_char(pattern: str, i: int) -> tuple[str, int] | None:
    """One character of a Go character class at ``i``: (char, next index) or None if bad."""
    if i >= len(pattern) or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None
    return pattern[i], i + 1


def _class_regex(pattern: str, i: int) -> tuple[str, int] | None:
    """Translate ``[...]`` starting after the ``[`` at ``i``: (regex, next index)."""
    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    ranges: list[str] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            i += 1
            break
        low = _class_char(pattern, i)
        if low is None:
            return None
        lo, i = low
        if i < len(pattern) and pattern[i] == "-":
            high = _class_char(pattern, i + 1)
            if high is None:
                return None
            hi, i = high
            ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            ranges.append(re.escape(lo))
    return f"[{'^' if negate else ''}{''.join(ranges)}]", i


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str] | None:
    """Translate a Go ``path.Match`` pattern; None if the pattern is malformed."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            i += 1
            if i >= len(pattern):
                return None
            out.append(re.escape(pattern[i]))
        elif char == "[":
            translated = _class_regex(pattern, i + 1)
            if translated is None:
                return None
            cls, i = translated
            out.append(cls)
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_matches(pattern: str, name: str) -> bool:
    """Go ``path.Match(pattern, name)``; malformed patterns match nothing."""
    regex = _glob_regex(pattern)
    return regex is not None and regex.match(name) is not None


def validate_options(unit: UnitFile) -> None:
    """fleet's ValidateOptions: reject unresolvable or contradictory [X-Fleet] options."""
    req = requirements_of(None, unit)
    peers = list(dict.fromkeys(req.peers))
    conflicts = list(dict.fromkeys(req.conflicts))
    replaces = list(dict.fromkeys(req.replaces))
    for peer in peers:
        for conflict in conflicts:
            if glob_matches(conflict, peer):
                raise UnitValidationError(
                    f"unresolvable requirements: peer {go_quote(peer)} matches conflict "
                    f"{go_quote(conflict)}"
                )
    for peer in peers:
        for replace in replaces:
            if glob_matches(replace, peer):
                raise UnitValidationError(
                    f"unresolvable requirements: peer {go_quote(peer)} matches replace "
                    f"{go_quote(replace)}"
                )
    has_target = req.machine_id is not None
    rules = (
        (has_target and bool(peers), "MachineID cannot be used with Peers"),
        (has_target and bool(conflicts), "MachineID cannot be used with Conflicts"),
        (has_target and req.is_global, "MachineID cannot be used with Global"),
        (has_target and bool(replaces), "MachineID cannot be used with Replaces"),
        (req.is_global and bool(peers), "Global cannot be used with Peers"),
        (req.is_global and bool(replaces), "Global cannot be used with Replaces"),
        (bool(conflicts) and bool(replaces), "Conflicts cannot be used with Replaces"),
    )
    for broken, message in rules:
        if broken:
            raise UnitValidationError(message)
