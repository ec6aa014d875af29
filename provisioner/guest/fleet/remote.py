"""Running things on other machines for fleetctl: ssh argument lists and fd-forward.

fleetctl's ``status``/``journal``/``ssh`` run their command on the unit's machine:
directly when that is this machine, else through the system ``ssh`` client to
the machine's public IP. Arguments are always lists; the remote command line is
built with ``shlex.quote`` so unit names can never become shell syntax.
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


def tunnel_address(tunnel: str) -> str:
    """``host`` -> ``host:22`` (fleetctl appends the default port)."""
    if tunnel and ":" not in tunnel:
        return tunnel + ":22"
    return tunnel


def ssh_argv(
    host: str,
    command: list[str] | None,
    options: SshOptions,
    *,
    tty: bool = False,
) -> list[str]:
    """The ``ssh`` argument list that runs ``command`` (or a shell) on ``host``."""
    argv = ["ssh", "-l", options.username, "-p", str(options.port)]
    argv += ["-o", f"ConnectTimeout={max(1, math.ceil(options.timeout))}"]
    if options.strict_host_key_checking:
        known = Path(options.known_hosts_file).expanduser()
        argv += ["-o", f"UserKnownHostsFile={known}"]
    else:
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if options.forward_agent:
        argv.append("-A")
    if options.tunnel:
        argv += ["-J", tunnel_address(options.tunnel)]
    if tty:
        argv.append("-t")
    argv.append(host)
    if command:
        argv += ["--", shlex.join(command)]
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
