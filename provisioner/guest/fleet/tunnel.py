"""``fleetctl --tunnel``: reach the fleet API of a remote machine through ssh.

Each API request runs one ``ssh`` to the tunnel host whose stdin/stdout carry
the HTTP exchange: ``fleetctl fd-forward <socket>`` on the far side for a unix
endpoint (as fleet does), ``ssh -W host:port`` for an http endpoint.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import urllib.parse
from dataclasses import replace

from provisioner.guest.fleet.client import ApiEndpoint, FleetClient, HttpApiClient
from provisioner.guest.fleet.remote import (
    SshOptions,
    remote_command_line,
    ssh_argv,
    tunnel_address,
)


def tunnel_argv(endpoint: ApiEndpoint, options: SshOptions) -> list[str]:
    """The ssh command whose stdio is a connection to ``endpoint`` behind the tunnel."""
    host, _, port = tunnel_address(options.tunnel).rpartition(":")
    direct = replace(options, tunnel="", port=int(port), forward_agent=False)
    if endpoint.unix_path:
        forward = remote_command_line(["fleetctl", "fd-forward", endpoint.unix_path])
        return ssh_argv(host, forward, direct, tty=False)
    parts = urllib.parse.urlsplit(endpoint.base_url)
    target = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    argv = ssh_argv(host, "", direct, tty=False)
    return [*argv[:-1], "-W", target, argv[-1]]


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
    def __init__(self, endpoint: ApiEndpoint, ssh: SshOptions, *, timeout: float) -> None:
        super().__init__(endpoint, timeout=timeout + ssh.timeout)
        self.ssh = ssh

    def _connection(self) -> http.client.HTTPConnection:
        return _SshStdioConnection(tunnel_argv(self.endpoint, self.ssh), self.timeout)


def tunnelled(client: FleetClient, ssh: SshOptions) -> FleetClient:
    if isinstance(client, HttpApiClient):
        return TunnelledHttpApiClient(client.endpoint, ssh, timeout=client.timeout)
    return client
