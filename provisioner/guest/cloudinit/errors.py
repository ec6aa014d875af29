"""The error family of the guest-side cloud-config agent.

The guest package cannot import the host-side ``provisioner.errors`` (it runs on
the guest's bare python3), so it has its own small family with the same shape:
a message for the user and an optional hint.
"""

from __future__ import annotations


class CloudInitError(Exception):
    """An expected failure with a message for the user and an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class DatasourceError(CloudInitError):
    """No user-data source was available, or reading it failed."""


class ApplyError(CloudInitError):
    """Applying a cloud-config to the system failed."""
