"""The lab's one SSH client: run commands on a guest over paramiko, trusting only pinned keys.

Everything that talks SSH to a node goes through :class:`SSHRunner`: ``lab up``,
``status`` and ``exec`` build it from the pins in the lab's state, and ``lab
verify``'s testinfra backend (:mod:`provisioner.checks.backend`) from the lab's
ssh_config and known_hosts (:func:`runner_from_ssh_config`). Host keys are checked
against the pins by a policy that refuses everything else (nothing is ever added),
and only pinned key types are negotiated; the client logs in with the lab's own
key only (no agent, no ``~/.ssh``), reconnects once when a connection dropped
before a command started, and gives every connect and command a deadline.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import paramiko

from provisioner.errors import HostKeyError, RemoteError, WaitTimeout
from provisioner.remote.channel import read_until_exit
from provisioner.remote.hostkeys import (
    CHANGED_KEY_FIX,
    check_host_key,
    key_type_label,
    sha256_fingerprint,
)
from provisioner.remote.runner import CommandResult, quote_argv
from provisioner.remote.sshconfig import known_hosts_name, ssh_options

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 300.0
DEFAULT_KEEPALIVE_SECONDS = 15

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
    connection. A command that already started is never run twice. A host key
    that was refused stays refused: the runner does not knock again.
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
        keepalive: float = DEFAULT_KEEPALIVE_SECONDS,
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
        self._keepalive = keepalive
        self._key: paramiko.PKey | None = None
        self._client: paramiko.SSHClient | None = None
        self._refused: HostKeyError | None = None
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
        rc, stdout, stderr = self.run_line(
            quote_argv(argv),
            timeout=timeout,
            stdin=None if stdin is None else stdin.encode(),
        )
        return CommandResult(
            rc=rc,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
        )

    def run_line(
        self,
        command: str | bytes,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run a command line as given and return (exit status, stdout, stderr) unread.

        The login shell parses ``command``, so its words must already be quoted
        (:meth:`run` quotes an argument list with ``shlex.quote``; testinfra's
        backend API quotes its arguments the same way). Raises like :meth:`run`.
        """
        shown = command.decode(errors="replace") if isinstance(command, bytes) else command
        limit = self._command_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        channel = self._open_session()
        try:
            channel.settimeout(max(deadline - time.monotonic(), 0.001))
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            return self._collect(channel, deadline, lambda: self._timeout(shown, limit))
        except TimeoutError as exc:
            raise self._timeout(shown, limit) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(
                f"{self._name}: connection to {self.address} broke while running `{shown}`:"
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
        host = known_hosts_name(self._host, self._port)
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
            if self._refused is not None:
                raise HostKeyError(self._refused.message, hint=self._refused.hint)
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._disconnect()
            try:
                self._client = self._connect()
            except HostKeyError as exc:
                self._refused = exc
                raise
            transport = self._client.get_transport()
            if transport is None:  # connect() succeeded, so this is a paramiko bug
                raise RemoteError(f"{self._name}: no transport after connecting")
            transport.set_keepalive(math.ceil(self._keepalive))
            return transport

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        # No known_hosts is loaded, so paramiko asks the policy about every key.
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
        except paramiko.ssh_exception.IncompatiblePeer as exc:
            client.close()
            if "host key" not in str(exc):
                raise RemoteError(f"{self._name}: cannot connect to {self.address}: {exc}") from exc
            raise HostKeyError(
                f"{self._name}: {self.address} offers no host key of a pinned type"
                f" ({', '.join(sorted(self._pinned))}); refusing to connect",
                hint=f"someone may be impersonating the node, or it was rebuilt; {CHANGED_KEY_FIX}",
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

    @staticmethod
    def _collect(
        channel: paramiko.Channel, deadline: float, on_timeout: Callable[[], Exception]
    ) -> tuple[int, bytes, bytes]:
        """The command's exit status and output; EOFError if the connection died first."""
        rc, stdout, stderr = read_until_exit(channel, deadline, on_timeout)
        if rc == -1 and not channel.get_transport().is_active():
            # paramiko closes every channel of a dead transport without a status.
            raise EOFError("the connection closed before the command exited")
        return rc, stdout, stderr

    def _timeout(self, command: str, limit: float) -> WaitTimeout:
        return WaitTimeout(self._name, f"`{command}` did not finish within {limit:g}s")


# --- the lab's ssh_config and known_hosts -------------------------------------


def known_hosts_pins(path: Path, host: str, port: int) -> dict[str, str]:
    """The fingerprints a known_hosts file pins for ``host:port``, by key type; may be empty."""
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except OSError as exc:
        raise RemoteError(
            f"cannot read the lab's known_hosts {path}: {exc.strerror}",
            hint="it is written when the nodes boot; run `lab up` first",
        ) from exc
    found: Mapping[str, paramiko.PKey] = keys.lookup(known_hosts_name(host, port)) or {}
    return {
        key_type_label(key.get_name()): sha256_fingerprint(key.asbytes()) for key in found.values()
    }


def runner_from_ssh_config(
    alias: str,
    ssh_config: Path,
    *,
    user: str | None = None,
    port: int | None = None,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
) -> SSHRunner:
    """An :class:`SSHRunner` for ``alias``'s Host block in the lab's ssh_config.

    Host, port, user, key and timeouts come from the block (``user`` and ``port``
    override it); the pins are the keys its UserKnownHostsFile holds for the host.
    Raises :class:`HostKeyError` when that file pins no key for it.
    """
    try:
        text = ssh_config.read_text()
    except OSError as exc:
        raise RemoteError(f"cannot read {ssh_config}: {exc.strerror}") from exc
    options = ssh_options(text, alias, source=str(ssh_config))
    user = user or options.user
    port = port or options.port
    pins = known_hosts_pins(options.known_hosts, options.hostname, port)
    if not pins:
        raise HostKeyError(
            f"{alias}: {options.known_hosts} has no host key for"
            f" {known_hosts_name(options.hostname, port)}; refusing to connect",
            hint="the lab writes its known_hosts from the fingerprints each node prints"
            " on its console; re-run `lab up` to re-read them",
        )
    return SSHRunner(
        alias,
        options.hostname,
        user=user,
        port=port,
        private_key=options.identity_file,
        pinned_host_keys=pins,
        connect_timeout=options.connect_timeout,
        command_timeout=command_timeout,
        keepalive=options.keepalive,
    )
