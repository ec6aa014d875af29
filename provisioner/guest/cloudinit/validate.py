"""``coreos-cloudinit --validate``: report problems in user-data by line.

Reproduces coreos-cloudinit's validator (config/validate): recognition of the
``#cloud-config`` header and ``#!`` scripts, YAML syntax errors at the line the
YAML library reports, then its rules in order -- discovery URL, write_files
encodings, structure (unknown keys, deprecated keys, wrong types), values
matching their patterns, read-only paths and ``write_files`` under ``coreos`` --
with the same wording. Two checks go beyond it, in the same style: unit and
drop-in names must be names systemd accepts, and unit/drop-in ``content`` must
parse as a systemd unit file.

Line numbers are 1-based lines of the whole user-data (the header is line 1)
and point at the offending key or list item. A YAML syntax error is reported
at the line coreos-cloudinit prints for it: the mark of libyaml's error as
go-yaml passes it on (0-based, so often the line before the problem), or line
1 when there is none.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import posixpath
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from provisioner.guest.cloudinit import schema, unitcheck
from provisioner.guest.cloudinit.goformat import quote, value
from provisioner.guest.cloudinit.schema import T, Type
from provisioner.guest.cloudinit.yamlnodes import Kind, Node, YamlSyntaxError, parse

ReportKind = Literal["error", "warning", "info"]

HEADER_MESSAGE = 'must be "#cloud-config" or begin with "#!"'


@dataclass(frozen=True)
class Report:
    """One validator entry: ``line N: kind: message``."""

    line: int
    kind: ReportKind
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """The JSON form coreos-cloudinit uses: ``{"kind", "message", "line"}``."""
        return {"kind": self.kind, "message": self.message, "line": self.line}


def is_cloud_config(text: str) -> bool:
    """The first line, without a trailing CR, is exactly ``#cloud-config``."""
    return text.split("\n", 1)[0].removesuffix("\r") == "#cloud-config"


def is_script(text: str) -> bool:
    """The user-data is a script (its first line starts with ``#!``)."""
    return text.startswith("#!")


