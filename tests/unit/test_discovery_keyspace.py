"""The in-memory etcd v2 keyspace behind the discovery service.

Expected JSON here was recorded from etcd 3.4.23 (``--enable-v2``) for the
same requests; tests/integration/test_discovery_etcd.py replays a request
sequence against a real etcd and this service side by side.
"""

from __future__ import annotations

import pytest

from provisioner.discovery.keyspace import (
    DIR_NOT_EMPTY,
    EVENT_INDEX_CLEARED,
    KEY_NOT_FOUND,
    NODE_EXIST,
    NOT_DIR,
    NOT_FILE,
    ROOT_READ_ONLY,
    TEST_FAILED,
    EtcdError,
    Keyspace,
    clean_key,
    event_json,
    is_hidden,
)

pytestmark = pytest.mark.unit

TOK = "/_etcd/registry/tok"


def _token(size: int = 3) -> Keyspace:
    keyspace = Keyspace()
    keyspace.put(f"{TOK}/_config/size", str(size), prev_exist=False)
    return keyspace


def test_every_write_advances_the_index_and_parents_share_it() -> None:
    keyspace = Keyspace()
    event = keyspace.put(f"{TOK}/_config/size", "3", prev_exist=False)
    assert keyspace.index == 1
    assert event.index == 1
    for key in ("/_etcd", "/_etcd/registry", TOK, f"{TOK}/_config"):
        entry = keyspace.get(key)
        assert entry.is_dir
        assert (entry.created_index, entry.modified_index) == (1, 1)
    second = keyspace.put(f"{TOK}/abc", "m1=http://10.0.0.1:2380", prev_exist=False)
    assert (second.node.created_index, second.node.modified_index) == (2, 2)
    assert keyspace.index == 2


def test_create_if_absent_refuses_an_existing_key_without_a_write() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/abc", "first", prev_exist=False)
    with pytest.raises(EtcdError) as caught:
        keyspace.put(f"{TOK}/abc", "second", prev_exist=False)
    error = caught.value
    assert (error.code, error.status, error.cause, error.index) == (
        NODE_EXIST,
        412,
        f"{TOK}/abc",
        2,
    )
    assert error.to_json() == {
        "errorCode": 105,
        "message": "Key already exists",
        "cause": f"{TOK}/abc",
        "index": 2,
    }
    assert keyspace.index == 2
    assert keyspace.get(f"{TOK}/abc").value == "first"


def test_create_answers_like_etcd() -> None:
    keyspace = _token()
    event = keyspace.put(f"{TOK}/abc", "n1=http://1.2.3.4:2380", prev_exist=False)
    assert event.created
    assert event_json(event) == {
        "action": "create",
        "node": {
            "key": f"{TOK}/abc",
            "value": "n1=http://1.2.3.4:2380",
            "modifiedIndex": 2,
            "createdIndex": 2,
        },
    }


def test_set_replaces_a_key_with_a_new_created_index() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/abc", "old", prev_exist=False)
    event = keyspace.put(f"{TOK}/abc", "new")
    assert not event.created  # 200, not 201
    assert event_json(event) == {
        "action": "set",
        "node": {"key": f"{TOK}/abc", "value": "new", "modifiedIndex": 3, "createdIndex": 3},
        "prevNode": {"key": f"{TOK}/abc", "value": "old", "modifiedIndex": 2, "createdIndex": 2},
    }
    assert keyspace.put(f"{TOK}/fresh", "").created  # set of a new key is a 201


def test_update_keeps_the_created_index_and_needs_the_key() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/abc", "y", prev_exist=False)
    event = keyspace.put(f"{TOK}/abc", "z", prev_exist=True)
    assert event.action == "update"
    assert (event.node.created_index, event.node.modified_index) == (2, 3)
    with pytest.raises(EtcdError) as caught:
        keyspace.put(f"{TOK}/missing", "z", prev_exist=True)
    assert (caught.value.code, caught.value.status) == (KEY_NOT_FOUND, 404)


