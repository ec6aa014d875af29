"""The error family of the guest-side fleet.

The guest package cannot import the host-side ``provisioner.errors`` (it runs on
the guest's bare python3), so it has its own small family with the same shape:
a message for the user and an optional hint.
"""

from __future__ import annotations


class FleetError(Exception):
    """An expected failure with a message for the user and an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UnitFileError(FleetError):
    """A unit file could not be parsed."""


class UnitValidationError(FleetError):
    """A unit name or its [X-Fleet] options are invalid (fleet's API answers 400)."""


class ConfigError(FleetError):
    """fleetd's configuration (fleet.conf or FLEET_* variables) is invalid."""


class EtcdError(FleetError):
    """etcd could not be reached or refused a request."""


class RegistryError(FleetError):
    """The fleet registry in etcd holds something unexpected."""


class DuplicateMachineError(FleetError):
    """Another live fleetd is already registered with this machine ID."""


class UnitManagerError(FleetError):
    """systemd (or its stand-in) failed to carry out a unit operation."""


class ApiError(FleetError):
    """The fleet HTTP API answered with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
