"""Tiers by directory: tests/unit, tests/integration and tests/vm get their marker."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "vm")

pytest_plugins = ["pytester"]  # the lab plugin's own tests run pytest inside pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts and not any(item.iter_markers(tier)):
                item.add_marker(getattr(pytest.mark, tier))