def test_compare_and_swap_causes_match_etcd() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/m1", "v")  # index 2
    causes = []
    for value, index in (("q", None), (None, 3), ("q", 3)):
        with pytest.raises(EtcdError) as caught:
            keyspace.put(f"{TOK}/m1", "z", prev_value=value, prev_index=index)
        assert (caught.value.code, caught.value.status) == (TEST_FAILED, 412)
        causes.append(caught.value.cause)
    assert causes == ["[q != v]", "[3 != 2]", "[q != v] [3 != 2]"]
    event = keyspace.put(f"{TOK}/m1", "z2", prev_value="v", prev_index=2)
    assert event.action == "compareAndSwap"
    assert keyspace.get(f"{TOK}/m1").value == "z2"


@pytest.mark.parametrize(
    ("key", "code", "status", "cause"),
    [
        (TOK, NOT_FILE, 403, TOK),  # a directory is not a file
        (f"{TOK}/abc/def", NOT_DIR, 400, f"{TOK}/abc"),  # below a file
        ("/", ROOT_READ_ONLY, 400, "/"),
    ],
)
def test_put_errors_use_etcd_codes(key: str, code: int, status: int, cause: str) -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/abc", "v")
    with pytest.raises(EtcdError) as caught:
        keyspace.put(key, "z")
    assert (caught.value.code, caught.value.status, caught.value.cause) == (code, status, cause)


def test_directory_listing_hides_config_and_orders_children() -> None:
    keyspace = _token()
    assert keyspace.render(TOK) == {
        "key": TOK,
        "dir": True,
        "modifiedIndex": 1,
        "createdIndex": 1,
    }  # only hidden children: no "nodes" at all, as etcd answers
    keyspace.put(f"{TOK}/zz", "first", prev_exist=False)
    keyspace.put(f"{TOK}/aa", "second", prev_exist=False)
    keyspace.put(f"{TOK}/sub/leaf", "deep")
    listed = keyspace.render(TOK)
    assert [n["key"] for n in listed["nodes"]] == [f"{TOK}/zz", f"{TOK}/aa", f"{TOK}/sub"]
    assert listed["nodes"][2] == {
        "key": f"{TOK}/sub",
        "dir": True,
        "modifiedIndex": 4,
        "createdIndex": 4,
    }
    by_key = keyspace.render(TOK, sort=True)
    assert [n["key"] for n in by_key["nodes"]] == [f"{TOK}/aa", f"{TOK}/sub", f"{TOK}/zz"]
    deep = keyspace.render(TOK, recursive=True)
    assert deep["nodes"][2]["nodes"] == [
        {"key": f"{TOK}/sub/leaf", "value": "deep", "modifiedIndex": 4, "createdIndex": 4}
    ]
    assert keyspace.get(f"{TOK}/_config/size").value == "3"  # hidden, yet readable


def test_get_of_a_missing_key_is_404_with_the_current_index() -> None:
    keyspace = _token()
    with pytest.raises(EtcdError) as caught:
        keyspace.render(f"{TOK}/nope")
    assert caught.value.to_json() == {
        "errorCode": 100,
        "message": "Key not found",
        "cause": f"{TOK}/nope",
        "index": 1,
    }
    assert caught.value.status == 404


def test_a_missing_parent_is_named_like_etcd_walks_the_path() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/file", "v")
    with pytest.raises(EtcdError) as missing:
        keyspace.get("/_etcd/registry/other/_config/size")
    assert (missing.value.code, missing.value.cause) == (KEY_NOT_FOUND, "/_etcd/registry/other")
    with pytest.raises(EtcdError) as below_file:
        keyspace.get(f"{TOK}/file/x")
    assert (below_file.value.code, below_file.value.cause) == (NOT_DIR, f"{TOK}/file")


def test_delete_of_a_directory_needs_recursive() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/abc", "v", prev_exist=False)
    with pytest.raises(EtcdError) as plain:
        keyspace.delete(TOK)
    assert (plain.value.code, plain.value.status) == (NOT_FILE, 403)
    with pytest.raises(EtcdError) as not_empty:
        keyspace.delete(TOK, directory=True)
    assert (not_empty.value.code, not_empty.value.status) == (DIR_NOT_EMPTY, 403)
    event = keyspace.delete(TOK, recursive=True)
    assert event_json(event) == {
        "action": "delete",
        "node": {"key": TOK, "dir": True, "modifiedIndex": 3, "createdIndex": 1},
        "prevNode": {"key": TOK, "dir": True, "modifiedIndex": 1, "createdIndex": 1},
    }
    for key in (TOK, f"{TOK}/abc", f"{TOK}/_config/size"):
        assert keyspace.lookup(key) is None
    assert keyspace.lookup("/_etcd/registry") is not None


