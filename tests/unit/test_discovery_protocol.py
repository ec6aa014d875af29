"""Token ids, sizes, URLs and listen addresses of the discovery service, and etcd's flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.discovery.protocol import (
    base_url,
    check_size,
    new_token_id,
    parse_listen,
    split_discovery_url,
    token_url,
)
from provisioner.discovery.service import etcd_argv, service_dir, state_root
from provisioner.errors import DiscoveryError

pytestmark = pytest.mark.unit

TOKEN = "0123456789abcdef0123456789abcdef"


def test_tokens_are_32_random_hex_digits() -> None:
    tokens = {new_token_id() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)


def test_size_must_be_positive() -> None:
    assert check_size(5) == 5
    assert check_size(1) == 1
    with pytest.raises(DiscoveryError, match="at least 1 member") as caught:
        check_size(0)
    assert caught.value.hint is not None
    with pytest.raises(DiscoveryError, match="invalid size -2: a cluster needs at least 1 member"):
        check_size(-2)


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


def test_discovery_urls_are_etcds_own_registry_urls() -> None:
    url = token_url("http://192.168.58.1:8087/", TOKEN)
    assert url == f"http://192.168.58.1:8087/v2/keys/_etcd/registry/{TOKEN}"
    assert split_discovery_url(url) == ("http://192.168.58.1:8087", TOKEN)


def test_split_discovery_url() -> None:
    assert split_discovery_url(f"http://h:1/{TOKEN}") == ("http://h:1", TOKEN)
    assert split_discovery_url("http://h:1/v2/keys/_etcd/registry/abc/") == ("http://h:1", "abc")
    for bad in ("h:1/abc", "http://h:1/", f"http://h:1/other/{TOKEN}"):
        with pytest.raises(DiscoveryError, match="not a discovery URL"):
            split_discovery_url(bad)


def test_lab_renders_the_services_default_port_and_url_form() -> None:
    from provisioner.config import Overrides, build_config
    from provisioner.discovery.protocol import DEFAULT_PORT
    from provisioner.discovery_modes import LOCAL_PORT, local_url

    assert LOCAL_PORT == DEFAULT_PORT
    config = build_config({"name": "t", "subnet": "192.168.58.0/24"}, Path("/lab"), Overrides())
    assert local_url(config, TOKEN) == token_url(base_url(config.gateway, DEFAULT_PORT), TOKEN)


def test_etcd_listens_on_the_one_address_and_keeps_its_peer_on_a_socket() -> None:
    argv = etcd_argv("/usr/bin/etcd", ("192.168.58.1", 8087), Path("/s/192.168.58.1-8087"))
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[1:])
    assert flags["listen-client-urls"] == "http://192.168.58.1:8087"
    assert flags["advertise-client-urls"] == "http://192.168.58.1:8087"
    assert flags["listen-peer-urls"].startswith("unix://")
    assert flags["initial-cluster"] == f"{flags['name']}={flags['listen-peer-urls']}"
    assert flags["data-dir"] == "/s/192.168.58.1-8087/data"
    assert flags["enable-v2"] == "true"
    assert not any("metrics" in flag for flag in flags)
    everywhere = dict(
        a.removeprefix("--").split("=", 1) for a in etcd_argv("etcd", ("", 9), Path("/s"))[1:]
    )
    assert everywhere["listen-client-urls"] == "http://0.0.0.0:9"
    assert everywhere["advertise-client-urls"] == "http://127.0.0.1:9"


def test_each_address_has_its_own_directory_under_the_state_home() -> None:
    root = state_root({"XDG_STATE_HOME": "/st", "HOME": "/h"})
    assert root == Path("/st/lab/discovery")
    assert state_root({"HOME": "/h"}) == Path("/h/.local/state/lab/discovery")
    assert service_dir("192.168.58.1", 8087, root) == root / "192.168.58.1-8087"
    assert service_dir("", 9, root) == root / "0.0.0.0-9"
