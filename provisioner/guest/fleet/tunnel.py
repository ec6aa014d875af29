"""``fleetctl --tunnel``: reach the fleet API of a remote machine through ssh.

One ``ssh`` to the tunnel host per fleetctl command: its stdin/stdout carry
one HTTP/1.1 connection, kept alive for every API request of the command
(fleetd's API keeps connections open), and closed when the command ends. The far
side is ``fleetctl fd-forward <socket>`` for a unix endpoint (as fleet does),
``ssh -W host:port`` for an http endpoint. If the connection breaks between
requests, the next request starts a new ssh once.

With an ssh_config (``FLEETCTL_SSH_CONFIG``, e.g. the one ``lab ssh-config``
writes), ``--tunnel NODE`` is a ``Host`` of that file: ssh takes the address,
user, key and pinned known hosts from it (``ssh -F``); a port is passed only
when ``--tunnel`` names one. Without it the tunnel is fleet's: ``host[:22]``,
``--ssh-username``, ``--known-hosts-file`` and ``--strict-host-key-checking``.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import socket
import subprocess
import threading
import urllib.parse
from dataclasses import replace
from typing import Any

from provisioner.guest.fleet.client import ApiEndpoint, FleetClient, HttpApiClient
from provisioner.guest.fleet.errors import ApiError, FleetError
from provisioner.guest.fleet.remote import (
    SshOptions,
    remote_command_line,
    ssh_argv,
    tunnel_address,
)


def _config_argv(options: SshOptions) -> tuple[list[str], str]:
    """``ssh -F`` argv up to the host, and the host, for a tunnel named in an ssh_config."""
    host, _, port = options.tunnel.rpartition(":") if ":" in options.tunnel else ("", "", "")
    host = host or options.tunnel
    argv = ["ssh", "-F", options.ssh_config]
    argv += ["-o", f"ConnectTimeout={max(1, math.ceil(options.timeout))}"]
    argv += ["-o", "BatchMode=yes"]
    if port:
        argv += ["-p", port]
    return [*argv, "-T"], host


def tunnel_argv(endpoint: ApiEndpoint, options: SshOptions) -> list[str]:
    """The ssh command whose stdio is a connection to ``endpoint`` behind the tunnel."""
    if endpoint.unix_path:
        forward = remote_command_line(["fleetctl", "fd-forward", endpoint.unix_path])
    else:
        parts = urllib.parse.urlsplit(endpoint.base_url)
        forward = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if options.ssh_config:
        argv, host = _config_argv(options)
        if endpoint.unix_path:
            return [*argv, host, "--", forward]
        return [*argv, "-W", forward, host]
    host, _, port = tunnel_address(options.tunnel).rpartition(":")
    direct = replace(options, tunnel="", port=int(port), forward_agent=False)
    if endpoint.unix_path:
        return ssh_argv(host, forward, direct, tty=False)
    argv = ssh_argv(host, "", direct, tty=False)
    return [*argv[:-1], "-W", forward, argv[-1]]


class _SshStdioConnection(http.client.HTTPConnection):
    def __init__(self, argv: list[str], timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._argv = argv
        self._process: subprocess.Popen[bytes] | None = None

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                self._argv, stdin=theirs.fileno(), stdout=theirs.fileno()
            )
        finally:
            theirs.close()
        ours.settimeout(self.timeout)
        self.sock = ours

    def close(self) -> None:
        super().close()
        process = self._process
        self._process = None
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)


class TunnelledHttpApiClient(HttpApiClient):
    """The API driver over one ssh kept for the whole fleetctl command."""

    def __init__(self, endpoint: ApiEndpoint, ssh: SshOptions, *, timeout: float) -> None:
        super().__init__(endpoint, timeout=timeout + ssh.timeout)
        self.ssh = ssh
        self._shared: _SshStdioConnection | None = None
        self._lock = threading.RLock()

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._shared is None:
                argv = tunnel_argv(self.endpoint, self.ssh)
                self._shared = _SshStdioConnection(argv, self.timeout)
            return self._shared

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        with self._lock:
            kept = self._shared is not None
            try:
                return super()._request(method, path, body)
            except ApiError:
                raise
            except FleetError:
                # A kept connection that broke between requests: one new ssh, once,
                # for a request that changes nothing.
                if not kept or method != "GET":
                    raise
            self.close()
            return super()._request(method, path, body)

    def _release(self, conn: http.client.HTTPConnection) -> None:
        """Keep the connection for the next request (closed by ``close``)."""

    def close(self) -> None:
        with self._lock:
            shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()


def tunnelled(client: FleetClient, ssh: SshOptions) -> FleetClient:
    if isinstance(client, HttpApiClient):
        return TunnelledHttpApiClient(client.endpoint, ssh, timeout=client.timeout)
    return client
