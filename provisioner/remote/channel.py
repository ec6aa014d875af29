"""Reading a paramiko session channel until its command exits, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import paramiko

_POLL_SECONDS = 0.02
_READ_CHUNK = 32768


def read_until_exit(
    channel: paramiko.Channel, deadline: float, on_timeout: Callable[[], Exception]
) -> tuple[int, bytes, bytes]:
    """Read stdout and stderr together until the command exits and its output ends.

    Returns (exit status, stdout, stderr). Like OpenSSH's ``ssh``, waits for the end
    of the output, also when a process the command left behind still holds it open.

    Raises ``on_timeout()`` if the command is still running at ``deadline``
    (a :func:`time.monotonic` value). The exit status is paramiko's: -1 when the
    channel closed without one.
    """
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    while True:
        got = False
        if channel.recv_ready():
            stdout.append(channel.recv(_READ_CHUNK))
            got = True
        if channel.recv_stderr_ready():
            stderr.append(channel.recv_stderr(_READ_CHUNK))
            got = True
        if got:
            continue
        # sshd sends the exit status as soon as the command exits, possibly before
        # the output still in its pipes: the output is complete only at EOF.
        if channel.closed or (channel.exit_status_ready() and channel.eof_received):
            break
        if time.monotonic() >= deadline:
            raise on_timeout()
        channel.status_event.wait(_POLL_SECONDS)
    # EOF follows all of the command's output on the wire, so whatever is
    # buffered now is the rest of it.
    while channel.recv_ready():
        stdout.append(channel.recv(_READ_CHUNK))
    while channel.recv_stderr_ready():
        stderr.append(channel.recv_stderr(_READ_CHUNK))
    return channel.recv_exit_status(), b"".join(stdout), b"".join(stderr)
