"""Parsing cloud-config into typed data, and the pure renderers of each section."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import pytest

from provisioner.guest.cloudinit import render, schema
from provisioner.guest.cloudinit.config import (
    DropIn,
    EnvSection,
    File,
    Unit,
    Update,
    User,
    parse_cloud_config,
)
from provisioner.guest.cloudinit.errors import CloudInitError
from provisioner.guest.cloudinit.goformat import quote, value
from provisioner.guest.cloudinit.sshkeys import merge_authorized_keys
from provisioner.guest.cloudinit.userdata import (
    Addresses,
    Format,
    decode,
    detect,
    resolve_addresses,
    substitute,
)

SEED = """#cloud-config
hostname: core-01
ssh_authorized_keys:
  - ssh-ed25519 AAAA top@host
users:
  - name: ops
    passwd: $6$x$y
    groups: [sudo, docker]
    no-create-home: yes
    ssh-authorized-keys: [ssh-rsa BBBB ops@host]
write_files:
  - path: /etc/a
    permissions: 0600
    owner: ops:ops
    content: |
      hello
  - path: /etc/b
    encoding: b64
    content: !!binary aGVsbG8K
coreos:
  etcd2:
    name: core-01
    initial-cluster: core-01=http://10.0.0.1:2380
    heartbeat_interval: 200
    debug: false
    proxy: "off"
  fleet:
    public-ip: 10.0.0.1
    metadata: region=us-west
    engine-reconcile-interval: 0.5
    etcd_request_timeout: 2
    disable-engine: true
  flannel:
    interface: 10.0.0.1
    etcd-prefix: /coreos.com/network
  update:
    reboot-strategy: off
  units:
    - name: etcd2.service
      command: start
    - name: app.service
      enable: yes
      runtime: true
      content: "[Service]\\nExecStart=/bin/app\\n"
      drop-ins:
        - name: 10-a.conf
          content: "[Service]\\nEnvironment=A=1\\n"
    - name: bad.service
      enable: "yes"
