"""An etcd v2 keyspace held in memory, as the discovery protocol sees it.

This is the part of etcd's v2 store (``server/etcdserver/api/v2store``) that
``etcd --discovery`` and the v2 keys API rely on: one global index that every
write advances, nodes with ``createdIndex``/``modifiedIndex``, directories
created on demand, conditional writes (``prevExist``, ``prevValue``,
``prevIndex``), recursive deletes and a bounded event history that watchers
scan from a ``waitIndex``. Errors carry etcd's v2 error codes.

Everything here is plain data and deterministic; locking, HTTP and disk live
in :mod:`provisioner.discovery.server` and :mod:`provisioner.discovery.state`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

#: etcd keeps the last 1000 events for watchers (v2store ``newWatchHub(1000)``).
HISTORY_LIMIT: Final = 1000

# etcd v2 error codes (server/etcdserver/api/v2error/error.go).
KEY_NOT_FOUND: Final = 100
TEST_FAILED: Final = 101
NOT_FILE: Final = 102
NOT_DIR: Final = 104
NODE_EXIST: Final = 105
ROOT_READ_ONLY: Final = 107
DIR_NOT_EMPTY: Final = 108
TTL_NAN: Final = 202
INDEX_NAN: Final = 203
INVALID_FIELD: Final = 209
EVENT_INDEX_CLEARED: Final = 401

_MESSAGES: Final = {
    KEY_NOT_FOUND: "Key not found",
    TEST_FAILED: "Compare failed",
    NOT_FILE: "Not a file",
    NOT_DIR: "Not a directory",
    NODE_EXIST: "Key already exists",
    ROOT_READ_ONLY: "Root is read only",
    DIR_NOT_EMPTY: "Directory not empty",
    TTL_NAN: "The given TTL in POST form is not a number",
    INDEX_NAN: "The given index in POST form is not a number",
    INVALID_FIELD: "Invalid field",
    EVENT_INDEX_CLEARED: "The event in requested index is outdated and cleared",
}

# HTTP status per error code; everything else is 400 (v2error ``errorStatus``).
_STATUS: Final = {
    KEY_NOT_FOUND: 404,
    NOT_FILE: 403,
    DIR_NOT_EMPTY: 403,
    TEST_FAILED: 412,
    NODE_EXIST: 412,
}

# Event actions, spelled as etcd spells them.
GET: Final = "get"
CREATE: Final = "create"
SET: Final = "set"
UPDATE: Final = "update"
DELETE: Final = "delete"
COMPARE_AND_SWAP: Final = "compareAndSwap"
COMPARE_AND_DELETE: Final = "compareAndDelete"

ROOT: Final = "/"


class EtcdError(Exception):
    """A v2 keys API error: ``{"errorCode", "message", "cause", "index"}``."""

    def __init__(self, code: int, cause: str, index: int) -> None:
        super().__init__(f"{code}: {_MESSAGES.get(code, 'Error')} ({cause}) [{index}]")
        self.code = code
        self.cause = cause
        self.index = index

    @property
    def message(self) -> str:
        return _MESSAGES.get(self.code, "Error")

    @property
    def status(self) -> int:
        return _STATUS.get(self.code, 400)

    def to_json(self) -> dict[str, Any]:
        return {
            "errorCode": self.code,
            "message": self.message,
            "cause": self.cause,
            "index": self.index,
        }


@dataclass(frozen=True)
class Entry:
    """One node: a directory when ``value`` is None, else a key with a value."""

    key: str
    value: str | None
    created_index: int
    modified_index: int

    @property
    def is_dir(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class Event:
    """One change, as watchers receive it (``node`` and ``prevNode``)."""

    action: str
    node: Entry
    prev_node: Entry | None = None

    @property
    def index(self) -> int:
        return self.node.modified_index

    @property
    def created(self) -> bool:
        """etcd answers 201 for a create, or a set that made a new node."""
        return self.action == CREATE or (self.action == SET and self.prev_node is None)


def clean_key(key: str) -> str:
    """Canonical key for a path, like Go's ``path.Clean("/" + key)``."""
    cleaned = posixpath.normpath("/" + key.lstrip("/"))
    return "/" if cleaned in ("/", "//") else cleaned


