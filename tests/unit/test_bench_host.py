"""The benchmark's host facts: free subnets and vagrant-libvirt's copy of the box."""

from __future__ import annotations

import ipaddress

import pytest

from benchmarks.host import box_uploaded, parse_ip_addr_networks, pick_subnets
from provisioner.hypervisor.boxvolume import volume_prefix

pytestmark = pytest.mark.unit


# --- networks -----------------------------------------------------------------------

IP_ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n"
    "33: lab-c80f3b5d6c    inet 192.168.200.1/24 brd 192.168.200.255 scope global lab-c80f\n"
)


def test_host_networks_from_ip_addr() -> None:
    assert parse_ip_addr_networks(IP_ADDR) == [
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv4Network("192.0.2.0/24"),
        ipaddress.IPv4Network("192.168.200.0/24"),
    ]


def test_subnets_avoid_what_is_used_and_each_other() -> None:
    used = [*parse_ip_addr_networks(IP_ADDR), ipaddress.IPv4Network("192.168.202.0/23")]
    chosen = pick_subnets(used, 3)
    assert [str(n) for n in chosen] == ["192.168.201.0/24", "192.168.204.0/24", "192.168.205.0/24"]


def test_no_free_subnet_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 2 free"):
        pick_subnets([ipaddress.IPv4Network("192.168.0.0/16")], 2)


# --- vagrant-libvirt's copy of the box ------------------------------------------------


def test_box_volume_as_vagrant_libvirt_names_it() -> None:
    # A volume name as seen in the default pool after `vagrant up`.
    seen = "lab-VAGRANTSLASH-default-6d98a028920c_vagrant_box_image_0_1795456645_box.img"
    assert seen.startswith(volume_prefix("lab/default-6d98a028920c"))
    assert box_uploaded(["other.img", seen], "lab/default-6d98a028920c")
    assert not box_uploaded([seen], "lab/default-4df8c813d879")
    assert not box_uploaded(["lab-x_core-01.img"], "lab/default-6d98a028920c")
