"""The host's own etcd client: what the host reads from the lab's members over HTTP.

The host reaches every member's client URL over the lab network and needs little
of it: ``/health``, the member list, putting and reading one key, and whether
fleet's registry holds a machine. It speaks etcd 3.4's JSON gateway (``/v3/...``;
keys and values travel base64-encoded) with the standard library. The guests'
fleetd has its own client, so neither side's retries or timeouts change the other.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from provisioner.errors import RemoteError
from provisioner.parsers import (
    FLANNEL_SUBNETS,
    FlannelLease,
    flannel_leases,
    leader_name,
    member_ids_by_name,
    parse_etcd_health,
    started_member_names,
    status_leader,
)

# fleetd's registry: its default etcd_key_prefix, which the lab keeps, and the key
# each live fleetd keeps under a lease (the guest's fleet/registry.py, specs/fleet.md).
FLEET_PREFIX = "/_coreos.com/fleet/"


def fleet_machine_key(machine_id: str) -> str:
    """The key fleetd keeps while its machine is registered."""
    return f"{FLEET_PREFIX}machines/{machine_id}/object"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def member_health(url: str, timeout: float) -> bool | None:
    """What etcd's ``/health`` at the client URL ``url`` says; None if it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as reply:  # noqa: S310
            body = reply.read()
    except urllib.error.HTTPError as exc:  # 503 with {"health":"false"} while unhealthy
        body = exc.read()
    except (OSError, ValueError):
        return None
    return parse_etcd_health(body.decode("utf-8", "replace"))


class EtcdHttp:
    """Calls to the members at ``endpoints`` (client URLs), tried in turn.

    Reads and puts go round the endpoints a second time when none answered: a
    member under emulation stalls for a second now and then. Any failure is a
    :class:`RemoteError` naming every endpoint tried.
    """

    def __init__(self, endpoints: Sequence[str], timeout: float) -> None:
        self.endpoints = [url.rstrip("/") for url in endpoints]
        if not self.endpoints:
            raise ValueError("no etcd endpoints")
        self.timeout = timeout
        self._preferred = 0  # the endpoint that answered last is asked first

    def call(self, path: str, body: dict[str, Any], *, retry: bool = False) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers; its JSON answer."""
        count = len(self.endpoints)
        order = [(self._preferred + i) % count for i in range(count)] * (2 if retry else 1)
        errors = []
        for index in order:
            url = self.endpoints[index] + path
            try:
                answer = self._post(url, body)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{self.endpoints[index]}: {exc}")
                continue
            self._preferred = index
            return answer
        raise RemoteError(f"etcd {path} failed on every endpoint ({'; '.join(errors)})")

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the lab's own members
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                payload = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").strip()
            if exc.code >= 500:
                raise OSError(f"HTTP {exc.code}: {detail}") from exc
            raise RemoteError(f"etcd {url}: HTTP {exc.code}: {detail}") from exc
        answer = json.loads(payload.decode("utf-8"))
        if not isinstance(answer, dict):
            raise ValueError(f"not a JSON object: {payload[:200]!r}")  # noqa: TRY004 - next endpoint
        if "error" in answer and "result" not in answer:
            raise RemoteError(f"etcd {url}: {answer.get('message') or answer['error']}")
        return answer

    def get(self, key: str) -> str | None:
        """The value of ``key`` (a linearizable read), None if there is no such key."""
        answer = self.call("/v3/kv/range", {"key": _b64(key)}, retry=True)
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")).decode("utf-8")

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, retry=True)

    def flannel_leases(self) -> tuple[FlannelLease, ...]:
        """flanneld's subnet leases, one per node that holds one."""
        end = FLANNEL_SUBNETS[:-1] + chr(ord(FLANNEL_SUBNETS[-1]) + 1)
        body = {"key": _b64(FLANNEL_SUBNETS), "range_end": _b64(end)}
        return flannel_leases(self.call("/v3/kv/range", body, retry=True))

    def started_members(self) -> tuple[str, ...]:
        """Names of the members that have started, sorted (see :func:`started_member_names`)."""
        return started_member_names(self.call("/v3/cluster/member/list", {}, retry=True))

    def leader(self) -> str | None:
        """The name of the member that leads now, asked of every endpoint that answers
        (the answer of the highest term decides); None when none names a leader.
        RemoteError when no endpoint answers at all."""
        ids = member_ids_by_name(self.call("/v3/cluster/member/list", {}, retry=True))
        statuses = []
        for url in self.endpoints:
            try:
                statuses.append(status_leader(self._post(url + "/v3/maintenance/status", {})))
            except (OSError, http.client.HTTPException, ValueError, RemoteError):
                continue
        return leader_name(statuses, ids)

    def fleet_machine_present(self, machine_id: str) -> bool:
        """Whether fleet's registry holds the machine (its fleetd is up and registered)."""
        return self.get(fleet_machine_key(machine_id)) is not None
