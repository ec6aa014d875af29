"""Dynamic machine metadata: fleet's PATCH /fleet/v1/machines body and its merge rules.

Follows coreos/fleet api/machines.go (patch) and registry/machine.go
(mergeMetadata); the HTTP side runs in tests/integration/test_fleet_api.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.guest.fleet.api import HttpError, parse_metadata_ops
from provisioner.guest.fleet.registry import merge_metadata

pytestmark = pytest.mark.unit

ID = "0123456789abcdef0123456789abcdef"


def op(kind: str, path: str, value: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"op": kind, "path": path}
    if value is not None:
        entry["Value"] = {"value": value}
    return entry


def test_add_replace_remove() -> None:
    body = [
        op("add", f"/{ID}/metadata/foo", "bar"),
        op("replace", f"/{ID}/metadata/ping", "splat"),
        op("remove", f"/{ID}/metadata/gone"),
    ]
    assert parse_metadata_ops(body) == [
        (ID, "foo", "bar"),
        (ID, "ping", "splat"),
        (ID, "gone", None),
    ]


def test_keys_match_case_insensitively_as_go_decodes() -> None:
    body = [{"OP": "add", "Path": f"/{ID}/metadata/a.b-c_d", "value": {"VALUE": "1"}}]
    assert parse_metadata_ops(body) == [(ID, "a.b-c_d", "1")]


def test_empty_and_null_bodies_change_nothing() -> None:
    assert parse_metadata_ops([]) == []
    assert parse_metadata_ops(None) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([op("noop", f"/{ID}/metadata/foo", "bar")], "invalid op: expect add, remove, or replace"),
        ([op("add", f"/{ID}/foo", "bar")], "machine metadata path invalid"),
        ([op("add", f"/{ID}/metadata/fo o", "bar")], "machine metadata path invalid"),
        ([op("add", f"/{ID}/metadata/foo", "")], "invalid value: add and replace require a value"),
        ([op("replace", f"/{ID}/metadata/foo")], "invalid value: add and replace require a value"),
    ],
)
def test_bad_ops_are_400_with_fleets_words(body: list[dict[str, Any]], message: str) -> None:
    """functional/machines_test.go TestMachinesPatchBad: bad op, bad path, bad value."""
    with pytest.raises(HttpError) as caught:
        parse_metadata_ops(body)
    assert (caught.value.status, caught.value.message) == (400, message)


def test_one_bad_op_refuses_the_whole_patch() -> None:
    with pytest.raises(HttpError):
        parse_metadata_ops([op("add", f"/{ID}/metadata/ok", "1"), op("noop", "/x/metadata/y")])


def test_a_body_that_is_not_a_list_is_400() -> None:
    with pytest.raises(HttpError) as caught:
        parse_metadata_ops({"op": "add"})
    assert caught.value.status == 400


def test_merge_dynamic_over_own_and_empty_deletes() -> None:
    """registry/machine.go mergeMetadata."""
    own = {"hostname": "a", "foo": "x", "region": "eu"}
    dynamic = {"foo": "bar", "region": "", "new": "1"}
    assert merge_metadata(own, dynamic) == {"hostname": "a", "foo": "bar", "new": "1"}
    assert merge_metadata(own, {}) == own
