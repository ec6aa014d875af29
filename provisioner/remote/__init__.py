"""Running commands on hosts: one Runner protocol, local and SSH runners, fan-out."""

from provisioner.remote.fanout import Outcome, raise_for_failures, run_all
from provisioner.remote.hostkeys import (
    check_host_key,
    parse_host_key_fingerprints,
    sha256_fingerprint,
)
from provisioner.remote.local import LocalRunner
from provisioner.remote.runner import CommandResult, Runner, check_result, quote_argv
from provisioner.remote.ssh import PinnedHostKeyPolicy, SSHRunner, runner_from_ssh_config

__all__ = [
    "CommandResult",
    "LocalRunner",
    "Outcome",
    "PinnedHostKeyPolicy",
    "Runner",
    "SSHRunner",
    "check_host_key",
    "check_result",
    "parse_host_key_fingerprints",
    "quote_argv",
    "raise_for_failures",
    "run_all",
    "runner_from_ssh_config",
    "sha256_fingerprint",
]
