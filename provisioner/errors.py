"""One error family for everything the user can cause or fix.

Expected failures raise a :class:`LabError` (or a subclass); the CLI prints its
message as one line plus the hint and exits non-zero. Anything else is a bug
and keeps its traceback in the debug log.
"""

from __future__ import annotations


class LabError(Exception):
    """An expected failure with a message for the user and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(LabError):
    """Bad lab configuration; names the file and key path."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.path = path
        self.key = key


class ValidationError(LabError):
    """Rendered or user-supplied cloud-config failed validation."""

    exit_code = 1


class DiscoveryError(LabError):
    """The etcd discovery service failed or refused a request."""


class BoxError(LabError):
    """Building, caching or importing a box failed."""


class HostError(LabError):
    """The host is missing something (qemu, libvirt, vagrant, disk space)."""


class NodeError(LabError):
    """A node failed to boot, answer or become healthy."""

    def __init__(self, node: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{node}: {message}", hint=hint)
        self.node = node


class WaitTimeout(NodeError):  # noqa: N818 - reads as "raise WaitTimeout(node, what)"
    """A wait ran past its deadline; says what it waited for."""


class NotReady(LabError):  # noqa: N818 - reads as "raise NotReady(what is missing)"
    """What a wait waits for is not there yet; the wait tries again (see provisioner.waits)."""


class RemoteError(LabError):
    """A command on a guest could not be run (connection, auth, host key)."""


class HostKeyError(RemoteError):
    """A guest presented a host key that is not the one pinned for it."""


class RegistryError(LabError):
    """The image registry, its relays or an image copy failed; names the image or file."""
