"""fleetd configuration: fleet.conf, FLEET_* overrides, durations, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.guest.fleet.config import (
    DEFAULT_ETCD_SERVERS,
    FleetConfig,
    load_config,
    parse_duration,
    parse_metadata,
    parse_string_slice,
    read_machine_id,
)
from provisioner.guest.fleet.errors import ConfigError
from provisioner.guest.fleet.fleetd import parse_default_route_interface
from provisioner.guest.fleet.server import lease_ttl_seconds

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("1.5s", 1.5), ("0", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "s", "1x", "", "3s4"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_metadata_parsing_matches_fleet() -> None:
    assert parse_metadata(' region = us-west ,az="us-west-1", x, role=a,role=b') == {
        "region": "us-west",
        "az": "us-west-1",
        "role": "b",
    }
    assert parse_metadata("") == {}


def test_string_slices_accept_fleets_list_syntax() -> None:
    assert parse_string_slice('["http://a:2379", "http://b:2379"]') == (
        "http://a:2379",
        "http://b:2379",
    )
    assert parse_string_slice("http://a:2379,http://b:4001") == ("http://a:2379", "http://b:4001")


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(None, {})
    assert config == FleetConfig()
    assert config.etcd_servers == DEFAULT_ETCD_SERVERS
    assert config.agent_ttl == 30.0
    assert config.engine_reconcile_interval == 2.0
    assert config.etcd_key_prefix == "/_coreos.com/fleet/"
    assert config.units_directory == "/run/fleet/units/"


def test_file_then_environment(tmp_path: Path) -> None:
    conf = tmp_path / "fleet.conf"
    conf.write_text(
        "# comment\n"
        'metadata="region=us-west,az=1"\n'
        'etcd_servers=["http://10.0.0.1:2379"]\n'
        "agent_ttl=10s\n"
        "verbosity=1\n"
        "disable_engine=true\n"
        "etcd_key_prefix=/custom\n"
        "unknown_key=ignored\n"
    )
    config = load_config(
        str(conf),
        {
            "FLEET_AGENT_TTL": "4s",
            "FLEET_PUBLIC_IP": "192.168.1.5",
            "FLEET_ETCD_SERVERS": "http://127.0.0.1:2379,http://127.0.0.1:4001",
            "FLEET_ENGINE_RECONCILE_INTERVAL": "0.5",
            "UNRELATED": "x",
        },
    )
    assert config.metadata_dict() == {"region": "us-west", "az": "1"}
    assert config.agent_ttl == 4.0
    assert config.public_ip == "192.168.1.5"
    assert config.etcd_servers == ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
    assert config.verbosity == 1
    assert config.disable_engine is True
    assert config.etcd_key_prefix == "/custom/"
    assert config.engine_reconcile_interval == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEET_AGENT_TTL": "soon"}, "environment FLEET_AGENT_TTL: agent_ttl"),
        ({"FLEET_DISABLE_ENGINE": "maybe"}, "is not a boolean"),
        ({"FLEET_ENGINE_RECONCILE_INTERVAL": "-1"}, "must be positive"),
        ({"FLEET_UNIT_MANAGER": "docker"}, "unit_manager must be one of systemd, fake"),
        ({"FLEET_VERBOSITY": "loud"}, "is not a number"),
    ],
)
def test_bad_values_name_their_source(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env)


def test_bad_file_line_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "fleet.conf"
    conf.write_text("agent_ttl=3s\njust words\n")
    with pytest.raises(ConfigError, match=r"fleet\.conf:2: expected key=value"):
        load_config(str(conf), {})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "nope.conf"), {})


def test_machine_id(tmp_path: Path) -> None:
    path = tmp_path / "machine-id"
    path.write_text("0123456789ABCDEF0123456789abcdef\n")
    assert read_machine_id(str(path)) == "0123456789abcdef0123456789abcdef"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="is not a machine ID"):
        read_machine_id(str(path))
    with pytest.raises(ConfigError, match="cannot read the machine ID"):
        read_machine_id(str(tmp_path / "absent"))


def test_lease_ttl_rounds_up_to_whole_seconds() -> None:
    assert lease_ttl_seconds(30.0) == 30
    assert lease_ttl_seconds(2.5) == 3
    assert lease_ttl_seconds(0.5) == 2


def test_default_route_interface() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth1\t0008A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n"
    )
    assert parse_default_route_interface(table) == "eth0"
    assert parse_default_route_interface(table.splitlines()[0]) is None
