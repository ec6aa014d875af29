"""Names of a lab's libvirt objects."""

from __future__ import annotations

import pytest

from provisioner.errors import ConfigError
from provisioner.hypervisor.naming import (
    MAX_BRIDGE_NAME,
    bridge_name,
    check_lab_name,
    domain_name,
    network_name,
    object_prefix,
)

pytestmark = pytest.mark.unit


def test_everything_carries_the_lab_name() -> None:
    assert network_name("demo") == "lab-demo"
    assert object_prefix("demo") == "lab-demo_"
    assert domain_name("demo", "core-01") == "lab-demo_core-01"


def test_prefix_of_one_lab_never_matches_another() -> None:
    assert not domain_name("a-b", "core-01").startswith(object_prefix("a"))


@pytest.mark.parametrize("lab", ["a", "demo", "x" * 31, "my-lab-2", "ends-"])
def test_bridge_names_fit_the_kernel_limit(lab: str) -> None:
    name = bridge_name(lab)
    assert len(name) <= MAX_BRIDGE_NAME
    assert name.startswith("lab-")
    assert bridge_name(lab) == name


def test_bridges_of_different_labs_differ() -> None:
    assert len({bridge_name(f"lab{i}") for i in range(200)}) == 200


@pytest.mark.parametrize("bad", ["", "Demo", "a_b", "-a", "1a", "a.b", "x" * 32, "a b"])
def test_bad_lab_names_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid lab name"):
        check_lab_name(bad)


def test_bad_node_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid node name"):
        domain_name("demo", "Core_01")
