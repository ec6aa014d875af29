"""The discovery keyspace on disk: one JSON file, replaced atomically.

Every write to the keyspace is saved before it is answered, so the etcd
index on disk is the last one handed out and never goes backwards across
restarts; the event history is saved too, so a watcher that reconnects after
a restart still finds the events it missed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Final

from provisioner.discovery.keyspace import Entry, Event, Keyspace
from provisioner.errors import DiscoveryError

STATE_FILE: Final = "keyspace.json"
FORMAT_VERSION: Final = 1


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def _entry_to_json(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "value": entry.value,
        "created": entry.created_index,
        "modified": entry.modified_index,
    }


def _entry_from_json(data: Any) -> Entry:
    if not isinstance(data, dict):
        raise TypeError("node is not an object")
    key, value = data["key"], data["value"]
    created, modified = data["created"], data["modified"]
    if not isinstance(key, str) or not (value is None or isinstance(value, str)):
        raise TypeError("node key/value have the wrong type")
    if not isinstance(created, int) or not isinstance(modified, int):
        raise TypeError("node indexes are not integers")
    return Entry(key, value, created, modified)


def dump_keyspace(keyspace: Keyspace) -> dict[str, Any]:
    """The JSON document for a keyspace (see :func:`load_keyspace`)."""
    return {
        "version": FORMAT_VERSION,
        "index": keyspace.index,
        "nodes": [_entry_to_json(e) for e in keyspace.entries],
        "history": [
            {
                "action": ev.action,
                "node": _entry_to_json(ev.node),
                "prevNode": None if ev.prev_node is None else _entry_to_json(ev.prev_node),
            }
            for ev in keyspace.history
        ],
    }


def _parse_document(document: Any) -> tuple[int, list[Entry], list[Event]]:
    """Index, nodes and history of a state document; KeyError/TypeError when malformed."""
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise TypeError(f"expected a version {FORMAT_VERSION} discovery state object")
    index = document["index"]
    if not isinstance(index, int) or index < 0:
        raise TypeError("index is not a non-negative integer")
    entries = [_entry_from_json(n) for n in document["nodes"]]
    history = []
    for item in document["history"]:
        action, prev = item["action"], item["prevNode"]
        if not isinstance(action, str):
            raise TypeError("event action is not a string")
        node = _entry_from_json(item["node"])
        history.append(Event(action, node, None if prev is None else _entry_from_json(prev)))
    return index, entries, history


def parse_keyspace(document: Any, *, source: str = "<state>") -> Keyspace:
    """Rebuild a keyspace from :func:`dump_keyspace` output; bad data raises DiscoveryError."""
    hint = f"move {source} aside to start with an empty discovery keyspace"
    try:
        index, entries, history = _parse_document(document)
    except (KeyError, TypeError) as exc:
        raise DiscoveryError(f"{source}: malformed discovery state: {exc}", hint=hint) from exc
    newest = max([e.modified_index for e in entries] + [ev.index for ev in history], default=0)
    if newest > index:
        raise DiscoveryError(
            f"{source}: malformed discovery state: index {index} is behind node index {newest}",
            hint=hint,
        )
    return Keyspace(index=index, entries=entries, history=history)


def load_keyspace(state_dir: Path) -> Keyspace:
    """The saved keyspace of ``state_dir``, or an empty one if none was saved yet."""
    path = state_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Keyspace()
    except OSError as exc:
        raise DiscoveryError(
            f"{path}: cannot read discovery state: {exc.strerror}",
            hint="check the permissions of the discovery state directory",
        ) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DiscoveryError(
            f"{path}:{exc.lineno}: discovery state is not valid JSON: {exc.msg}",
            hint=f"move {path} aside to start with an empty discovery keyspace",
        ) from exc
    return parse_keyspace(document, source=str(path))


def save_keyspace(state_dir: Path, keyspace: Keyspace) -> None:
    """Write the keyspace to a temporary file, fsync it, then rename it into place."""
    path = state_path(state_dir)
    data = json.dumps(dump_keyspace(keyspace), separators=(",", ":")).encode()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=state_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
