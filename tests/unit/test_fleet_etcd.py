"""Encoding helpers of the v3 gateway client (requests are tested against etcd)."""

from __future__ import annotations

import base64

import pytest

from provisioner.guest.fleet.etcd import (
    b64,
    cmp_create_revision,
    cmp_value,
    op_delete,
    op_put,
    prefix_end,
    unb64,
)

pytestmark = pytest.mark.unit


def decode(value: str) -> bytes:
    return base64.b64decode(value)


def test_prefix_end_increments_the_last_byte() -> None:
    assert decode(prefix_end("/_coreos.com/fleet/job/")) == b"/_coreos.com/fleet/job0"
    assert decode(prefix_end("a\xff")) == "a\xff".encode()[:-1] + b"\xc0"
    assert decode(prefix_end("")) == b"\0"


def test_round_trip_and_request_shapes() -> None:
    assert unb64(b64("ключ/x")) == "ключ/x"
    assert op_put("/k", "v", lease=7) == {
        "request_put": {"key": b64("/k"), "value": b64("v"), "lease": "7"}
    }
    assert op_put("/k", "v") == {"request_put": {"key": b64("/k"), "value": b64("v")}}
    assert op_delete("/d/", prefix=True)["request_delete_range"]["range_end"] == prefix_end("/d/")
    assert cmp_create_revision("/k", 0) == {
        "key": b64("/k"),
        "target": "CREATE",
        "create_revision": "0",
        "result": "EQUAL",
    }
    assert cmp_value("/k", "m", "NOT_EQUAL")["result"] == "NOT_EQUAL"
