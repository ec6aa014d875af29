"""Lease arithmetic, lease keys and values, and the files written from a lease."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest

from provisioner.guest.flannel.config import parse_config
from provisioner.guest.flannel.errors import LeaseError
from provisioner.guest.flannel.subnets import (
    Lease,
    choose_subnet,
    compatible,
    docker_opts,
    free_subnets,
    lease_value,
    parse_lease,
    parse_subnet_key,
    previous_subnet,
    renew_delay,
    subnet_env,
    subnet_key,
)

pytestmark = pytest.mark.unit

net = ipaddress.IPv4Network
CONFIG = parse_config('{"Network": "10.1.0.0/16"}')
SMALL = parse_config('{"Network": "10.9.0.0/22"}')  # /24s: 10.9.1.0, 10.9.2.0, 10.9.3.0


def lease(subnet: str, public_ip: str = "192.0.2.1") -> Lease:
    return Lease(net(subnet), public_ip, "vxlan", {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"})


def test_key_round_trip() -> None:
    assert subnet_key(net("10.1.19.0/24")) == "10.1.19.0-24"
    assert parse_subnet_key("/coreos.com/network/subnets/10.1.19.0-24") == net("10.1.19.0/24")
    assert parse_subnet_key("/coreos.com/network/subnets/10.1.19.0-24&fc00::-64") is None
    assert parse_subnet_key("/coreos.com/network/subnets/garbage") is None
    assert parse_subnet_key("10.1.19.7-24") is None  # host bits set


def test_lease_value_is_flannels_lease_attrs() -> None:
    value = lease_value("172.17.8.101", "vxlan", {"VNI": 1, "VtepMAC": "0a:58:0a:f4:00:01"})
    assert json.loads(value) == {
        "PublicIP": "172.17.8.101",
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "0a:58:0a:f4:00:01"},
    }
    assert list(json.loads(lease_value("172.17.8.101", "host-gw", {}))) == [
        "PublicIP",
        "BackendType",
    ]
    parsed = parse_lease("/coreos.com/network/subnets/10.1.3.0-24", value)
    assert parsed is not None
    assert (parsed.subnet, parsed.public_ip, parsed.vtep_mac) == (
        net("10.1.3.0/24"),
        "172.17.8.101",
        "0a:58:0a:f4:00:01",
    )
    assert parse_lease("/coreos.com/network/subnets/10.1.3.0-24", "{not json") is None


def test_free_subnets_start_at_subnet_min_and_skip_taken_ones() -> None:
    free = free_subnets(CONFIG, [net("10.1.1.0/24"), net("10.1.3.0/24")], limit=3)
    assert free == [net("10.1.2.0/24"), net("10.1.4.0/24"), net("10.1.5.0/24")]
    assert len(free_subnets(CONFIG, [])) == 100  # flannel's candidate window


def test_free_subnets_honour_min_max_and_len() -> None:
    config = parse_config(
        '{"Network": "10.1.0.0/16", "SubnetLen": 26, "SubnetMin": "10.1.7.64",'
        ' "SubnetMax": "10.1.7.192"}'
    )
    assert free_subnets(config, []) == [
        net("10.1.7.64/26"),
        net("10.1.7.128/26"),
        net("10.1.7.192/26"),
    ]
    # a lease of another length overlapping two candidates blocks both
    assert free_subnets(config, [net("10.1.7.0/25")]) == [
        net("10.1.7.128/26"),
        net("10.1.7.192/26"),
    ]


def test_choose_picks_among_free_subnets() -> None:
    taken = [lease("10.9.1.0/24"), lease("10.9.3.0/24")]
    assert choose_subnet(SMALL, taken, rng=random.Random(1)) == net("10.9.2.0/24")
    picks = {choose_subnet(CONFIG, [], rng=random.Random(seed)) for seed in range(20)}
    assert len(picks) > 1  # spread out, as flannel's random choice among 100
    assert all(compatible(CONFIG, pick) for pick in picks)


def test_exhaustion_is_a_lease_error() -> None:
    taken = [lease(f"10.9.{i}.0/24") for i in (1, 2, 3)]
    with pytest.raises(LeaseError, match="out of subnets"):
        choose_subnet(SMALL, taken)


def test_the_previous_subnet_is_reused_when_free_and_compatible() -> None:
    previous = net("10.1.42.0/24")
    assert choose_subnet(CONFIG, [lease("10.1.1.0/24")], previous) == previous
    # taken by another node meanwhile: a fresh one
    other = choose_subnet(CONFIG, [lease("10.1.42.0/24")], previous, rng=random.Random(0))
    assert other != previous
    # outside the config now (different length, or below SubnetMin): a fresh one
    assert choose_subnet(CONFIG, [], net("10.1.42.0/25"), rng=random.Random(0)) != net(
        "10.1.42.0/25"
    )
    assert choose_subnet(CONFIG, [], net("10.1.0.0/24"), rng=random.Random(0)) != net("10.1.0.0/24")
    assert not compatible(CONFIG, net("10.2.0.0/24"))


def test_subnet_env_text_is_flannels() -> None:
    assert subnet_env(CONFIG, net("10.1.72.0/24"), 1450, False) == (
        "FLANNEL_NETWORK=10.1.0.0/16\n"
        "FLANNEL_SUBNET=10.1.72.1/24\n"
        "FLANNEL_MTU=1450\n"
        "FLANNEL_IPMASQ=false\n"
    )


def test_previous_subnet_from_an_existing_file() -> None:
    text = subnet_env(CONFIG, net("10.1.72.0/24"), 1450, True)
    assert previous_subnet(text) == net("10.1.72.0/24")
    assert previous_subnet("") is None
    assert previous_subnet("FLANNEL_SUBNET=bogus\n") is None


@pytest.mark.parametrize(("masq", "docker_masq"), [(False, "true"), (True, "false")])
def test_docker_opts_as_mk_docker_opts_individual_vars(masq: bool, docker_masq: str) -> None:
    text = docker_opts(subnet_env(CONFIG, net("10.1.72.0/24"), 1450, masq))
    assert text == (
        'DOCKER_OPT_BIP="--bip=10.1.72.1/24"\n'
        f'DOCKER_OPT_IPMASQ="--ip-masq={docker_masq}"\n'
        'DOCKER_OPT_MTU="--mtu=1450"\n'
    )


def test_renewal_comes_margin_before_expiry() -> None:
    assert renew_delay(24 * 3600, 60) == 23 * 3600
    assert renew_delay(30, 60) == 10  # a test TTL shorter than the margin: a third
