"""YAML as coreos-cloudinit's Go YAML library sees it.

coreos-cloudinit parses user-data twice with a YAML 1.1 library derived from
libyaml: once into untyped maps (which decides the "kind" of every value, e.g.
``off`` is a bool and ``0644`` an int) and once into its typed structs (where a
string field keeps the scalar's source text, so ``off`` stays ``"off"``). This
module composes the text with PyYAML (libyaml when available, so syntax error
messages match) and types plain scalars with Go's rules, keeping both the typed
value and the text, plus the line of every key and list item.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
import re
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

try:
    from yaml import CBaseLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same nodes, other messages
    from yaml import BaseLoader as _BaseLoader  # type: ignore[assignment]


class Kind(enum.Enum):
    """The kind of a YAML value as Go's untyped decoding sees it."""

    NULL = "null"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float64"
    STRING = "string"
    MAP = "map"
    SEQ = "slice"


Scalar = None | bool | int | float | str | bytes


_PLAIN_TAG = "tag:lab,plain"
_STR_TAG = "tag:yaml.org,2002:str"
_BINARY_TAG = "tag:yaml.org,2002:binary"

_TRUE = ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")
_FALSE = ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")
_NULL = ("", "~", "null", "Null", "NULL")
_SPECIAL_FLOATS = {
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
}
#: Plain scalars Go's YAML library maps to a fixed value.
_KEYWORDS: dict[str, tuple[Kind, Scalar]] = {
    **dict.fromkeys(_NULL, (Kind.NULL, None)),
    **dict.fromkeys(_TRUE, (Kind.BOOL, True)),
    **dict.fromkeys(_FALSE, (Kind.BOOL, False)),
    **{word: (Kind.FLOAT, number) for word, number in _SPECIAL_FLOATS.items()},
}
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_OCTAL = re.compile(r"[+-]?0[0-7]+")
_HEX = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_BINARY = re.compile(r"-?0b[01]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` pair of a mapping, with the line of its key."""

    key: str
    line: int
    value: Node


@dataclass(frozen=True)
class Node:
    """A YAML value with its 1-based line.

    Scalars carry ``value`` (typed by Go's rules; ``bytes`` for ``!!binary``)
    and ``text`` (what a Go string field would hold). Literal block scalars
    (``|``) also carry ``body_line``, the line of their first content line, so
    a problem inside the block can be reported at its own line.
    """

    kind: Kind
    line: int
    value: Scalar = None
    text: str = ""
    body_line: int = 0
    entries: tuple[Entry, ...] = ()
    items: tuple[Node, ...] = ()


class YamlSyntaxError(Exception):
    """The text is not YAML; ``line`` is the line the YAML library reports."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class _Loader(_BaseLoader):
    """Composes nodes only, tagging untagged plain scalars for Go-style typing."""

    def resolve(self, kind: type, value: object, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN_TAG
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


def parse(text: str) -> Node | None:
    """Compose the first YAML document of ``text``; ``None`` when it is empty.

    Raises :class:`YamlSyntaxError` with the line and message coreos-cloudinit
    reports: libyaml's mark line (as the Go library prints it), or 1 when the
    library gives none.
    """
    loader = _Loader(text)
    try:
        root = loader.get_node() if loader.check_node() else None
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem_mark.line if exc.problem_mark is not None else 0
        context = exc.context_mark.line if exc.context_mark is not None else 0
        raise YamlSyntaxError(problem or context or 1, exc.problem or str(exc)) from exc
    except yaml.reader.ReaderError as exc:
        raise YamlSyntaxError(1, exc.reason) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, str(exc)) from exc
    finally:
        loader.dispose()
    return None if root is None else _convert(root)


def _convert(node: yaml.Node) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        entries = tuple(
            Entry(
                key.value if isinstance(key, ScalarNode) else "",
                key.start_mark.line + 1,
                _convert(value),
            )
            for key, value in node.value
        )
        return Node(Kind.MAP, line, entries=entries)
    if isinstance(node, SequenceNode):
        return Node(Kind.SEQ, line, items=tuple(_convert(item) for item in node.value))
    assert isinstance(node, ScalarNode)
    text = str(node.value)
    kind, value = _type_scalar(node.tag, text)
    body_line = line + 1 if node.style == "|" else 0
    return Node(kind, line, value=value, text=text, body_line=body_line)


def _type_scalar(tag: str, text: str) -> tuple[Kind, Scalar]:
    if tag == _STR_TAG:
        return Kind.STRING, text
    if tag == _BINARY_TAG:
        try:
            return Kind.STRING, base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            return Kind.STRING, text
    return resolve_plain(text)


def resolve_plain(text: str) -> tuple[Kind, Scalar]:
    """Type a plain scalar the way go-yaml's ``resolve`` does (YAML 1.1 rules)."""
    if text in _KEYWORDS:
        return _KEYWORDS[text]
    if text[0] in "+-0123456789":
        number = _parse_number(text.replace("_", ""))
        if number is not None:
            return number
    elif text[0] == "." and _FLOAT.fullmatch(text):
        return Kind.FLOAT, float(text)
    return Kind.STRING, text


def _parse_number(plain: str) -> tuple[Kind, Scalar] | None:
    if _HEX.fullmatch(plain):
        return Kind.INT, int(plain.replace("0x", "").replace("0X", ""), 16)
    if _OCTAL.fullmatch(plain):
        return Kind.INT, int(plain, 8)
    if _DECIMAL.fullmatch(plain) and not _looks_octal(plain):
        return Kind.INT, int(plain)
    if _FLOAT.fullmatch(plain) or _FLOAT_WORDS.fullmatch(plain):
        return Kind.FLOAT, float(plain)
    if _BINARY.fullmatch(plain):
        return Kind.INT, int(plain.replace("0b", ""), 2)
    return None


def _looks_octal(plain: str) -> bool:
    """``08`` is not an int for Go (a leading 0 means octal), only a float."""
    digits = plain.lstrip("+-")
    return len(digits) > 1 and digits.startswith("0")
