"""systemd unit files as fleet sees them: parsing, serialising, hashing, names.

fleet identifies a unit file by the SHA1 of its *serialised* options (options
grouped by section in order of first appearance, ``name=value`` lines, one blank
line between sections), not of the bytes the user wrote; ``fleetctl cat`` prints
that serialised form. The parser follows go-systemd's lexer, which fleet uses:
text before the first section is ignored, ``#``/``;`` start comments, a trailing
backslash continues a line (joined with a space), names and values are trimmed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from provisioner.guest.fleet.errors import UnitFileError, UnitValidationError

#: Suffixes fleetctl treats as unit names (anything else gets ``.service``).
RECOGNIZED_TYPES = ("service", "socket", "timer", "path", "device", "mount", "automount")

#: Unit types fleet's API accepts.
VALID_UNIT_TYPES = frozenset(
    {
        "automount",
        "busname",
        "device",
        "mount",
        "path",
        "scope",
        "service",
        "slice",
        "snapshot",
        "socket",
        "swap",
        "target",
        "timer",
    }
)

#: Unit types that may be templates or instances (contain ``@``).
TEMPLATE_UNIT_TYPES = frozenset({"path", "service", "socket", "target", "timer"})

UNIT_NAME_MAX = 256
_VALID_NAME_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" + ":-_.\\@"
)

XFLEET_SECTION = "X-Fleet"


@dataclass(frozen=True)
class UnitOption:
    """One ``Name=Value`` line of a unit file, with its section."""

    section: str
    name: str
    value: str


@dataclass(frozen=True)
class UnitFile:
    """A parsed unit file: its options in file order."""

    options: tuple[UnitOption, ...]
    _text: str = field(default="", repr=False, compare=False)

    @property
    def text(self) -> str:
        """The serialised unit file (what is hashed, stored and installed)."""
        return self._text or serialize_options(self.options)

    @property
    def hash(self) -> str:
        """Hex SHA1 of the serialised unit file (fleet's unit hash)."""
        return hashlib.sha1(self.text.encode("utf-8"), usedforsecurity=False).hexdigest()

    def values(self, section: str, name: str) -> list[str]:
        """All values of ``name`` in ``section``; [X-Fleet] lines may hold several."""
        found: list[str] = []
        for opt in self.options:
            if opt.section == section and opt.name == name:
                if section == XFLEET_SECTION:
                    found.extend(split_multivalue(opt.value))
                else:
                    found.append(opt.value)
        return found

    def option_names(self, section: str) -> list[str]:
        """Distinct option names of ``section`` in order of first appearance."""
        seen: list[str] = []
        for opt in self.options:
            if opt.section == section and opt.name not in seen:
                seen.append(opt.name)
        return seen

    def has_section(self, section: str) -> bool:
        return any(opt.section == section for opt in self.options)

    @property
    def description(self) -> str:
        """First ``[Unit] Description=``, or ``""``."""
        values = self.values("Unit", "Description")
        return values[0] if values else ""


def unit_from_options(options: list[UnitOption] | tuple[UnitOption, ...]) -> UnitFile:
    opts = tuple(options)
    return UnitFile(opts, serialize_options(opts))


def serialize_options(options: tuple[UnitOption, ...] | list[UnitOption]) -> str:
    """Serialise options the way go-systemd does (fleet hashes this text)."""
    sections: dict[str, list[UnitOption]] = {}
    for opt in options:
        sections.setdefault(opt.section, []).append(opt)
    parts: list[str] = []
    for section, opts in sections.items():
        lines = [f"[{section}]"] + [f"{opt.name}={opt.value}" for opt in opts]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def split_multivalue(line: str) -> list[str]:
    """Split ``"a=b" "c=d"`` into values; a line not wrapped in quotes is one value."""
    if not (line.startswith('"') and line.endswith('"')):
        return [line]
    values: list[str] = []
    current: list[str] = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
            continue
        if char == " " and not quoted:
            values.append("".join(current))
            current = []
            continue
        current.append(char)
    values.append("".join(current))
    return values


def parse_unit_file(text: str, *, source: str = "unit file") -> UnitFile:
    """Parse unit file text into options; raises UnitFileError naming ``source``."""
    options: list[UnitOption] = []
    section: str | None = None
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        lineno = index + 1
        index += 1
        stripped = line.strip()
        if section is None:
            # Everything before the first section header is ignored, like go-systemd.
            if stripped.startswith(("#", ";")):
                index = _skip_continued(lines, index, line)
                continue
            start = line.find("[")
            if start == -1:
                continue
            line = line[start:]
            stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(("#", ";")):
            index = _skip_continued(lines, index, line)
            continue
        if stripped.startswith("["):
            section = _section_name(stripped, f"{source}:{lineno}")
            continue
        if section is None:
            continue
        if "=" not in stripped:
            raise UnitFileError(
                f"{source}:{lineno}: unexpected newline encountered while parsing option name",
                hint="every line in a section must look like Name=value",
            )
        name, _, rest = line.partition("=")
        value, index = _continued_value(rest, lines, index)
        options.append(UnitOption(section, name.strip(), value))
    return unit_from_options(options)


def _section_name(header: str, where: str) -> str:
    end = header.find("]")
    if end == -1:
        raise UnitFileError(
            f"{where}: unable to find end of section", hint="close the section header with ']'"
        )
    garbage = header[end + 1 :].strip()
    if garbage:
        raise UnitFileError(
            f"{where}: found garbage after section name {header[1:end]}: {garbage!r}"
        )
    return header[1:end]


def _continued_value(rest: str, lines: list[str], index: int) -> tuple[str, int]:
    """A value with its backslash continuation lines joined by spaces, trimmed."""
    parts: list[str] = []
    while rest.endswith("\\"):
        parts.append(rest[:-1] + " ")
        if index >= len(lines):
            rest = ""
            break
        rest = lines[index]
        index += 1
    parts.append(rest)
    return "".join(parts).strip(), index


def _skip_continued(lines: list[str], index: int, line: str) -> int:
    """Skip the continuation lines of a comment ending in a backslash."""
    while line.rstrip(" ").endswith("\\") and index < len(lines):
        line = lines[index]
        index += 1
    return index


@dataclass(frozen=True)
class UnitNameInfo:
    """What a unit name says about itself (template, instance, prefix)."""

    full_name: str  # foo@bar.service
    name: str  # foo@bar
    prefix: str  # foo
    template: str  # foo@.service ("" if not a template/instance)
    instance: str  # bar

    @property
    def is_instance(self) -> bool:
        return bool(self.instance)

    @property
    def is_template(self) -> bool:
        return bool(self.template) and not self.is_instance


def unit_name_info(full_name: str) -> UnitNameInfo | None:
    """Split a unit name into its parts; None if it has no ``.``."""
    dot = full_name.rfind(".")
    if dot == -1:
        return None
    name, suffix = full_name[:dot], full_name[dot:]
    at = name.find("@")
    if at == -1:
        return UnitNameInfo(full_name, name, name, "", "")
    return UnitNameInfo(full_name, name, name[:at], f"{name[:at]}@{suffix}", name[at + 1 :])


def expand_specifiers(value: str, info: UnitNameInfo) -> str:
    """Expand ``%n %N %p %i`` in an [X-Fleet] value (fleet's unitPrintf)."""
    value = value.replace("%n", info.full_name)
    value = value.replace("%N", info.name)
    value = value.replace("%p", info.prefix)
    return value.replace("%i", info.instance)


def validate_name(name: str) -> None:
    """Raise UnitValidationError with fleet's message if ``name`` is not a valid unit name."""
    if not name:
        raise UnitValidationError("unit name cannot be empty")
    if len(name) > UNIT_NAME_MAX:
        raise UnitValidationError(f"unit name exceeds maximum length ({UNIT_NAME_MAX})")
    dot = name.rfind(".")
    if dot == -1:
        raise UnitValidationError('unit name must contain "."')
    if dot == len(name) - 1:
        raise UnitValidationError('unit name cannot end in "."')
    suffix = name[dot + 1 :]
    if suffix not in VALID_UNIT_TYPES:
        raise UnitValidationError(f"invalid unit type: {go_quote(suffix)}")
    if "@" in name and suffix not in TEMPLATE_UNIT_TYPES:
        raise UnitValidationError(f"invalid unit type for template: {go_quote(suffix)}")
    for char in name[:dot]:
        if char not in _VALID_NAME_CHARS:
            raise UnitValidationError(f"invalid character {go_quote_rune(char)} in unit name")
    if name.startswith("@"):
        raise UnitValidationError('unit name cannot start in "@"')


def is_recognized_unit_type(name: str) -> bool:
    return any(name.endswith("." + kind) for kind in RECOGNIZED_TYPES)


def go_path_base(path: str) -> str:
    """Go's ``path.Base``."""
    if not path:
        return "."
    trimmed = path.rstrip("/")
    if not trimmed:
        return "/"
    return trimmed.rsplit("/", 1)[-1]


def mangle_unit_name(arg: str) -> str:
    """fleetctl's unitNameMangle: base name, ``.service`` appended if no known suffix."""
    base = go_path_base(arg)
    return base if is_recognized_unit_type(base) else base + ".service"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_ESCAPES["\v"] = "\\v"


def _go_escape(char: str, quote: str) -> str:
    if char in (quote, "\\"):
        return "\\" + char
    if char in _GO_ESCAPES:
        return _GO_ESCAPES[char]
    code = ord(char)
    if char.isprintable():
        return char
    if code < 0x80:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string."""
    return '"' + "".join(_go_escape(char, '"') for char in value) + '"'


def go_quote_rune(char: str) -> str:
    """Go's ``%q`` of a rune."""
    return "'" + _go_escape(char, "'") + "'"
