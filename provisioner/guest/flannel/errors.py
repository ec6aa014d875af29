"""The error family of the guest-side flanneld.

Same shape as the rest of the guest software: a message for the log and an
optional hint. etcd failures arrive as :class:`provisioner.guest.fleet.errors.EtcdError`
from the shared etcd client.
"""

from __future__ import annotations


class FlannelError(Exception):
    """An expected failure with a message for the log and an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(FlannelError):
    """The network config in etcd or flanneld's own options cannot be used."""


class LeaseError(FlannelError):
    """No subnet lease could be acquired (out of subnets, or lost races every time)."""


class NetworkSetupError(FlannelError):
    """The kernel refused to program a device, address, route or rule."""
