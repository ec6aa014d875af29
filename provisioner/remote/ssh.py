"""Run commands on a guest over SSH (paramiko), trusting only pinned host keys."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import paramiko

from provisioner.errors import RemoteError, WaitTimeout
from provisioner.remote.channel import read_until_exit
from provisioner.remote.hostkeys import check_host_key
from provisioner.remote.runner import CommandResult, quote_argv

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 300.0
_KEEPALIVE_SECONDS = 15

# Host key algorithms paramiko can negotiate, by the ``ssh-keygen -l`` label of the
# key behind them. Only algorithms of pinned key types are offered, so the server
# never picks a key type the host has no fingerprint for.
_HOST_KEY_ALGORITHMS = {
    "ED25519": ("ssh-ed25519",),
    "ECDSA": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    "RSA": ("rsa-sha2-512", "rsa-sha2-256"),
}


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accept a server key only if its SHA256 fingerprint is the pinned one for its type.

    The client loads no known_hosts, so paramiko consults this policy on every
    connection; the pins are the only source of trust.
    """

    def __init__(self, host: str, pinned: Mapping[str, str]) -> None:
        self._host = host
        self._pinned = dict(pinned)

    def missing_host_key(
        self,
        client: paramiko.SSHClient,  # noqa: ARG002 - paramiko's signature
        hostname: str,
        key: paramiko.PKey,
    ) -> None:
        check_host_key(f"{self._host} ({hostname})", key.get_name(), key.asbytes(), self._pinned)


def disabled_host_key_algorithms(pinned: Mapping[str, str]) -> list[str]:
    """Host key algorithms to switch off so only pinned key types can be negotiated."""
    usable = [label for label in pinned if label in _HOST_KEY_ALGORITHMS]
    if not usable:
        raise RemoteError(
            f"no usable pinned host key type among {sorted(pinned)}",
            hint=f"pin one of {', '.join(_HOST_KEY_ALGORITHMS)}",
        )
    return [
        algorithm
        for label, algorithms in _HOST_KEY_ALGORITHMS.items()
        if label not in pinned
        for algorithm in algorithms
    ]


class SSHRunner:
    """The :class:`~provisioner.remote.runner.Runner` for a guest reached over SSH.

    Connects lazily with the lab's private key, no agent and no other keys; keeps
    one connection and, when it has dropped before a command starts, opens one new
    connection. A command that already started is never run twice.
    """

    def __init__(
        self,
        name: str,
        host: str,
        *,
        private_key: Path,
        pinned_host_keys: Mapping[str, str],
        user: str = "core",
        port: int = 22,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self._name = name
        self._host = host
        self._port = port
        self._user = user
        self._key_path = private_key
        self._pinned = dict(pinned_host_keys)
        self._disabled = disabled_host_key_algorithms(self._pinned)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._key: paramiko.PKey | None = None
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @property
    def user(self) -> str:
        return self._user

    @property
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return f"{self._user}@{self._host}:{self._port}"

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        command = quote_argv(argv)
        limit = self._command_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        channel = self._open_session()
        try:
            channel.settimeout(max(deadline - time.monotonic(), 0.001))
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            return self._collect(channel, command, deadline, limit)
        except TimeoutError as exc:
            raise self._timeout(command, limit) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(
                f"{self._name}: connection to {self.address} broke while running `{command}`:"
                f" {exc or type(exc).__name__}",
                hint="the guest may have rebooted; the command was not retried",
            ) from exc
        finally:
            channel.close()

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        channel = self._open_session()
        try:
            channel.settimeout(self._command_timeout)
            channel.invoke_subsystem("sftp")
            with paramiko.SFTPClient(channel) as sftp:
                sftp.put(str(local), remote)
                if mode is not None:
                    sftp.chmod(remote, mode)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(
                f"{self._name}: cannot upload {local} to {remote} on {self.address}: {exc}",
            ) from exc
        finally:
            channel.close()

    def known_hosts_entry(self) -> str:
        """The verified host key as a known_hosts line, for OpenSSH (``lab ssh``)."""
        transport = self._active_transport()
        key = transport.get_remote_server_key()
        host = self._host if self._port == 22 else f"[{self._host}]:{self._port}"
        return f"{host} {key.get_name()} {base64.b64encode(key.asbytes()).decode('ascii')}"

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    # -- connection ---------------------------------------------------------

    def _open_session(self) -> paramiko.Channel:
        """A fresh session channel, reconnecting once if the transport dropped."""
        last: BaseException | None = None
        for _attempt in range(2):
            transport = self._active_transport()
            try:
                return transport.open_session(timeout=self._connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # The request failed before any command started: safe to reconnect.
                last = exc
                with self._lock:
                    self._disconnect()
        raise RemoteError(
            f"{self._name}: {self.address} dropped the connection twice: {last}",
            hint="check that the guest is up and sshd is running",
        ) from last

    def _active_transport(self) -> paramiko.Transport:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._disconnect()
            self._client = self._connect()
            transport = self._client.get_transport()
            if transport is None:  # connect() succeeded, so this is a paramiko bug
                raise RemoteError(f"{self._name}: no transport after connecting")
            transport.set_keepalive(_KEEPALIVE_SECONDS)
            return transport

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(PinnedHostKeyPolicy(self._name, self._pinned))
        try:
            client.connect(
                self._host,
                port=self._port,
                username=self._user,
                pkey=self._private_key(),
                allow_agent=False,
                look_for_keys=False,
                timeout=self._connect_timeout,
                banner_timeout=self._connect_timeout,
                auth_timeout=self._connect_timeout,
                channel_timeout=self._connect_timeout,
                disabled_algorithms={"keys": self._disabled},
            )
        except RemoteError:
            client.close()
            raise
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(
                f"{self._name}: {self.address} refused the key {self._key_path}",
                hint="the guest's authorized_keys must hold the lab's public key",
            ) from exc
        except TimeoutError as exc:
            client.close()
            raise RemoteError(
                f"{self._name}: {self.address} did not answer within {self._connect_timeout:g}s"
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise RemoteError(f"{self._name}: cannot connect to {self.address}: {exc}") from exc
        return client

    def _private_key(self) -> paramiko.PKey:
        if self._key is None:
            try:
                self._key = paramiko.PKey.from_path(self._key_path)
            except (OSError, paramiko.SSHException) as exc:
                raise RemoteError(
                    f"cannot load the lab's SSH key {self._key_path}: {exc}",
                    hint="re-run `lab render` to create the lab's key pair",
                ) from exc
        return self._key

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- output -------------------------------------------------------------

    def _collect(
        self, channel: paramiko.Channel, command: str, deadline: float, limit: float
    ) -> CommandResult:
        """Read stdout and stderr together until the command exits or the deadline."""
        rc, stdout, stderr = read_until_exit(
            channel, deadline, lambda: self._timeout(command, limit)
        )
        if rc == -1 and not channel.get_transport().is_active():
            # paramiko closes every channel of a dead transport without a status.
            raise EOFError("the connection closed before the command exited")
        return CommandResult(
            rc=rc,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
        )

    def _timeout(self, command: str, limit: float) -> WaitTimeout:
        return WaitTimeout(self._name, f"`{command}` did not finish within {limit:g}s")
