"""Fixtures shared by the integration tests that run fleet against a real etcd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd_support import EtcdMember, running_etcd
from tests.fleet_support import FleetCluster


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdMember]:
    """A one-member etcd 3.4 on loopback, killed after the test."""
    with running_etcd(tmp_path / "etcd") as member:
        yield member


@pytest.fixture
def cluster(tmp_path: Path, etcd: EtcdMember) -> Iterator[FleetCluster]:
    """fleetd machines (none started yet) against ``etcd``, stopped after the test."""
    fleet = FleetCluster(tmp_path / "machines", etcd.client_url)
    try:
        yield fleet
    finally:
        fleet.close()
