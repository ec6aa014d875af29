"""VagrantContext validation and what the rendered Vagrantfile says."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from provisioner.errors import ConfigError
from provisioner.hypervisor.vagrantfile import machine_name
from tests.hypervisor_support import render, sample_context

pytestmark = pytest.mark.unit


def test_machine_names_follow_coreos_vagrant() -> None:
    assert machine_name("core", 1) == "core-01"
    assert machine_name("node", 12) == "node-12"


def test_derived_values() -> None:
    context = sample_context()
    assert context.domain_prefix == "lab-sample_"
    assert context.cpu_mode == "custom"
    assert sample_context(cpu_model="host-passthrough").cpu_mode == "host-passthrough"
    assert sample_context(cpu_model=None).cpu_mode is None
    assert set(context.template_vars()) >= {"lab_name", "nodes", "domain_prefix", "cpu_mode"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"driver": "xen"}, "driver must be 'kvm' or 'qemu'"),
        ({"box_version": "stable"}, "not a Vagrant version constraint"),
        ({"network_address": "10.0.0.1/24"}, "invalid network address"),
        ({"nodes": ()}, "at least one node"),
        ({"lab_name": "Bad_Name"}, "invalid lab name"),
    ],
)
def test_invalid_contexts(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sample_context(**changes)


@pytest.mark.parametrize("version", ["1.0.0", ">= 1.0", "~> 2.1, < 3", "0"])
def test_version_constraints(version: str) -> None:
    assert sample_context(box_version=version).box_version == version


def test_node_names_must_be_numbered_from_one() -> None:
    context = sample_context()
    swapped = (context.nodes[1], context.nodes[0], context.nodes[2])
    with pytest.raises(ConfigError, match="node 1 is named 'core-02', want 'core-01'"):
        dataclasses.replace(context, nodes=swapped)


def test_node_resources_and_mac_are_checked() -> None:
    context = sample_context()
    small = dataclasses.replace(context.nodes[0], memory=64)
    with pytest.raises(ConfigError, match="at least 128 MiB"):
        dataclasses.replace(context, nodes=(small,))
    bad_mac = dataclasses.replace(context.nodes[0], mac="52-54-00-aa-bb-01")
    with pytest.raises(ConfigError, match="invalid MAC"):
        dataclasses.replace(context, nodes=(bad_mac,))


def test_rendered_provider_settings() -> None:
    text = render(sample_context())
    for line in (
        'libvirt.uri = "qemu:///system"',
        'libvirt.driver = "qemu"',
        'libvirt.cpu_mode = "custom"',
        'libvirt.cpu_model = "qemu64"',
        'libvirt.default_prefix = "lab-sample_"',
        'libvirt.storage_pool_name = "default"',
        'libvirt.management_network_name = "lab-sample"',
        'libvirt.management_network_address = "192.168.150.0/24"',
        "libvirt.management_network_keep = true",
        "libvirt.graphics_type = 'none'",
        "libvirt.disk_bus = 'virtio'",
        "config.ssh.insert_key = false",
        'config.ssh.username = "core"',
        'config.ssh.private_key_path = [lab_path(".lab/id_ed25519")]',
        "config.vm.synced_folder '.', '/vagrant', disabled: true",
        'config.vm.box = "lab/default"',
    ):
        assert line in text, line
    assert "box_version" not in text
    assert "insecure_private_key" not in text


def test_rendered_nodes_table() -> None:
    text = render(sample_context(count=2))
    assert text.count("name: ") == 2
    assert 'mac: "52:54:00:aa:bb:02"' in text
    assert 'config_drive: ".lab/config-drives/core-02.iso"' in text
    assert "memory: 768," in text


def test_kvm_with_host_passthrough_has_no_model() -> None:
    text = render(sample_context(driver="kvm", cpu_model="host-passthrough", box_version="1.2.0"))
    assert 'libvirt.driver = "kvm"' in text
    assert 'libvirt.cpu_mode = "host-passthrough"' in text
    assert "cpu_model" not in re.sub(r"#.*", "", text)
    assert 'config.vm.box_version = "1.2.0"' in text


def test_missing_drives_render_as_nil() -> None:
    context = sample_context(count=1)
    node = dataclasses.replace(context.nodes[0], config_drive_path=None, user_data_path=None)
    text = render(dataclasses.replace(context, nodes=(node,)))
    assert "config_drive: nil," in text
    assert "user_data: nil," in text


def test_ruby_special_characters_are_quoted() -> None:
    text = render(sample_context(box_name='we"ird#{box}'))
    assert 'config.vm.box = "we\\"ird\\#{box}"' in text
