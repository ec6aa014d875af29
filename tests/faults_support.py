"""Shared by the fault tests: what libvirt tells of a lab's taps, without libvirt."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType


class TapsLibvirt(AbstractContextManager["TapsLibvirt"]):
    """Stands in for LibvirtHost's interface lookup: each node's tap device, by node name
    (in the namespace tests, the hub ends of the veth pairs)."""

    def __init__(self, taps: dict[str, str]) -> None:
        self.taps = taps

    def interface_device(self, domain: str, network: str, bridge: str, mac: str) -> str | None:
        del network, bridge, mac
        return self.taps.get(domain.rsplit("_", 1)[1])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
