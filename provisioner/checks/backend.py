"""testinfra backend ``lab-paramiko``: testinfra's backend API over the lab's SSH client.

testinfra's own ``paramiko`` backend accepts unknown host keys with a warning
(``paramiko.WarningPolicy``), never reads ``UserKnownHostsFile`` and honours only
``StrictHostKeyChecking no``; it also offers ssh-agent and ``~/.ssh`` keys and has
no command deadline. This backend runs every command through
:class:`~provisioner.remote.ssh.SSHRunner`, built from the node's Host block in the
lab's ssh_config (:func:`~provisioner.remote.ssh.runner_from_ssh_config`), so it

* trusts only the keys the lab's known_hosts holds for the node and refuses any
  other (:class:`HostKeyError`) before authenticating, so nothing runs on an impostor;
* authenticates with the IdentityFile only (no agent, no other keys);
* gives every command a deadline (``read_timeout_sec`` in the host URL).

Host URLs: ``lab-paramiko://core-01?ssh_config=/lab/.lab/ssh_config&read_timeout_sec=60``.
The plugin :mod:`provisioner.checks.plugin` registers the name with testinfra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testinfra.backend import base

from provisioner.errors import RemoteError
from provisioner.remote.ssh import SSHRunner, runner_from_ssh_config

NAME = "lab-paramiko"
CLASS_PATH = "provisioner.checks.backend.LabParamikoBackend"
DEFAULT_COMMAND_TIMEOUT = 60.0


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
        self._ssh: SSHRunner | None = None

    def ssh(self) -> SSHRunner:
        """The node's SSH client, made on first use (a refusal is raised by each check)."""
        if self._ssh is None:
            self._ssh = runner_from_ssh_config(
                self.host.name,
                self.ssh_config,
                user=self.host.user,
                port=int(self.host.port) if self.host.port else None,
                command_timeout=self.command_timeout,
            )
        return self._ssh

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:  # noqa: ARG002
        cmd = self.encode(self.get_command(command, *args))
        rc, stdout, stderr = self.ssh().run_line(cmd)
        return self.result(rc, cmd, stdout, stderr)

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