def is_ignition(text: str) -> bool:
    """The user-data is an Ignition config (``ignitionVersion`` or ``ignition.version``)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    ignition = data.get("ignition")
    return "ignitionVersion" in data or (isinstance(ignition, dict) and "version" in ignition)


def validate(text: str) -> list[Report]:
    """Validate user-data; the entries sorted by line (rule order within a line)."""
    if not text or is_script(text):
        return []
    if not is_cloud_config(text):
        return [] if is_ignition(text) else [Report(1, "error", HEADER_MESSAGE)]
    try:
        root = parse(text)
    except YamlSyntaxError as exc:
        return [Report(exc.line, "error", exc.message)]
    if root is None or root.kind is Kind.NULL:
        return []
    if root.kind is not Kind.MAP:
        return [
            Report(
                root.line,
                "error",
                f"cannot unmarshal {_yaml_kind(root)} into a cloud-config mapping",
            )
        ]
    reports: list[Report] = []
    config = _Item("", root.line, root)
    for rule in _RULES:
        rule(config, reports.append)
    return sorted(reports, key=lambda report: report.line)


@dataclass(frozen=True)
class _Item:
    """A node with the name the validator gives it (``units[0]``, ``drop_ins``)."""

    name: str
    line: int
    node: Node

    def children(self) -> Iterator[_Item]:
        if self.node.kind is Kind.MAP:
            for entry in self.node.entries:
                yield _Item(schema.normalize_key(entry.key), entry.line, entry.value)
        elif self.node.kind is Kind.SEQ:
            for index, item in enumerate(self.node.items):
                yield _Item(f"{self.name}[{index}]", item.line, item)

    def child(self, name: str) -> _Item | None:
        if self.node.kind is not Kind.MAP:
            return None
        return next((child for child in self.children() if child.name == name), None)

    def path(self, *names: str) -> _Item | None:
        item: _Item | None = self
        for name in names:
            item = item.child(name) if item is not None else None
        return item

    def list_items(self, *names: str) -> Iterator[_Item]:
        item = self.path(*names)
        if item is not None and item.node.kind is Kind.SEQ:
            yield from item.children()

    def scalar_text(self) -> str | None:
        """The text a Go string field would hold, or None for null/collections."""
        if self.node.kind in (Kind.NULL, Kind.MAP, Kind.SEQ):
            return None
        return self.node.text


Emit = Callable[[Report], None]


#: The YAML kinds a field of each type accepts (coreos-cloudinit's ``isCompatible``).
ACCEPTED_KINDS: dict[T, tuple[Kind, ...]] = {
    T.STRING: (Kind.STRING, Kind.INT, Kind.FLOAT, Kind.BOOL),
    T.BOOL: (Kind.BOOL,),
    T.INT: (Kind.INT,),
    T.FLOAT: (Kind.FLOAT, Kind.INT),
    T.STRUCT: (Kind.MAP,),
    T.SLICE: (Kind.SEQ,),
}


def compatible(kind: Kind, want: T) -> bool:
    """Whether a value of YAML ``kind`` can fill a field of type ``want``."""
    return kind in ACCEPTED_KINDS[want]


def _yaml_kind(node: Node) -> str:
    return {Kind.SEQ: "!!seq", Kind.MAP: "!!map"}.get(node.kind, "!!" + node.kind.value)


def _check_discovery_url(config: _Item, emit: Emit) -> None:
    """``coreos.etcd.discovery`` must parse as a request URI (legacy etcd only)."""
    item = config.path("coreos", "etcd", "discovery")
    if item is None:
        return
    text = item.scalar_text()
    if text is None or not _is_request_uri(text):
        emit(Report(item.line, "warning", "discovery URL is not valid"))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST_CHARS = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:\[\]<>\"%-]*$")


def _is_request_uri(text: str) -> bool:
    """Go's ``url.ParseRequestURI`` for the cases that matter: absolute URL or path."""
    if not text or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        return False
    scheme = _SCHEME.match(text)
    if scheme is None:
        return text.startswith("/")
    rest = text[scheme.end() :]
    if rest.startswith("//"):
        authority = rest[2:].split("/", 1)[0].split("?", 1)[0]
        host = authority.rsplit("@", 1)[-1]
        return bool(_HOST_CHARS.match(host))
    return True


def _check_encoding(config: _Item, emit: Emit) -> None:
    """``write_files[].content`` must decode with the file's ``encoding``."""
    for item in config.list_items("write_files"):
        encoding = item.child("encoding")
        encoding_text = encoding.scalar_text() if encoding is not None else None
        if encoding is None or encoding_text is None:
            continue
        content = item.child("content")
        raw = _content_bytes(content)
        try:
            decode_content(raw, encoding_text)
        except ValueError:
            line = content.line if content is not None else encoding.line
            emit(Report(line, "error", f"content cannot be decoded as {quote(encoding_text)}"))


def _content_bytes(item: _Item | None) -> bytes:
    if item is None:
        return b""
    if isinstance(item.node.value, bytes):
        return item.node.value
    return (item.scalar_text() or "").encode("utf-8")


def decode_content(content: bytes, encoding: str) -> bytes:
    """Decode ``write_files`` content; ``ValueError`` when it cannot be decoded."""
    if encoding == "":
        return content
    if encoding in ("b64", "base64"):
        return _b64(content)
    if encoding in ("gz", "gzip"):
        return _gunzip(content)
    if encoding in ("gz+base64", "gzip+base64", "gz+b64", "gzip+b64"):
        return _gunzip(_b64(content))
    raise ValueError(f"unsupported encoding {quote(encoding)}")


def _b64(content: bytes) -> bytes:
    try:
        return base64.b64decode(content.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


def _gunzip(content: bytes) -> bytes:
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"invalid gzip data: {exc}") from exc


def _check_structure(config: _Item, emit: Emit) -> None:
    """Unknown keys, deprecated keys and values of the wrong type."""
    _check_node_structure(config, schema.CLOUD_CONFIG, emit)


