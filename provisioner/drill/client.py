"""The drill's view of etcd: puts and reads through one chosen member each, over the
host's JSON gateway client (:class:`~provisioner.etcdhttp.EtcdHttp`)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from provisioner.drill.ledger import Found
from provisioner.errors import RemoteError
from provisioner.etcdhttp import EtcdHttp, member_health


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode("utf-8")


def prefix_end(prefix: str) -> str:
    """etcd's range end for every key that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def parse_range(answer: Mapping[str, Any]) -> dict[str, Found]:
    """The keys of a ``/v3/kv/range`` answer (int64s travel as strings)."""
    return {
        _text(kv["key"]): Found(_text(kv.get("value", "")), int(kv.get("mod_revision", 0)))
        for kv in answer.get("kvs") or []
    }


def parse_put_revision(answer: Mapping[str, Any]) -> int:
    """The store revision a ``/v3/kv/put`` answer acknowledges the write with."""
    try:
        return int(answer["header"]["revision"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RemoteError(f"etcd put answered without a revision: {answer}") from exc


class DrillClient:
    """Every member by name (``urls``: name -> client URL); each call goes to the one
    member named, once, with ``timeout``: a silent member is a failed call."""

    def __init__(self, urls: Mapping[str, str], timeout: float) -> None:
        self.urls = dict(urls)
        self.timeout = timeout
        self._one = {name: EtcdHttp([url], timeout) for name, url in self.urls.items()}
        self._every = EtcdHttp(list(self.urls.values()), timeout)

    @property
    def members(self) -> list[str]:
        return list(self.urls)

    def put(self, member: str, key: str, value: str) -> int:
        answer = self._one[member].call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return parse_put_revision(answer)

    def read_prefix(self, member: str, prefix: str, *, serializable: bool) -> dict[str, Found]:
        body: dict[str, Any] = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        if serializable:
            body["serializable"] = True
        return parse_range(self._one[member].call("/v3/kv/range", body))

    def delete_prefix(self, prefix: str) -> None:
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        self._every.call("/v3/kv/deleterange", body, retry=True)

    def leader(self) -> str | None:
        try:
            return self._every.leader()
        except RemoteError:
            return None

    def answers(self, member: str) -> bool:
        """Whether the member says it is healthy (it answers and sees a quorum)."""
        return member_health(self.urls[member], self.timeout) is True
