"""testinfra backend ``lab-paramiko``: paramiko that trusts only the lab's known_hosts.

testinfra's own ``paramiko`` backend accepts unknown host keys with a warning
(``paramiko.WarningPolicy``), never reads ``UserKnownHostsFile`` and honours only
``StrictHostKeyChecking no``; it also offers ssh-agent and ``~/.ssh`` keys and has
no command deadline. This backend reads the node's Host block from the lab's
ssh_config (see :mod:`provisioner.checks.sshconfig`) and

* loads the lab's known_hosts and refuses any key not in it (:class:`HostKeyError`),
  before authenticating, so nothing runs on an impostor;
* authenticates with the IdentityFile only (no agent, no other keys);
* gives every command a deadline (``read_timeout_sec`` in the host URL).

Host URLs: ``lab-paramiko://core-01?ssh_config=/lab/.lab/ssh_config&read_timeout_sec=60``.
The plugin :mod:`provisioner.checks.plugin` registers the name with testinfra.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import paramiko
from testinfra.backend import base

from provisioner.checks.sshconfig import SSHOptions, ssh_options
from provisioner.errors import HostKeyError, RemoteError, WaitTimeout
from provisioner.remote.channel import read_until_exit
from provisioner.remote.hostkeys import sha256_fingerprint

NAME = "lab-paramiko"
CLASS_PATH = "provisioner.checks.backend.LabParamikoBackend"
DEFAULT_COMMAND_TIMEOUT = 60.0


class _RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse hosts absent from known_hosts, saying which key they offered."""

    def __init__(self, alias: str, known_hosts: Path) -> None:
        self._alias = alias
        self._known_hosts = known_hosts

    def missing_host_key(
        self,
        client: paramiko.SSHClient,  # noqa: ARG002 - paramiko's signature
        hostname: str,
        key: paramiko.PKey,
    ) -> None:
        raise HostKeyError(
            f"{self._alias}: {hostname} offered host key {key.get_name()}"
            f" {sha256_fingerprint(key.asbytes())}, but {self._known_hosts} has no key"
            " for it; refusing to connect",
            hint="the lab writes its known_hosts from the fingerprints each node prints"
            " on its console; re-run `lab up` to re-read them",
        )


def _mismatch(alias: str, known_hosts: Path, exc: paramiko.BadHostKeyException) -> HostKeyError:
    offered = f"{exc.key.get_name()} {sha256_fingerprint(exc.key.asbytes())}"
    pinned = f"{exc.expected_key.get_name()} {sha256_fingerprint(exc.expected_key.asbytes())}"
    return HostKeyError(
        f"{alias}: {exc.hostname} offered host key {offered}, but {known_hosts} pins"
        f" {pinned}; refusing to connect",
        hint="someone may be impersonating the node, or it was rebuilt: re-read its"
        " console fingerprints before trusting it",
    )


class LabParamikoBackend(base.BaseBackend):  # type: ignore[misc] # testinfra is untyped
    NAME = NAME

    def __init__(
        self,
        hostspec: str,
        *args: Any,
        ssh_config: str | None = None,
        ssh_identity_file: str | None = None,
        read_timeout_sec: str | float | None = None,
        **kwargs: Any,
    ) -> None:
        self.host = self.parse_hostspec(hostspec)
        super().__init__(self.host.name, *args, **kwargs)
        if ssh_config is None:
            raise RemoteError(
                f"{self.host.name}: the {NAME} backend needs ?ssh_config=PATH in the host URL"
            )
        if ssh_identity_file is not None:
            raise RemoteError(
                f"{self.host.name}: the {NAME} backend takes its key from the ssh_config's"
                " IdentityFile, not from --ssh-identity-file"
            )
        self.ssh_config = Path(ssh_config)
        self.command_timeout = (
            float(read_timeout_sec) if read_timeout_sec is not None else DEFAULT_COMMAND_TIMEOUT
        )
        self._client: paramiko.SSHClient | None = None
        self._refused: HostKeyError | None = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------

    def options(self) -> SSHOptions:
        try:
            text = self.ssh_config.read_text()
        except OSError as exc:
            raise RemoteError(f"cannot read {self.ssh_config}: {exc.strerror}") from exc
        options = ssh_options(text, self.host.name, source=str(self.ssh_config))
        return replace(
            options,
            user=self.host.user or options.user,
            port=int(self.host.port) if self.host.port else options.port,
        )

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            if self._refused is not None:
                # A refused key stays refused: don't knock again for every check.
                raise HostKeyError(self._refused.message, hint=self._refused.hint)
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._client.close()
                self._client = None
            try:
                self._client = self._connect(self.options())
            except HostKeyError as exc:
                self._refused = exc
                raise
            transport = self._client.get_transport()
            if transport is None:  # connect() returned, so paramiko made one
                raise RemoteError(f"{self.host.name}: no transport after connecting")
            return transport

    def _connect(self, opts: SSHOptions) -> paramiko.SSHClient:
        where = f"{opts.alias} ({opts.user}@{opts.hostname}:{opts.port})"
        client = paramiko.SSHClient()
        try:
            # "system" host keys are read-only: paramiko never writes them back.
            client.load_system_host_keys(str(opts.known_hosts))
        except OSError as exc:
            raise RemoteError(
                f"{where}: cannot read the lab's known_hosts {opts.known_hosts}: {exc.strerror}",
                hint="it is written when the nodes boot; run `lab up` first",
            ) from exc
        client.set_missing_host_key_policy(_RefuseUnknownHostKey(opts.alias, opts.known_hosts))
        try:
            client.connect(
                opts.hostname,
                port=opts.port,
                username=opts.user,
                key_filename=str(opts.identity_file),
                allow_agent=False,
                look_for_keys=False,
                timeout=opts.connect_timeout,
                banner_timeout=opts.connect_timeout,
                auth_timeout=opts.connect_timeout,
                channel_timeout=opts.connect_timeout,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise _mismatch(opts.alias, opts.known_hosts, exc) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(
                f"{where} refused the key {opts.identity_file}",
                hint="the node's authorized_keys must hold the lab's public key",
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise RemoteError(f"{where}: cannot connect: {exc or type(exc).__name__}") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(opts.keepalive)
        return client

    def _open_session(self) -> paramiko.Channel:
        """A session channel, reconnecting once if the connection dropped in between."""
        last: BaseException | None = None
        for _attempt in range(2):
            try:
                return self._transport().open_session(timeout=self.command_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                last = exc  # nothing started yet, so a new connection is safe
                self.close()
        raise RemoteError(
            f"{self.host.name}: the connection dropped twice before a command could start: {last}",
            hint="check that the node is up and sshd is running",
        ) from last

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- commands -----------------------------------------------------------

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:  # noqa: ARG002
        cmd = self.encode(self.get_command(command, *args))
        rc, stdout, stderr = self._exec(cmd)
        return self.result(rc, cmd, stdout, stderr)

    def _exec(self, command: bytes) -> tuple[int, bytes, bytes]:
        deadline = time.monotonic() + self.command_timeout
        channel = self._open_session()
        try:
            channel.exec_command(command)
            channel.shutdown_write()
            return read_until_exit(channel, deadline, lambda: self._timeout(command))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(
                f"{self.host.name}: the connection broke while running"
                f" `{command.decode(errors='replace')}`: {exc or type(exc).__name__}"
            ) from exc
        finally:
            channel.close()

    def _timeout(self, command: bytes) -> WaitTimeout:
        return WaitTimeout(
            self.host.name,
            f"`{command.decode(errors='replace')}` did not finish within {self.command_timeout:g}s",
        )