def test_delete_of_a_key_shows_no_value_in_the_node() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/abc", "z")
    event = keyspace.delete(f"{TOK}/abc")
    assert event_json(event) == {
        "action": "delete",
        "node": {"key": f"{TOK}/abc", "modifiedIndex": 3, "createdIndex": 2},
        "prevNode": {"key": f"{TOK}/abc", "value": "z", "modifiedIndex": 2, "createdIndex": 2},
    }
    with pytest.raises(EtcdError) as caught:
        keyspace.delete(f"{TOK}/abc")
    assert caught.value.code == KEY_NOT_FOUND


def test_scan_returns_the_first_matching_event_from_the_wait_index() -> None:
    keyspace = _token()  # 1: _config/size
    keyspace.put(f"{TOK}/m1", "a", prev_exist=False)  # 2
    keyspace.put("/_etcd/registry/other/m9", "x")  # 3, another token
    keyspace.put(f"{TOK}/m2", "b", prev_exist=False)  # 4
    found = keyspace.scan(TOK, recursive=True, since=3)
    assert found is not None
    assert (found.node.key, found.index) == (f"{TOK}/m2", 4)
    own = keyspace.scan(f"{TOK}/m1", recursive=False, since=2)
    assert own is not None
    assert own.node.key == f"{TOK}/m1"
    assert keyspace.scan(TOK, recursive=False, since=2) is None  # children need recursive
    assert keyspace.scan(TOK, recursive=True, since=5) is None  # future: wait


def test_hidden_keys_reach_recursive_watchers_only_from_history() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/_config/extra", "1")  # 2
    from_history = keyspace.scan(TOK, recursive=True, since=1)
    assert from_history is not None
    assert from_history.node.key == f"{TOK}/_config/size"
    assert keyspace.scan(TOK, recursive=True, since=2, live=True) is None
    direct = keyspace.scan(f"{TOK}/_config/extra", recursive=False, since=2, live=True)
    assert direct is not None
    assert direct.index == 2


def test_deleting_a_directory_notifies_watchers_below_it() -> None:
    keyspace = _token()
    keyspace.put(f"{TOK}/m1", "a")
    event = keyspace.delete(TOK, recursive=True)
    seen = keyspace.scan(f"{TOK}/m1", recursive=False, since=3, live=True)
    assert seen == event


def test_history_is_bounded_and_old_indexes_are_cleared() -> None:
    keyspace = Keyspace(history_limit=5)
    for n in range(8):
        keyspace.put(f"{TOK}/k", str(n))
    assert [e.index for e in keyspace.history] == [4, 5, 6, 7, 8]
    with pytest.raises(EtcdError) as caught:
        keyspace.scan(TOK, recursive=True, since=3)
    assert caught.value.to_json() == {
        "errorCode": EVENT_INDEX_CLEARED,
        "message": "The event in requested index is outdated and cleared",
        "cause": "the requested history has been cleared [4/3]",
        "index": 8,
    }
    assert caught.value.status == 400


def test_copy_is_independent() -> None:
    keyspace = _token()
    duplicate = keyspace.copy()
    duplicate.put(f"{TOK}/abc", "v")
    assert keyspace.index == 1
    assert keyspace.lookup(f"{TOK}/abc") is None
    assert len(keyspace.history) == 1
    assert duplicate.index == 2


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("", "/"), ("/", "/"), ("//a//b/", "/a/b"), ("a/./b/../c", "/a/c"), ("/../x", "/x")],
)
def test_clean_key_matches_go_path_clean(raw: str, clean: str) -> None:
    assert clean_key(raw) == clean


def test_is_hidden_looks_only_below_the_watched_key() -> None:
    assert is_hidden(TOK, f"{TOK}/_config/size")
    assert not is_hidden("/_etcd/registry", f"{TOK}/m1")  # "_etcd" is above the watch
    assert not is_hidden(TOK, f"{TOK}/m1")
    assert not is_hidden(f"{TOK}/m1/deeper", f"{TOK}/m1")