def _check_node_structure(item: _Item, want: Type, emit: Emit) -> None:
    if not compatible(item.node.kind, want.kind):
        emit(
            Report(
                item.line, "warning", f"incorrect type for {quote(item.name)} (want {want.human()})"
            )
        )
        return
    if want.kind is T.STRUCT:
        for child in item.children():
            field = want.field(child.name)
            if field is None:
                emit(Report(child.line, "warning", f"unrecognized key {quote(child.name)}"))
                continue
            if field.deprecated:
                emit(
                    Report(
                        child.line,
                        "warning",
                        f"deprecated key {quote(child.name)} ({field.deprecated})",
                    )
                )
            _check_node_structure(child, field.type, emit)
    elif want.kind is T.SLICE:
        assert want.elem is not None
        for child in item.children():
            _check_node_structure(child, want.elem, emit)


def _check_validity(config: _Item, emit: Emit) -> None:
    """Values of fields with a pattern (unit commands, reboot strategy, ...) match it."""
    _check_node_validity(config, schema.CLOUD_CONFIG, "", emit)


def _check_node_validity(item: _Item, want: Type, valid: str, emit: Emit) -> None:
    if not compatible(item.node.kind, want.kind):
        return
    if valid and want.kind is T.STRING:
        text = item.scalar_text() or ""
        if text and re.search(valid, text) is None:
            emit(Report(item.line, "error", f"invalid value {value(text)}"))
    if want.kind is T.STRUCT:
        for child in item.children():
            field = want.field(child.name)
            if field is not None:
                _check_node_validity(child, field.type, field.valid, emit)
    elif want.kind is T.SLICE:
        assert want.elem is not None
        for child in item.children():
            _check_node_validity(child, want.elem, valid, emit)


def _check_write_files(config: _Item, emit: Emit) -> None:
    """Files cannot be written under ``/usr`` (read-only on Container Linux)."""
    for item in config.list_items("write_files"):
        path = item.child("path")
        text = path.scalar_text() if path is not None else None
        if path is None or text is None:
            continue
        if posixpath.normpath(posixpath.dirname(text) or ".").startswith("/usr"):
            emit(Report(path.line, "error", "file cannot be written to a read-only filesystem"))


def _check_write_files_under_coreos(config: _Item, emit: Emit) -> None:
    """``write_files`` is a top-level key, not a ``coreos`` one."""
    item = config.path("coreos", "write_files")
    if item is not None:
        emit(Report(item.line, "info", "write_files doesn't belong under coreos"))


def _check_unit_contents(config: _Item, emit: Emit) -> None:
    """Unit and drop-in ``content`` must load as systemd unit files."""
    for unit in config.list_items("coreos", "units"):
        if unit.node.kind is not Kind.MAP:
            continue
        name = unit.child("name")
        name_text = (name.scalar_text() if name is not None else None) or ""
        unit_type = posixpath.splitext(name_text)[1].lstrip(".")
        content = unit.child("content")
        _check_unit_content(content, unit_type, emit)
        _check_enable_has_install(unit, content, unit_type, emit)
        for drop_in in unit.list_items("drop_ins"):
            if drop_in.node.kind is Kind.MAP:
                _check_unit_content(drop_in.child("content"), unit_type, emit)


def _check_unit_content(content: _Item | None, unit_type: str, emit: Emit) -> None:
    text = content.scalar_text() if content is not None else None
    if content is None or not text:
        return
    for problem in unitcheck.check_unit_text(text, unit_type):
        body = content.node.body_line
        line = body + problem.index if body else content.line
        emit(Report(line, problem.kind, problem.message))


def _check_enable_has_install(
    unit: _Item, content: _Item | None, unit_type: str, emit: Emit
) -> None:
    enable = unit.child("enable")
    text = content.scalar_text() if content is not None else None
    if enable is None or enable.node.value is not True or not text or unit_type in _NETWORK_TYPES:
        return
    if "Install" not in unitcheck.sections(text):
        emit(Report(enable.line, "warning", "cannot enable a unit without an [Install] section"))


_NETWORK_TYPES = frozenset({"network", "netdev", "link"})

_RULES: tuple[Callable[[_Item, Emit], None], ...] = (
    _check_discovery_url,
    _check_encoding,
    _check_structure,
    _check_validity,
    _check_write_files,
    _check_write_files_under_coreos,
    _check_unit_contents,
)
