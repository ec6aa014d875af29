"""Typed cloud-config: user-data parsed into frozen dataclasses.

Parsing is lenient like coreos-cloudinit's: unknown keys and values of the wrong
type are dropped (the validator reports them), ``-`` and ``_`` in key names are
alike, and a string field keeps the scalar's text (``permissions: 0644`` is
``"0644"``, ``reboot_strategy: off`` is ``"off"``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.guest.cloudinit import schema
from provisioner.guest.cloudinit.errors import CloudInitError
from provisioner.guest.cloudinit.goformat import value as go_value
from provisioner.guest.cloudinit.schema import T, Type
from provisioner.guest.cloudinit.validate import compatible, decode_content
from provisioner.guest.cloudinit.yamlnodes import Node, YamlSyntaxError, parse

Raw = Mapping[str, object]

NETWORK_UNIT_TYPES = frozenset({"network", "netdev", "link"})


@dataclass(frozen=True)
class EnvSection:
    """A service's settings as ``(VARIABLE, value)`` pairs in declaration order.

    Only fields with a non-zero value are kept, formatted as Go's ``%v`` would
    (``true``, ``2``, ``0.5``).
    """

    values: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.values)


@dataclass(frozen=True)
class DropIn:
    """A unit drop-in (``<unit>.d/<name>``)."""

    name: str
    content: str


@dataclass(frozen=True)
class Unit:
    """A ``coreos.units`` entry (or one coreos-cloudinit generates)."""

    name: str
    mask: bool = False
    enable: bool = False
    runtime: bool = False
    content: str = ""
    command: str = ""
    drop_ins: tuple[DropIn, ...] = ()

    @property
    def type(self) -> str:
        """The unit type: the name's extension without the dot."""
        return posixpath.splitext(self.name)[1].lstrip(".")

    @property
    def group(self) -> str:
        """``network`` for networkd files, else ``system`` (the directory under systemd/)."""
        return "network" if self.type in NETWORK_UNIT_TYPES else "system"


@dataclass(frozen=True)
class File:
    """A ``write_files`` entry. ``content`` is as written (before ``encoding``)."""

    path: str
    content: bytes = b""
    owner: str = ""
    permissions: str = ""
    encoding: str = ""

    def mode(self) -> int:
        """The file mode: ``permissions`` as octal, 0644 when unset."""
        if not self.permissions:
            return 0o644
        try:
            return int(self.permissions, 8)
        except ValueError:
            raise CloudInitError(
                f"{self.path}: unable to parse file permissions {self.permissions!r} "
                "as octal integer",
                hint="write permissions as an octal string such as '0644'",
            ) from None

    def decoded(self) -> bytes:
        """The content after ``encoding`` (base64 and/or gzip) is undone."""
        try:
            return decode_content(self.content, self.encoding)
        except ValueError as exc:
            raise CloudInitError(
                f"{self.path}: content cannot be decoded as {self.encoding!r}: {exc}",
                hint="encoding is one of b64, base64, gz, gzip, gz+base64, gzip+base64, "
                "gz+b64, gzip+b64",
            ) from None


@dataclass(frozen=True)
class User:
    """A ``users`` entry."""

    name: str
    passwd: str = ""
    ssh_authorized_keys: tuple[str, ...] = ()
    gecos: str = ""
    homedir: str = ""
    no_create_home: bool = False
    primary_group: str = ""
    groups: tuple[str, ...] = ()
    no_user_group: bool = False
    system: bool = False
    no_log_init: bool = False
    shell: str = ""


@dataclass(frozen=True)
class Oem:
    """``coreos.oem``: written to /etc/oem-release when ``id`` is set."""

    id: str = ""
    name: str = ""
    version_id: str = ""
    home_url: str = ""
    bug_report_url: str = ""


@dataclass(frozen=True)
class Update:
    """``coreos.update``: update.conf settings and the reboot strategy."""

    reboot_strategy: str = ""
    group: str = ""
    server: str = ""

    @property
    def values(self) -> tuple[tuple[str, str], ...]:
        """``(VARIABLE, value)`` for the fields that are set, in declaration order."""
        pairs = (
            ("REBOOT_STRATEGY", self.reboot_strategy),
            ("GROUP", self.group),
            ("SERVER", self.server),
        )
        return tuple((key, val) for key, val in pairs if val)


@dataclass(frozen=True)
class CoreOS:
    """The ``coreos`` section."""

    etcd: EnvSection = field(default_factory=EnvSection)
    etcd2: EnvSection = field(default_factory=EnvSection)
    flannel: EnvSection = field(default_factory=EnvSection)
    fleet: EnvSection = field(default_factory=EnvSection)
    locksmith: EnvSection = field(default_factory=EnvSection)
    oem: Oem = field(default_factory=Oem)
    update: Update = field(default_factory=Update)
    units: tuple[Unit, ...] = ()


@dataclass(frozen=True)
class CloudConfig:
    """A parsed cloud-config."""

    ssh_authorized_keys: tuple[str, ...] = ()
    coreos: CoreOS = field(default_factory=CoreOS)
    write_files: tuple[File, ...] = ()
    hostname: str = ""
    users: tuple[User, ...] = ()
    manage_etc_hosts: str = ""