def parent_of(key: str) -> str:
    return posixpath.dirname(key) or ROOT


def is_hidden(watch_key: str, key: str) -> bool:
    """True when ``key`` lies below ``watch_key`` through a ``_``-prefixed name."""
    if len(watch_key) > len(key):
        return False
    after = posixpath.normpath("/" + key[len(watch_key) :])
    return "/_" in after


def node_json(entry: Entry, children: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A node in etcd's JSON field order; ``nodes`` only when non-empty."""
    out: dict[str, Any] = {"key": entry.key}
    if entry.is_dir:
        out["dir"] = True
    else:
        out["value"] = entry.value
    nodes = list(children) if children is not None else []
    if nodes:
        out["nodes"] = nodes
    out["modifiedIndex"] = entry.modified_index
    out["createdIndex"] = entry.created_index
    return out


def _bare_json(entry: Entry) -> dict[str, Any]:
    """A node without its value, as etcd shows the node of a delete event."""
    out: dict[str, Any] = {"key": entry.key}
    if entry.is_dir:
        out["dir"] = True
    out["modifiedIndex"] = entry.modified_index
    out["createdIndex"] = entry.created_index
    return out


def event_json(event: Event) -> dict[str, Any]:
    node = (
        _bare_json(event.node)
        if event.action in (DELETE, COMPARE_AND_DELETE)
        else node_json(event.node)
    )
    out: dict[str, Any] = {"action": event.action, "node": node}
    if event.prev_node is not None:
        out["prevNode"] = node_json(event.prev_node)
    return out


def _compare_cause(entry: Entry, prev_value: str | None, prev_index: int | None) -> str | None:
    """None when the compare holds, else etcd's ``[a != b]`` cause text."""
    value_ok = prev_value is None or prev_value == entry.value
    index_ok = prev_index is None or prev_index == entry.modified_index
    if value_ok and index_ok:
        return None
    if not value_ok and not index_ok:
        return f"[{prev_value} != {entry.value}] [{prev_index} != {entry.modified_index}]"
    if not value_ok:
        return f"[{prev_value} != {entry.value}]"
    return f"[{prev_index} != {entry.modified_index}]"


class Keyspace:
    """The nodes, the global index and the event history of one store.

    Not thread-safe: the caller serialises access.
    """

    def __init__(
        self,
        *,
        index: int = 0,
        entries: Iterable[Entry] = (),
        history: Iterable[Event] = (),
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self._index = index
        self._entries = {entry.key: entry for entry in entries if entry.key != ROOT}
        self._history = list(history)[-history_limit:]
        self._history_limit = history_limit

    def copy(self) -> Keyspace:
        """An independent keyspace with the same nodes, index and history."""
        return Keyspace(
            index=self._index,
            entries=self._entries.values(),
            history=self._history,
            history_limit=self._history_limit,
        )

    # -- reading ---------------------------------------------------------

    @property
    def index(self) -> int:
        """The etcd index: the index of the last write (``X-Etcd-Index``)."""
        return self._index

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(sorted(self._entries.values(), key=lambda e: (e.created_index, e.key)))

    @property
    def history(self) -> tuple[Event, ...]:
        return tuple(self._history)

    def lookup(self, key: str) -> Entry | None:
        key = clean_key(key)
        if key == ROOT:
            return Entry(ROOT, None, 0, 0)
        return self._entries.get(key)

    def get(self, key: str) -> Entry:
        """The node at ``key``, walking down from the root as etcd does.

        A missing node raises 100 naming the first missing path component;
        a key below a plain key raises 104 naming that key.
        """
        key = clean_key(key)
        if key == ROOT:
            return Entry(ROOT, None, 0, 0)
        walked = ""
        entry: Entry | None = None
        for name in key.strip("/").split("/"):
            if entry is not None and not entry.is_dir:
                raise EtcdError(NOT_DIR, entry.key, self._index)
            walked = f"{walked}/{name}"
            entry = self._entries.get(walked)
            if entry is None:
                raise EtcdError(KEY_NOT_FOUND, walked, self._index)
        assert entry is not None
        return entry

    def children(self, key: str, *, hidden: bool = False) -> list[Entry]:
        """Direct children in creation order (etcd's own order is unspecified)."""
        key = clean_key(key)
        found = [
            entry
            for entry in self._entries.values()
            if parent_of(entry.key) == key
            and (hidden or not posixpath.basename(entry.key).startswith("_"))
        ]
        return sorted(found, key=lambda e: (e.created_index, e.key))

    def render(self, key: str, *, recursive: bool = False, sort: bool = False) -> dict[str, Any]:
        """The ``node`` of a GET: a directory lists its visible children.

        Children come in creation order, or by key with ``sort`` (etcd's
        ``sorted=true``); with ``recursive`` sub-directories list theirs too.
        """
        return self._render(self.get(key), recursive=recursive, sort=sort, top=True)

    def _render(self, entry: Entry, *, recursive: bool, sort: bool, top: bool) -> dict[str, Any]:
        if not entry.is_dir or not (top or recursive):
            return node_json(entry)
        kids = self.children(entry.key)
        if sort:
            kids.sort(key=lambda e: e.key)
        return node_json(
            entry, (self._render(k, recursive=recursive, sort=sort, top=False) for k in kids)
        )

    # -- writing ---------------------------------------------------------

    def put(
        self,
        key: str,
        value: str,
        *,
        directory: bool = False,
        prev_exist: bool | None = None,
        prev_value: str | None = None,
        prev_index: int | None = None,
    ) -> Event:
        """A v2 PUT, dispatched the way etcdserver applies it.

        ``prev_exist=False`` creates only if absent (105 otherwise),
        ``prev_exist=True`` updates only if present (100 otherwise),
        ``prev_value``/``prev_index`` compare-and-swap (101 on mismatch),
        no condition sets (creating or replacing).
        """
        key = clean_key(key)
        if key == ROOT:
            raise EtcdError(ROOT_READ_ONLY, ROOT, self._index)
        compare = prev_value is not None or prev_index is not None
        if prev_exist is True and compare:
            return self._compare_and_swap(key, value, prev_value, prev_index)
        if prev_exist is True:
            return self._update(key, None if directory else value)
        if prev_exist is False:
            return self._create(key, None if directory else value, replace_file=False)
        if compare:
            return self._compare_and_swap(key, value, prev_value, prev_index)
        return self._create(key, None if directory else value, replace_file=True)

    def delete(
        self,
        key: str,
        *,
        recursive: bool = False,
        directory: bool = False,
        prev_value: str | None = None,
        prev_index: int | None = None,
    ) -> Event:
        """A v2 DELETE; a directory needs ``directory`` (empty) or ``recursive``."""
        key = clean_key(key)
        if key == ROOT:
            raise EtcdError(ROOT_READ_ONLY, ROOT, self._index)
        entry = self.get(key)
        action = DELETE
        if prev_value is not None or prev_index is not None:
            if entry.is_dir:
                raise EtcdError(NOT_FILE, key, self._index)
            cause = _compare_cause(entry, prev_value, prev_index)
            if cause is not None:
                raise EtcdError(TEST_FAILED, cause, self._index)
            action = COMPARE_AND_DELETE
        if entry.is_dir:
            if not (directory or recursive):
                raise EtcdError(NOT_FILE, key, self._index)
            if not recursive and self.children(key, hidden=True):
                raise EtcdError(DIR_NOT_EMPTY, key, self._index)
        index = self._next_index()
        prefix = key + "/"
        for other in [k for k in self._entries if k == key or k.startswith(prefix)]:
            del self._entries[other]
        node = replace(entry, value=None if entry.is_dir else "", modified_index=index)
        return self._record(Event(action, node, entry))

    def _create(self, key: str, value: str | None, *, replace_file: bool) -> Event:
        self._check_ancestors(key)
        existing = self._entries.get(key)
        if existing is not None:
            if not replace_file:
                raise EtcdError(NODE_EXIST, key, self._index)
            if existing.is_dir:
                raise EtcdError(NOT_FILE, key, self._index)
        index = self._next_index()
        self._make_parents(key, index)
        node = Entry(key, value, index, index)
        self._entries[key] = node
        return self._record(Event(SET if replace_file else CREATE, node, existing))

    def _update(self, key: str, value: str | None) -> Event:
        existing = self.get(key)
        if existing.is_dir and value is not None:
            raise EtcdError(NOT_FILE, key, self._index)
        if not existing.is_dir and value is None:
            raise EtcdError(NOT_DIR, key, self._index)
        index = self._next_index()
        node = replace(existing, value=value, modified_index=index)
        self._entries[key] = node
        return self._record(Event(UPDATE, node, existing))

    def _compare_and_swap(
        self, key: str, value: str, prev_value: str | None, prev_index: int | None
    ) -> Event:
        existing = self.get(key)
        if existing.is_dir:
            raise EtcdError(NOT_FILE, key, self._index)
        cause = _compare_cause(existing, prev_value, prev_index)
        if cause is not None:
            raise EtcdError(TEST_FAILED, cause, self._index)
        index = self._next_index()
        node = replace(existing, value=value, modified_index=index)
        self._entries[key] = node
        return self._record(Event(COMPARE_AND_SWAP, node, existing))

    def _check_ancestors(self, key: str) -> None:
        parent = parent_of(key)
        while parent != ROOT:
            found = self._entries.get(parent)
            if found is not None and not found.is_dir:
                raise EtcdError(NOT_DIR, parent, self._index)
            parent = parent_of(parent)

    def _make_parents(self, key: str, index: int) -> None:
        parent = parent_of(key)
        while parent != ROOT and parent not in self._entries:
            self._entries[parent] = Entry(parent, None, index, index)
            parent = parent_of(parent)

    def _next_index(self) -> int:
        self._index += 1
        return self._index

    def _record(self, event: Event) -> Event:
        self._history.append(event)
        if len(self._history) > self._history_limit:
            del self._history[: len(self._history) - self._history_limit]
        return event

    # -- watching --------------------------------------------------------

    def scan(self, key: str, *, recursive: bool, since: int, live: bool = False) -> Event | None:
        """The first event at or after index ``since`` that a watcher on ``key`` sees.

        None means "nothing yet: wait". Raises 401 when ``since`` is older than
        the history kept. A recursive watcher sees changes below ``key``; like
        etcd, events that happen while it waits (``live``) skip ``_``-prefixed
        (hidden) names, while events already in the history do not. Every
        watcher sees the deletion of a directory that contains its key.
        """
        key = clean_key(key)
        if self._history and since < self._history[0].index:
            cleared = f"the requested history has been cleared [{self._history[0].index}/{since}]"
            raise EtcdError(EVENT_INDEX_CLEARED, cleared, self._index)
        for event in self._history:
            if event.index >= since and watches(key, recursive, event, live=live):
                return event
        return None


def watches(key: str, recursive: bool, event: Event, *, live: bool = False) -> bool:
    """Whether a watcher on ``key`` is told about ``event`` (see :meth:`Keyspace.scan`)."""
    changed = event.node.key
    if changed == key:
        return True
    prefix = key if key.endswith("/") else key + "/"
    if recursive and changed.startswith(prefix) and not (live and is_hidden(key, changed)):
        return True
    removed_dir = event.action in (DELETE, COMPARE_AND_DELETE) and event.node.is_dir
    return removed_dir and key.startswith(changed.rstrip("/") + "/")
