"""flanneld's network config (flannel's defaults and errors) and its options."""

from __future__ import annotations

import ipaddress
import json

import pytest

from provisioner.guest.flannel.config import Options, parse_config, parse_options
from provisioner.guest.flannel.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_follow_flannel() -> None:
    config = parse_config('{"Network": "10.1.0.0/16"}')
    assert config.network == ipaddress.IPv4Network("10.1.0.0/16")
    assert config.subnet_len == 24
    assert str(config.subnet_min) == "10.1.1.0"  # the first subnet is skipped
    assert str(config.subnet_max) == "10.1.255.0"
    assert config.backend_type == "vxlan"
    assert (config.vni, config.port) == (1, 0)


@pytest.mark.parametrize(
    ("network", "subnet_len", "first", "last"),
    [
        ("10.1.0.0/22", 24, "10.1.1.0", "10.1.3.0"),
        ("10.1.0.0/23", 25, "10.1.0.128", "10.1.1.128"),
        ("10.1.0.0/28", 30, "10.1.0.4", "10.1.0.12"),
    ],
)
def test_small_networks_get_prefix_plus_two(
    network: str, subnet_len: int, first: str, last: str
) -> None:
    config = parse_config(json.dumps({"Network": network}))
    assert (config.subnet_len, str(config.subnet_min), str(config.subnet_max)) == (
        subnet_len,
        first,
        last,
    )


def test_host_bits_in_the_network_are_dropped() -> None:
    assert str(parse_config('{"Network": "10.1.2.3/16"}').network) == "10.1.0.0/16"


def test_subnet_len_min_max_and_backend_are_honoured() -> None:
    config = parse_config(
        json.dumps(
            {
                "Network": "10.1.0.0/16",
                "SubnetLen": 26,
                "SubnetMin": "10.1.10.0",
                "SubnetMax": "10.1.20.192",
                "Backend": {"Type": "udp"},
            }
        )
    )
    assert config.subnet_len == 26
    assert (str(config.subnet_min), str(config.subnet_max)) == ("10.1.10.0", "10.1.20.192")
    assert (config.backend_type, config.port) == ("udp", 8285)


def test_vxlan_backend_settings() -> None:
    config = parse_config(
        '{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan", "VNI": 42, "Port": 4789,'
        ' "DirectRouting": true}}'
    )
    assert (config.vni, config.port, config.direct_routing) == (42, 4789, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "please define a correct Network"),
        ('{"Network": "10.1.0.0/33"}', "not an IPv4 CIDR"),
        ('{"Network": "banana"}', "not an IPv4 CIDR"),
        ('{"Network": "10.1.0.0/29"}', "network is too small"),
        ('{"Network": "10.1.0.0/16", "SubnetLen": 31}', "less than /31"),
        ('{"Network": "10.1.0.0/16", "SubnetLen": 17}', "at least four subnets"),
        ('{"Network": "10.1.0.0/16", "SubnetLen": "24"}', "SubnetLen must be an integer"),
        ('{"Network": "10.1.0.0/16", "SubnetMin": "10.2.0.0"}', "SubnetMin is not in the range"),
        ('{"Network": "10.1.0.0/16", "SubnetMax": "10.2.0.0"}', "SubnetMax is not in the range"),
        ('{"Network": "10.1.0.0/16", "SubnetMin": "10.1.0.7"}', "not on a SubnetLen boundary"),
        ('{"Network": "10.1.0.0/16", "SubnetMin": "x"}', "SubnetMin is not an IPv4 address"),
        (
            '{"Network": "10.1.0.0/16", "SubnetMin": "10.1.9.0", "SubnetMax": "10.1.8.0"}',
            "is above SubnetMax",
        ),
        ('{"Network": "10.1.0.0/16", "Backend": {"Type": "gre"}}', "unknown backend type: 'gre'"),
        ('{"Network": "10.1.0.0/16", "Backend": "vxlan"}', "Backend must be a JSON object"),
        ('{"Network": "10.1.0.0/16", "Backend": {"VNI": 16777216}}', "24 bits"),
        ('{"Network": "10.1.0.0/16", "Backend": {"Port": 70000}}', "not a UDP port"),
        ('{"Network": "10.1.0.0/16", "EnableIPv6": true}', "IPv6"),
    ],
)
def test_unusable_configs_say_why(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config(text)


def test_option_defaults_are_flannels() -> None:
    options = parse_options([], {})
    assert options == Options()
    assert options.etcd_endpoints == ("http://127.0.0.1:4001", "http://127.0.0.1:2379")
    assert options.etcd_prefix == "/coreos.com/network"
    assert options.subnet_file == "/run/flannel/subnet.env"
    assert options.renew_margin == 60
    assert options.lease_ttl == 24 * 3600
    assert options.ip_masq is False
    assert options.iptables_forward_rules is True
    assert parse_options(["-iptables-forward-rules=false"], {}).iptables_forward_rules is False


def test_options_from_flags_in_either_dash_style() -> None:
    options = parse_options(
        [
            "-etcd-endpoints=http://10.0.0.1:2379,http://10.0.0.2:2379",
            "--etcd-prefix",
            "/lab/network",
            "-iface=eth1",
            "-iface",
            "10.0.0.5",
            "--ip-masq",
            "-public-ip=192.0.2.7",
            "-subnet-lease-renew-margin=5",
        ],
        {},
    )
    assert options.etcd_endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert options.etcd_prefix == "/lab/network"
    assert options.ifaces == ("eth1", "10.0.0.5")
    assert options.ip_masq is True
    assert options.public_ip == "192.0.2.7"
    assert options.renew_margin == 5


def test_options_from_flanneld_variables_as_cloud_config_writes_them() -> None:
    environ = {
        "FLANNELD_ETCD_ENDPOINTS": "http://172.17.8.101:2379",
        "FLANNELD_ETCD_PREFIX": "/coreos.com/network",
        "FLANNELD_IFACE": "eth1",
        "FLANNELD_PUBLIC_IP": "172.17.8.101",
        "FLANNELD_IP_MASQ": "true",
        "FLANNELD_SUBNET_FILE": "/run/flannel/other.env",
        "FLANNELD_SUBNET_LEASE_TTL": "30",
    }
    options = parse_options([], environ)
    assert options.etcd_endpoints == ("http://172.17.8.101:2379",)
    assert options.ifaces == ("eth1",)
    assert options.public_ip == "172.17.8.101"
    assert options.ip_masq is True
    assert options.subnet_file == "/run/flannel/other.env"
    assert options.lease_ttl == 30


def test_a_flag_wins_over_its_variable() -> None:
    options = parse_options(["-ip-masq=false"], {"FLANNELD_IP_MASQ": "true"})
    assert options.ip_masq is False


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"FLANNELD_IP_MASQ": "yes"}, "invalid boolean value 'yes'"),
        (["-public-ip=eth0"], {}, "-public-ip is not an IPv4 address"),
        (["-etcd-prefix=coreos.com"], {}, "must start with '/'"),
        (["-subnet-lease-renew-margin=x"], {}, "not an integer"),
        (["-subnet-lease-renew-margin=0"], {}, "at least 1"),
        (["-no-such-flag"], {}, "invalid command line"),
    ],
)
def test_bad_options_say_why(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options(argv, environ)


def test_version_flag() -> None:
    assert parse_options(["-version"], {}).version
    assert parse_options(["--version"], {}).version