def parse_cloud_config(text: str) -> CloudConfig:
    """Parse cloud-config text (after substitution) into a :class:`CloudConfig`."""
    try:
        root = parse(text)
    except YamlSyntaxError as exc:
        raise CloudInitError(
            f"cloud-config is not valid YAML: line {exc.line}: {exc.message}",
            hint="run coreos-cloudinit --validate --from-file FILE to see every problem",
        ) from None
    raw = _decode(root, schema.CLOUD_CONFIG) if root is not None else None
    return _cloud_config(raw if isinstance(raw, Mapping) else {})


def _decode(node: Node, typ: Type) -> object:
    """The node as Python data of ``typ``; None when missing or of another kind."""
    if not compatible(node.kind, typ.kind):
        return None
    if typ.kind is T.SLICE:
        assert typ.elem is not None
        elem = typ.elem
        return [item for item in (_decode(item, elem) for item in node.items) if item is not None]
    if typ.kind is T.STRUCT:
        return _decode_struct(node, typ)
    if typ.kind is T.STRING:
        return node.value if isinstance(node.value, bytes) else node.text
    if typ.kind is T.FLOAT and isinstance(node.value, int | float):
        return float(node.value)
    return node.value


def _decode_struct(node: Node, typ: Type) -> dict[str, object]:
    out: dict[str, object] = {}
    for entry in node.entries:
        name = schema.normalize_key(entry.key)
        known = typ.field(name)
        if known is not None:
            decoded = _decode(entry.value, known.type)
            if decoded is not None:
                out[name] = decoded
    return out


def _text(raw: Raw, key: str) -> str:
    item = raw.get(key)
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return item if isinstance(item, str) else ""


def _flag(raw: Raw, key: str) -> bool:
    return raw.get(key) is True


def _texts(raw: Raw, key: str) -> tuple[str, ...]:
    items = raw.get(key)
    if not isinstance(items, list):
        return ()
    return tuple(_text({"item": item}, "item") for item in items)


def _structs(raw: Raw, key: str) -> list[Raw]:
    items = raw.get(key)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping)]


def _struct(raw: Raw, key: str) -> Raw:
    item = raw.get(key)
    return item if isinstance(item, Mapping) else {}


def env_section(raw: Raw, typ: Type) -> EnvSection:
    """The non-zero fields of a struct as ``(VARIABLE, %v value)`` pairs."""
    pairs = []
    for spec in typ.fields:
        item = raw.get(spec.name)
        if item is None or item in ("", b"", False, 0):
            continue
        pairs.append((spec.env, go_value(item)))
    return EnvSection(tuple(pairs))


def _cloud_config(raw: Raw) -> CloudConfig:
    coreos = _struct(raw, "coreos")
    return CloudConfig(
        ssh_authorized_keys=_texts(raw, "ssh_authorized_keys"),
        coreos=CoreOS(
            etcd=env_section(_struct(coreos, "etcd"), schema.ETCD),
            etcd2=env_section(_struct(coreos, "etcd2"), schema.ETCD2),
            flannel=env_section(_struct(coreos, "flannel"), schema.FLANNEL),
            fleet=env_section(_struct(coreos, "fleet"), schema.FLEET),
            locksmith=env_section(_struct(coreos, "locksmith"), schema.LOCKSMITH),
            oem=Oem(
                **{
                    spec.name: _text(_struct(coreos, "oem"), spec.name)
                    for spec in schema.OEM.fields
                }
            ),
            update=Update(
                **{
                    spec.name: _text(_struct(coreos, "update"), spec.name)
                    for spec in schema.UPDATE.fields
                }
            ),
            units=tuple(_unit(item) for item in _structs(coreos, "units")),
        ),
        write_files=tuple(_file(item) for item in _structs(raw, "write_files")),
        hostname=_text(raw, "hostname"),
        users=tuple(_user(item) for item in _structs(raw, "users")),
        manage_etc_hosts=_text(raw, "manage_etc_hosts"),
    )


def _unit(raw: Raw) -> Unit:
    return Unit(
        name=_text(raw, "name"),
        mask=_flag(raw, "mask"),
        enable=_flag(raw, "enable"),
        runtime=_flag(raw, "runtime"),
        content=_text(raw, "content"),
        command=_text(raw, "command"),
        drop_ins=tuple(
            DropIn(_text(item, "name"), _text(item, "content"))
            for item in _structs(raw, "drop_ins")
        ),
    )


def _file(raw: Raw) -> File:
    content = raw.get("content")
    return File(
        path=_text(raw, "path"),
        content=content if isinstance(content, bytes) else _text(raw, "content").encode("utf-8"),
        owner=_text(raw, "owner"),
        permissions=_text(raw, "permissions"),
        encoding=_text(raw, "encoding"),
    )


def _user(raw: Raw) -> User:
    return User(
        name=_text(raw, "name"),
        passwd=_text(raw, "passwd"),
        ssh_authorized_keys=_texts(raw, "ssh_authorized_keys"),
        gecos=_text(raw, "gecos"),
        homedir=_text(raw, "homedir"),
        no_create_home=_flag(raw, "no_create_home"),
        primary_group=_text(raw, "primary_group"),
        groups=_texts(raw, "groups"),
        no_user_group=_flag(raw, "no_user_group"),
        system=_flag(raw, "system"),
        no_log_init=_flag(raw, "no_log_init"),
        shell=_text(raw, "shell"),
    )
