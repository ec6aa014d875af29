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


def test_flannel_leases_read_from_the_host_and_with_etcdctl_agree(etcd: EtcdMember) -> None:
    """The lease layout flanneld writes (provisioner/guest/flannel/subnets.py, flannel's
    pkg/subnet/etcd/registry.go), read over HTTP by `lab up` and by `etcdctl get -w json`
    in `lab status` and `lab verify`; keys beside the prefix are not leases."""
    import json
    import subprocess

    from provisioner import facts
    from provisioner.parsers import FlannelLease

    client = EtcdHttp([etcd.client_url], timeout=3.0)
    client.put("/coreos.com/network/config", '{"Network": "10.1.0.0/16"}')
    client.put(
        "/coreos.com/network/subnets/10.1.19.0-24",
        json.dumps({"PublicIP": "192.168.58.101", "BackendType": "vxlan",
                    "BackendData": {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:01"}}),
    )  # fmt: skip
    client.put(
        "/coreos.com/network/subnets/10.1.3.0-24",
        json.dumps({"PublicIP": "192.168.58.102", "BackendType": "vxlan"}),
    )
    client.put("/coreos.com/network/subnetsX", "not a lease")
    expected = (
        FlannelLease("10.1.19.0/24", "192.168.58.101", "vxlan"),
        FlannelLease("10.1.3.0/24", "192.168.58.102", "vxlan"),
    )
    assert client.flannel_leases() == expected
    fact = facts.flannel_leases([etcd.client_url])
    listed = subprocess.run(fact.argv, capture_output=True, text=True, timeout=30, check=True)
    assert fact.parse(listed) == expected  # type: ignore[arg-type]


def test_the_leader_is_found_from_the_host(etcd: EtcdMember) -> None:
    """What `lab kill --leader` asks: the member list and each member's status over
    etcd's JSON gateway (a lone member leads itself); a silent endpoint is skipped."""
    silent = f"http://127.0.0.1:{free_ports(1)[0]}"
    assert EtcdHttp([silent, etcd.client_url], timeout=3.0).leader() == etcd.name