"""


@pytest.mark.unit
def test_parse_seed_config() -> None:
    config = parse_cloud_config(SEED)
    assert config.hostname == "core-01"
    assert config.ssh_authorized_keys == ("ssh-ed25519 AAAA top@host",)
    assert config.users == (
        User(
            name="ops",
            passwd="$6$x$y",
            groups=("sudo", "docker"),
            no_create_home=True,
            ssh_authorized_keys=("ssh-rsa BBBB ops@host",),
        ),
    )
    assert config.write_files == (
        File(path="/etc/a", content=b"hello\n", owner="ops:ops", permissions="0600"),
        File(path="/etc/b", content=b"hello\n", encoding="b64"),
    )
    coreos = config.coreos
    assert coreos.etcd2.values == (
        ("ETCD_HEARTBEAT_INTERVAL", "200"),
        ("ETCD_INITIAL_CLUSTER", "core-01=http://10.0.0.1:2380"),
        ("ETCD_NAME", "core-01"),
        ("ETCD_PROXY", "off"),
    )
    assert coreos.fleet.values == (
        ("FLEET_DISABLE_ENGINE", "true"),
        ("FLEET_ENGINE_RECONCILE_INTERVAL", "0.5"),
        ("FLEET_ETCD_REQUEST_TIMEOUT", "2"),
        ("FLEET_METADATA", "region=us-west"),
        ("FLEET_PUBLIC_IP", "10.0.0.1"),
    )
    assert coreos.flannel.values == (
        ("FLANNELD_ETCD_PREFIX", "/coreos.com/network"),
        ("FLANNELD_IFACE", "10.0.0.1"),
    )
    assert coreos.update == Update(reboot_strategy="off")
    assert coreos.units == (
        Unit(name="etcd2.service", command="start"),
        Unit(
            name="app.service",
            enable=True,
            runtime=True,
            content="[Service]\nExecStart=/bin/app\n",
            drop_ins=(DropIn("10-a.conf", "[Service]\nEnvironment=A=1\n"),),
        ),
        Unit(name="bad.service"),
    )


@pytest.mark.unit
def test_parse_empty_and_invalid() -> None:
    assert parse_cloud_config("#cloud-config\n") == parse_cloud_config("#cloud-config\nfoo: bar\n")
    with pytest.raises(CloudInitError, match="line 3: could not find expected ':'"):
        parse_cloud_config("#cloud-config\na:\na")


@pytest.mark.unit
def test_file_mode_and_decoding() -> None:
    assert File(path="/a").mode() == 0o644
    assert File(path="/a", permissions="0755").mode() == 0o755
    assert File(path="/a", permissions="755").mode() == 0o755
    with pytest.raises(CloudInitError, match="unable to parse file permissions"):
        File(path="/a", permissions="rw").mode()
    packed = base64.b64encode(gzip.compress(b"data")).decode()
    assert File(path="/a", content=packed.encode(), encoding="gzip+base64").decoded() == b"data"
    assert File(path="/a", content=gzip.compress(b"data"), encoding="gz").decoded() == b"data"
    with pytest.raises(CloudInitError, match="cannot be decoded as 'b64'"):
        File(path="/a", content=b"%%%", encoding="b64").decoded()


@pytest.mark.unit
def test_service_drop_in_lists_settings_in_struct_declaration_order() -> None:
    section = parse_cloud_config(
        "#cloud-config\ncoreos:\n  fleet:\n"
        "    public-ip: 203.0.113.29\n    metadata: region=us-west\n"
    ).coreos.fleet
    assert render.service_drop_in(section) == (
        '[Service]\nEnvironment="FLEET_METADATA=region=us-west"\nEnvironment="FLEET_PUBLIC_IP=203.0.113.29"\n'
    )
    assert render.service_drop_in(EnvSection()) == ""


@pytest.mark.unit
def test_flannel_options_have_no_quotes_and_no_trailing_newline() -> None:
    section = EnvSection((("FLANNELD_IFACE", "10.0.0.1"), ("FLANNELD_IP_MASQ", "true")))
    assert render.flannel_options(section) == "FLANNELD_IFACE=10.0.0.1\nFLANNELD_IP_MASQ=true"


@pytest.mark.unit
def test_generated_units_follow_the_user_order_etcd_etcd2_fleet_locksmith() -> None:
    config = parse_cloud_config(
        "#cloud-config\ncoreos:\n  locksmith:\n    group: a\n  fleet:\n    verbosity: 1\n"
        "  etcd2:\n    name: n\n  etcd:\n    addr: 1.2.3.4:4001\n"
    )
    assert [
        (unit.name, unit.runtime, unit.drop_ins[0].name) for unit in render.drop_in_units(config)
    ] == [
        ("etcd.service", True, "20-cloudinit.conf"),
        ("etcd2.service", True, "20-cloudinit.conf"),
        ("fleet.service", True, "20-cloudinit.conf"),
        ("locksmithd.service", True, "20-cloudinit.conf"),
    ]
    assert render.drop_in_units(parse_cloud_config("#cloud-config\n")) == []


@pytest.mark.unit
def test_update_units_and_update_conf() -> None:
    assert render.update_units(Update(reboot_strategy="off")) == [
        Unit(name="locksmithd.service", runtime=True, mask=True, command="stop")
    ]
    assert render.update_units(Update(reboot_strategy="reboot", group="beta")) == [
        Unit(name="locksmithd.service", runtime=True, command="restart"),
        Unit(name="update-engine.service", command="restart"),
    ]
    existing = "GROUP=stable\n# comment\nREBOOT_STRATEGY=etcd-lock\n"
    assert render.update_conf(Update(reboot_strategy="off", server="https://u"), existing) == (
        "GROUP=stable\n# comment\nREBOOT_STRATEGY=off\nSERVER=https://u\n"
    )


@pytest.mark.unit
def test_assert_valid_uses_coreos_cloudinit_runtime_message() -> None:
    with pytest.raises(CloudInitError) as caught:
        render.assert_valid(EnvSection((("REBOOT_STRATEGY", "always"),)), schema.UPDATE)
    assert str(caught.value) == (
        'invalid value "always" for option "reboot_strategy" '
        '(valid options: "^(etcd-lock|reboot|off)$")'
    )
    render.assert_valid(EnvSection((("REBOOT_STRATEGY", "reboot"),)), schema.UPDATE)


@pytest.mark.unit
def test_etc_hosts_oem_and_env_file() -> None:
    assert render.etc_hosts("localhost", "core-01") == "127.0.0.1 core-01\n"
    with pytest.raises(CloudInitError, match="Invalid option to manage_etc_hosts"):
        render.etc_hosts("yes", "core-01")
    oem = parse_cloud_config(
        "#cloud-config\ncoreos:\n  oem:\n    id: lab\n    name: Lab\n"
    ).coreos.oem
    assert (
        render.oem_release(oem)
        == 'ID=lab\nVERSION_ID=\nNAME="Lab"\nHOME_URL=""\nBUG_REPORT_URL=""\n'
    )
    existing = "PATH=/bin\n# keep\nCOREOS_PRIVATE_IPV4=1.1.1.1"
    assert render.merge_env_file(
        existing, {"COREOS_PUBLIC_IPV4": "2.2.2.2", "COREOS_PRIVATE_IPV4": "3.3.3.3"}
    ) == ("PATH=/bin\n# keep\nCOREOS_PRIVATE_IPV4=3.3.3.3\nCOREOS_PUBLIC_IPV4=2.2.2.2\n")
    with pytest.raises(CloudInitError, match="invalid environment variable name"):
        render.merge_env_file("", {"BAD-NAME": "x"})


@pytest.mark.unit
def test_merge_authorized_keys_replaces_the_managed_set_only() -> None:
    existing = "ssh-rsa VAGRANT vagrant\nssh-rsa OLD old\n"
    merged = merge_authorized_keys(
        existing, ["ssh-rsa OLD old"], ["ssh-rsa NEW new", "ssh-rsa NEW new"]
    )
    assert merged == "ssh-rsa VAGRANT vagrant\nssh-rsa NEW new\n"
    assert merge_authorized_keys(merged, ["ssh-rsa NEW new"], ["ssh-rsa NEW new"]) == merged


@pytest.mark.unit
@pytest.mark.parametrize(
    ("item", "text"),
    [
        (True, "true"),
        (2.0, "2"),
        (0.5, "0.5"),
        (1e6, "1e+06"),
        (123456789.0, "1.23456789e+08"),
        (7, "7"),
    ],
)
def test_go_value_formatting(item: object, text: str) -> None:
    assert value(item) == text


@pytest.mark.unit
def test_go_quote() -> None:
    assert quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'


@pytest.mark.unit
def test_userdata_detection_and_gzip() -> None:
    assert detect("") is Format.EMPTY
    assert detect("#!/bin/sh\n") is Format.SCRIPT
    assert detect("#cloud-config\n") is Format.CLOUD_CONFIG
    assert detect('{"ignition": {"version": "2.1.0"}}') is Format.IGNITION
    assert detect("hello") is Format.UNKNOWN
    assert decode(gzip.compress(b"#cloud-config\n")) == "#cloud-config\n"
    with pytest.raises(CloudInitError, match="cannot be decompressed"):
        decode(b"\x1f\x8bnot gzip")


@pytest.mark.unit
def test_substitution_with_escape() -> None:
    addresses = Addresses(public_ipv4="203.0.113.1", private_ipv4="10.0.0.1")
    text = (
        "a: $private_ipv4:2380\nb: \\$private_ipv4\n"
        "c: $public_ipv4,$public_ipv4\nd: $public_ipv6\ne: x\\1"
    )
    assert substitute(text, addresses.substitutions()) == (
        "a: 10.0.0.1:2380\nb: $private_ipv4\nc: 203.0.113.1,203.0.113.1\nd: \ne: x\\1"
    )


@pytest.mark.unit
def test_addresses_come_from_metadata_then_environment_then_the_local_address() -> None:
    environ = {"COREOS_PRIVATE_IPV4": "10.0.0.2", "COREOS_PUBLIC_IPV6": "fd00::2"}
    addresses = resolve_addresses({"public_ipv4": "203.0.113.9"}, environ, "192.168.121.5")
    assert addresses == Addresses(
        public_ipv4="203.0.113.9", private_ipv4="10.0.0.2", public_ipv6="fd00::2", private_ipv6=""
    )
    assert addresses.environment() == {
        "COREOS_PUBLIC_IPV4": "203.0.113.9",
        "COREOS_PRIVATE_IPV4": "10.0.0.2",
        "COREOS_PUBLIC_IPV6": "fd00::2",
    }
    assert resolve_addresses({}, {}, "192.168.121.5").private_ipv4 == "192.168.121.5"


@pytest.mark.unit
def test_a_workers_etcd2_proxy_section_becomes_etcd_proxy_environment() -> None:
    """A lab worker's ``coreos.etcd2`` (the golden 3 core + 5 workers render) maps to
    the ``ETCD_PROXY``/``ETCD_INITIAL_CLUSTER``/``ETCD_LISTEN_CLIENT_URLS`` variables
    coreos-cloudinit's config/etcd2.go names, which etcd 3.4 reads for its v2 proxy
    mode (etcdmain/etcd.go, startProxy)."""
    golden = Path(__file__).resolve().parent.parent / "golden" / "production-3-core-5-workers"
    config = parse_cloud_config((golden / "nodes" / "core-04" / "user-data").read_text())
    render.assert_valid(config.coreos.etcd2, schema.ETCD2)
    etcd2 = next(u for u in render.drop_in_units(config) if u.name == "etcd2.service")
    assert etcd2.drop_ins[0].content == (
        "[Service]\n"
        'Environment="ETCD_INITIAL_CLUSTER=core-01=http://192.168.58.101:2380,'
        'core-02=http://192.168.58.102:2380,core-03=http://192.168.58.103:2380"\n'
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:4001"\n'
        'Environment="ETCD_PROXY=on"\n'
    )
