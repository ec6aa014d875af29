"""``lab ssh``: OpenSSH with the lab's ssh_config, and an agent holding the lab's key.

The remote command follows OpenSSH's rule: ``ssh host 'a | b'`` and ``ssh host a '|'
b`` both send the words joined with spaces, and the remote login shell runs that
line (a pipeline stays a pipeline). ``lab exec`` is the other rule: each argument
stays one argument (:func:`provisioner.remote.runner.quote_argv`).

The session forwards an agent (``ssh -A``) so that, on the node, fleetctl and ssh
reach the other nodes with the lab's key, as ``vagrant ssh core-01 -- -A`` did for
coreos-vagrant. The key never leaves the host: a new ``ssh-agent`` is started for
each ``lab ssh`` in its command mode (``ssh-agent sh -c SCRIPT KEY ssh ...``); the
script adds the lab's key, runs ssh, then kills the agent, which removes its
socket. If the script itself dies first, the agent notices that its parent is gone
within 10 seconds and exits (ssh-agent's own check in command mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# $0 is the key; "$@" is the ssh command (not run, status 255 as ssh's own failures,
# if the key cannot be added). INT and HUP are caught (not ignored, which ssh would
# inherit) so that the script outlives a Ctrl-C that ends ssh and still kills the agent.
AGENT_SCRIPT = (
    "trap : INT HUP; "
    'if ssh-add -q "$0"; then "$@"; status=$?; else status=255; fi; '
    'kill "$SSH_AGENT_PID" 2>/dev/null; '
    'exit "$status"'
)


def with_agent(key: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run by a new ssh-agent that holds ``key`` only and ends with it."""
    return ["ssh-agent", "sh", "-c", AGENT_SCRIPT, str(key), *argv]


def command_words(args: Sequence[str]) -> list[str]:
    """The command after a node name, without the one ``--`` that may separate them."""
    words = list(args)
    return words[1:] if words[:1] == ["--"] else words


def remote_command_line(words: Sequence[str]) -> str:
    """OpenSSH's remote command: the words joined with spaces, for the remote shell."""
    return " ".join(words)


def login_argv(ssh_config: Path, alias: str, command: Sequence[str], key: Path) -> list[str]:
    """``lab ssh``: ssh to ``alias`` with agent forwarding, under an agent holding ``key``;
    ``command`` (a shell if empty) is run by the remote shell as OpenSSH runs it."""
    argv = ["ssh", "-F", str(ssh_config), "-A", alias]
    words = command_words(command)
    if words:
        argv += ["--", remote_command_line(words)]
    return with_agent(key, argv)
