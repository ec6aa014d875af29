"""lab.yaml's ``registry`` key: defaults, the guests' address, and mistakes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config import REGISTRY_PORT, Overrides, build_config, load_config
from provisioner.errors import ConfigError


def config_with(tmp_path: Path, registry: object) -> object:
    raw = {"subnet": "192.168.58.0/24", "registry": registry}
    return build_config(raw, tmp_path, Overrides(), tmp_path / "lab.yaml")


def test_the_registry_is_on_by_default_at_the_gateway(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("subnet: 192.168.58.0/24\n")
    config = load_config(tmp_path)
    assert config.registry.enabled
    assert config.registry.port == REGISTRY_PORT == 5000
    assert config.registry.upstream is None
    assert config.registry_address == "192.168.58.1:5000"


def test_port_and_upstream(tmp_path: Path) -> None:
    config = build_config(
        {
            "subnet": "192.168.58.0/24",
            "registry": {"port": 5100, "upstream": "https://registry-1.docker.io"},
        },
        tmp_path,
        Overrides(),
    )
    assert config.registry_address == "192.168.58.1:5100"
    assert config.registry.cache_port == 5101
    assert config.registry.upstream == "https://registry-1.docker.io"


def test_off(tmp_path: Path) -> None:
    config = build_config({"registry": {"enabled": False}}, tmp_path, Overrides())
    assert not config.registry.enabled


@pytest.mark.parametrize(
    ("registry", "key", "message"),
    [
        ({"prot": 5000}, "registry.prot", "unknown key"),
        ({"port": "5000"}, "registry.port", "wrong type: expected int"),
        ({"port": 80}, "registry.port", "port 80 is out of range"),
        ({"port": 70000}, "registry.port", "out of range"),
        ({"port": 65535, "upstream": "https://x.io"}, "registry.port", "out of range"),
        ({"port": 8087}, "registry.port", "discovery service"),
        ({"port": 8086, "upstream": "https://x.io"}, "registry.port", "discovery service"),
        ({"upstream": "docker hub"}, "registry.upstream", "is not a registry URL"),
        ({"upstream": 5}, "registry.upstream", "expected a string or null"),
        ({"enabled": "yes"}, "registry.enabled", "expected bool"),
        ("on", "registry", "expected mapping"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, registry: object, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, registry)
    assert f"lab.yaml: {key}: " in caught.value.message
    assert message in caught.value.message
