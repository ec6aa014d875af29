"""The discovery keyspace survives being saved and loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.discovery.keyspace import Keyspace
from provisioner.discovery.state import (
    dump_keyspace,
    load_keyspace,
    parse_keyspace,
    save_keyspace,
    state_path,
)
from provisioner.errors import DiscoveryError

pytestmark = pytest.mark.unit

TOK = "/_etcd/registry/0123456789abcdef0123456789abcdef"


def _populated() -> Keyspace:
    keyspace = Keyspace()
    keyspace.put(f"{TOK}/_config/size", "3", prev_exist=False)
    keyspace.put(f"{TOK}/a1", "m1=http://10.0.0.1:2380", prev_exist=False)
    keyspace.put(f"{TOK}/b2", "m2=http://10.0.0.2:2380", prev_exist=False)
    keyspace.put(f"{TOK}/b2", "m2=http://10.0.0.9:2380")
    keyspace.put("/_etcd/registry/gone/_config/size", "1")
    keyspace.delete("/_etcd/registry/gone", recursive=True)
    return keyspace


def test_round_trip_keeps_nodes_index_and_history(tmp_path: Path) -> None:
    original = _populated()
    save_keyspace(tmp_path, original)
    loaded = load_keyspace(tmp_path)
    assert loaded.index == original.index == 6
    assert loaded.entries == original.entries
    assert loaded.history == original.history
    assert loaded.render(TOK, recursive=True) == original.render(TOK, recursive=True)
    assert [p.name for p in tmp_path.iterdir()] == ["keyspace.json"]  # no temp files left


def test_index_continues_after_reload(tmp_path: Path) -> None:
    save_keyspace(tmp_path, _populated())
    loaded = load_keyspace(tmp_path)
    event = loaded.put(f"{TOK}/c3", "m3=http://10.0.0.3:2380", prev_exist=False)
    assert event.index == 7
    watched = loaded.scan(TOK, recursive=True, since=2)
    assert watched is not None
    assert watched.node.key == f"{TOK}/a1"


def test_missing_state_is_an_empty_keyspace(tmp_path: Path) -> None:
    keyspace = load_keyspace(tmp_path)
    assert keyspace.index == 0
    assert keyspace.entries == ()


def test_save_replaces_the_previous_file(tmp_path: Path) -> None:
    keyspace = _populated()
    save_keyspace(tmp_path, keyspace)
    keyspace.put(f"{TOK}/z", "v")
    save_keyspace(tmp_path, keyspace)
    document = json.loads(state_path(tmp_path).read_text())
    assert document["index"] == 7
    assert document == dump_keyspace(keyspace)


def test_invalid_json_names_the_file_and_line(tmp_path: Path) -> None:
    state_path(tmp_path).write_text('{\n"version": 1,\n oops}')
    with pytest.raises(DiscoveryError) as caught:
        load_keyspace(tmp_path)
    assert str(caught.value).startswith(f"{state_path(tmp_path)}:3: discovery state is not valid")
    assert caught.value.hint is not None
    assert "move" in caught.value.hint


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=9), "expected a version 1"),
        (lambda d: d.update(index=-1), "index is not a non-negative integer"),
        (lambda d: d.pop("nodes"), "'nodes'"),
        (lambda d: d["nodes"][0].update(created="7"), "indexes are not integers"),
        (lambda d: d.update(index=2), "index 2 is behind node index 6"),
    ],
)
def test_malformed_state_is_reported(mutate: object, message: str) -> None:
    document = dump_keyspace(_populated())
    assert callable(mutate)
    mutate(document)
    with pytest.raises(DiscoveryError, match="malformed discovery state") as caught:
        parse_keyspace(document, source="state.json")
    assert message in str(caught.value)
    assert str(caught.value).startswith("state.json: ")
