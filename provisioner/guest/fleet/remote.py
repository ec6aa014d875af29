"""Running things on other machines for fleetctl: ssh argument lists and fd-forward.

fleetctl's ``status``/``journal``/``ssh`` run their command on the unit's machine:
directly when that is this machine, else through the system OpenSSH ``ssh`` client
to the machine's public IP. fleet's own SSH client (coreos/fleet ssh/ssh.go,
ssh/known_hosts.go) is mapped onto OpenSSH options by :func:`ssh_argv`:

* the remote command is one command line that the remote shell runs. ``fleetctl
  ssh`` joins its arguments with spaces (fleetctl/ssh.go ``runSSH``:
  ``strings.Join(args, " ")``), so ``fleetctl ssh M "echo a; echo b"`` runs a shell
  line; ``status``/``journal`` quote each word (fleetctl/ssh.go ``runRemoteCommand``
  quotes with Go's ``%q``; here ``shlex.quote``, so a unit name never becomes shell
  syntax);
* a terminal is requested exactly when fleetctl's stdin is one (ssh/ssh.go
  ``makeSession``): ``-t``, else ``-T``;
* ``--strict-host-key-checking`` (fleetctl/fleetctl.go ``getChecker``): when true,
  a key is accepted if the ``--known-hosts-file`` (or, as OpenSSH does, the
  system-wide ``/etc/ssh/ssh_known_hosts``) lists it for the address; a changed
  key is refused with the "REMOTE HOST IDENTIFICATION HAS CHANGED" warning; an
  unknown key is asked about (``StrictHostKeyChecking=ask``) and, once accepted,
  appended to ``--known-hosts-file`` in fleet's plain ``host key`` form
  (``HashKnownHosts=no``; fleet cannot read hashed names). Without a terminal
  there is no one to ask and the key is refused with ``Host key verification
  failed.`` (fleet reads the answer from stdin, which then holds no "yes").
  When false no key is checked and none is recorded (fleet passes no checker);
* fleet authenticates with the keys of the ssh-agent at ``SSH_AUTH_SOCK`` only
  (ssh/ssh.go ``sshClientConfig``): public keys only, never a password prompt.
"""

from __future__ import annotations

import math
import os
import selectors
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class SshOptions:
    """fleetctl's SSH-related global and command flags."""

    username: str = "core"
    port: int = 22
    forward_agent: bool = False
    tunnel: str = ""
    strict_host_key_checking: bool = True
    known_hosts_file: str = "~/.fleetctl/known_hosts"
    timeout: float = 10.0
    ssh_config: str = ""  # for the --tunnel connection only (FLEETCTL_SSH_CONFIG)


def tunnel_address(tunnel: str) -> str:
    """``host`` -> ``host:22`` (fleetctl appends the default port)."""
    if tunnel and ":" not in tunnel:
        return tunnel + ":22"
    return tunnel


def remote_command_line(argv: list[str]) -> str:
    """``status``/``journal``'s command on another machine: each word quoted."""
    return shlex.join(argv)


def ssh_command_line(args: list[str]) -> str:
    """``fleetctl ssh``'s command: the words after the first ``--`` if any
    (pkg/args.go ``TrimToDashes``), joined with spaces for the remote shell."""
    if "--" in args:
        args = args[args.index("--") + 1 :]
    return " ".join(args)


def host_key_options(options: SshOptions) -> list[str]:
    """OpenSSH options for fleet's host key checking (see the module docstring)."""
    if not options.strict_host_key_checking:
        return [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ]
    known = Path(options.known_hosts_file).expanduser()
    return [
        "-o",
        "StrictHostKeyChecking=ask",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "HashKnownHosts=no",
    ]


def ssh_argv(host: str, command: str, options: SshOptions, *, tty: bool) -> list[str]:
    """The ``ssh`` argument list that runs the command line ``command`` (a shell
    if empty) on ``host``, with a terminal if ``tty``."""
    argv = ["ssh", "-l", options.username, "-p", str(options.port)]
    argv += ["-o", f"ConnectTimeout={max(1, math.ceil(options.timeout))}"]
    argv += host_key_options(options)
    argv += ["-o", "PreferredAuthentications=publickey"]
    if options.forward_agent:
        argv.append("-A")
    if options.tunnel:
        argv += ["-J", tunnel_address(options.tunnel)]
    argv.append("-t" if tty else "-T")
    argv.append(host)
    if command:
        argv += ["--", command]
    return argv


def ensure_known_hosts_dir(options: SshOptions) -> None:
    """ssh writes accepted host keys but does not create the directory."""
    if options.strict_host_key_checking:
        directory = Path(options.known_hosts_file).expanduser().parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def run_command(argv: list[str]) -> int:
    """Run ``argv`` attached to this terminal; its exit status (127 if not found)."""
    try:
        return subprocess.call(argv)
    except OSError as exc:
        print(f"Error running {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127


def fd_forward(path: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Proxy stdin/stdout to the unix socket ``path`` until both sides close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        selector = selectors.DefaultSelector()
        in_fd = stdin.fileno()
        selector.register(in_fd, selectors.EVENT_READ, "stdin")
        selector.register(sock, selectors.EVENT_READ, "socket")
        open_inputs = 2
        while open_inputs:
            for key, _ in selector.select():
                if key.data == "stdin":
                    data = os.read(in_fd, 65536)
                    if not data:
                        selector.unregister(in_fd)
                        sock.shutdown(socket.SHUT_WR)
                        open_inputs -= 1
                    else:
                        sock.sendall(data)
                else:
                    data = sock.recv(65536)
                    if not data:
                        selector.unregister(sock)
                        open_inputs -= 1
                        if open_inputs:
                            # The server finished answering; stop waiting for stdin.
                            return 0
                    else:
                        stdout.write(data)
                        stdout.flush()
    return 0
