"""Routes, request parameters and URLs of the discovery service."""

from __future__ import annotations

import pytest

from provisioner.discovery.keyspace import EtcdError
from provisioner.discovery.protocol import (
    BadRequestError,
    Route,
    base_url,
    new_token_id,
    parse_bool,
    parse_index,
    parse_listen,
    parse_size,
    public_base,
    reject_ttl,
    route,
    split_discovery_url,
)
from provisioner.errors import DiscoveryError

pytestmark = pytest.mark.unit

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/health", Route("health")),
        ("/new", Route("new")),
        (f"/{TOKEN}", Route("token", f"/_etcd/registry/{TOKEN}", TOKEN)),
        (f"/{TOKEN}/", Route("token", f"/_etcd/registry/{TOKEN}", TOKEN)),
        (
            f"/{TOKEN}/_config/size",
            Route("token", f"/_etcd/registry/{TOKEN}/_config/size", TOKEN),
        ),
        (
            "/v2/keys/_etcd/registry/mytoken/abc",
            Route("keys", "/_etcd/registry/mytoken/abc", "mytoken"),
        ),
        ("/v2/keys/elsewhere", Route("keys", "/elsewhere", "")),
        ("/v2/keys/_etcd/registry", Route("keys", "/_etcd/registry", "")),
        (f"/{TOKEN}/../../x", Route("not_found")),  # may not climb out of its token
        ("/NOTAHEXTOKEN0123456789abcdef0123", Route("not_found")),
        ("/", Route("not_found")),
    ],
)
def test_route(path: str, expected: Route) -> None:
    assert route(path) == expected


def test_tokens_are_32_random_hex_digits() -> None:
    tokens = {new_token_id() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)


def test_booleans_parse_like_go_and_fail_like_etcd() -> None:
    assert parse_bool({"recursive": ["true"]}, "recursive") is True
    assert parse_bool({"recursive": ["F"]}, "recursive") is False
    assert parse_bool({}, "recursive") is None
    with pytest.raises(EtcdError) as recursive:
        parse_bool({"recursive": ["maybe"]}, "recursive")
    # Recorded from etcd 3.4.23.
    assert recursive.value.to_json() == {
        "errorCode": 209,
        "message": "Invalid field",
        "cause": 'invalid value for "recursive"',
        "index": 0,
    }
    with pytest.raises(EtcdError) as prev_exist:
        parse_bool({"prevExist": ["maybe"]}, "prevExist")
    assert prev_exist.value.cause == "invalid value for prevExist"


def test_indexes_must_be_numbers() -> None:
    assert parse_index({"waitIndex": ["12"]}, "waitIndex") == 12
    assert parse_index({"waitIndex": [""]}, "waitIndex") is None
    with pytest.raises(EtcdError) as caught:
        parse_index({"waitIndex": ["abc"]}, "waitIndex")
    assert caught.value.to_json() == {
        "errorCode": 203,
        "message": "The given index in POST form is not a number",
        "cause": 'invalid value for "waitIndex"',
        "index": 0,
    }


def test_ttl_is_refused_rather_than_ignored() -> None:
    reject_ttl({})
    with pytest.raises(EtcdError) as bad:
        reject_ttl({"ttl": ["abc"]})
    assert bad.value.code == 202
    with pytest.raises(EtcdError) as unsupported:
        reject_ttl({"ttl": ["30"]})
    assert unsupported.value.code == 209


def test_size_defaults_to_three_and_must_be_positive() -> None:
    assert parse_size(None) == 3
    assert parse_size("") == 3
    assert parse_size("5") == 5
    with pytest.raises(BadRequestError, match=r"invalid size 'abc': size must be a whole number"):
        parse_size("abc")
    with pytest.raises(BadRequestError, match="at least 1 member"):
        parse_size("0")
    with pytest.raises(BadRequestError, match="at least 1 member"):
        parse_size("-2")


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8087") == ("127.0.0.1", 8087)
    assert parse_listen(":9000") == ("", 9000)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen("lab-host:1") == ("lab-host", 1)
    for bad in ("8087", "host:", "host:99999", "a:b:c"):
        with pytest.raises(DiscoveryError) as caught:
            parse_listen(bad)
        assert caught.value.hint is not None
        assert "HOST:PORT" in caught.value.hint


def test_base_urls_are_connectable() -> None:
    assert base_url("", 80) == "http://127.0.0.1:80"
    assert base_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert base_url("::", 80) == "http://[::1]:80"
    assert base_url("192.168.121.1", 8087) == "http://192.168.121.1:8087"


def test_public_base_prefers_configuration_then_host_header() -> None:
    assert public_base("https://disc.example/", "x:1", "http://f") == "https://disc.example"
    assert public_base(None, "192.168.121.1:8087", "http://f") == "http://192.168.121.1:8087"
    assert public_base(None, "[::1]:8087", "http://f") == "http://[::1]:8087"
    assert public_base(None, "evil/path", "http://127.0.0.1:1") == "http://127.0.0.1:1"
    assert public_base(None, None, "http://127.0.0.1:1/") == "http://127.0.0.1:1"


def test_split_discovery_url() -> None:
    assert split_discovery_url(f"http://h:1/{TOKEN}") == ("http://h:1", TOKEN)
    assert split_discovery_url("http://h:1/v2/keys/_etcd/registry/abc/") == ("http://h:1", "abc")
    for bad in ("h:1/abc", "http://h:1/", f"http://h:1/other/{TOKEN}"):
        with pytest.raises(DiscoveryError, match="not a discovery URL"):
            split_discovery_url(bad)


def test_lab_renders_the_services_default_port() -> None:
    from provisioner.discovery.protocol import DEFAULT_PORT
    from provisioner.discovery_modes import LOCAL_PORT

    assert LOCAL_PORT == DEFAULT_PORT
