"""The host's etcd client against a real etcd 3.4 on loopback."""

from __future__ import annotations

import pytest

from provisioner.errors import RemoteError
from provisioner.etcdhttp import EtcdHttp, member_health
from tests.etcd_support import EtcdMember
from tests.loopback import free_ports

pytestmark = pytest.mark.integration


def test_keys_members_and_health(etcd: EtcdMember) -> None:
    client = EtcdHttp([etcd.client_url], timeout=3.0)
    assert client.get("/lab/none") is None
    client.put("/lab/ready", "ünïcode value")
    assert client.get("/lab/ready") == "ünïcode value"
    assert client.started_members() == (etcd.name,)
    assert member_health(etcd.client_url, timeout=3.0) is True


def test_a_silent_endpoint_is_skipped_then_named(etcd: EtcdMember) -> None:
    silent = f"http://127.0.0.1:{free_ports(1)[0]}"
    assert EtcdHttp([silent, etcd.client_url], timeout=1.0).started_members() == (etcd.name,)
    with pytest.raises(RemoteError, match=f"failed on every endpoint \\({silent}: "):
        EtcdHttp([silent], timeout=1.0).get("/lab/ready")


def test_a_refused_request_is_an_error_at_once(etcd: EtcdMember) -> None:
    with pytest.raises(RemoteError, match="HTTP 400"):
        EtcdHttp([etcd.client_url], timeout=3.0).call("/v3/kv/range", {"key": "not base64!"})
