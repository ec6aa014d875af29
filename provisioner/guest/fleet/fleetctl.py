"""``fleetctl``: fleet's command-line client (installed as /usr/bin/fleetctl).

Flags follow fleetctl 1.0 (cobra): global flags anywhere, ``--flag=value`` or
``--flag value``, booleans as ``--flag`` or ``--flag=false``, unambiguous command
prefixes; every global flag not given falls back to ``FLEETCTL_<FLAG>``.

Longer than most modules on purpose: the flag grammar above, every command's
flags and help, and the dispatch, as fleet's fleetctl.go and its cobra setup,
in the one module each fleetctl run imports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from provisioner.guest.fleet import VERSION
from provisioner.guest.fleet.client import FleetClient, make_client
from provisioner.guest.fleet.commands import (
    Context,
    read_local_machine_id,
    run_cat,
    run_destroy,
    run_journal,
    run_list_machines,
    run_list_unit_files,
    run_list_units,
    run_load,
    run_restart,
    run_ssh,
    run_start,
    run_status,
    run_stop,
    run_submit,
    run_unload,
    run_verify,
    run_version,
)
from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.etcd import TlsFiles
from provisioner.guest.fleet.output import (
    LIST_MACHINES_DEFAULT,
    LIST_UNIT_FILES_DEFAULT,
    LIST_UNITS_DEFAULT,
    tabwrite,
)
from provisioner.guest.fleet.registry import DEFAULT_PREFIX
from provisioner.guest.fleet.remote import SshOptions, fd_forward, run_command

CLI_NAME = "fleetctl"
CLI_DESCRIPTION = (
    "fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init system."
)
DEFAULT_ENDPOINT = "unix:///var/run/fleet.sock"
LEGACY_ETCD_ENDPOINTS = "http://127.0.0.1:2379,http://127.0.0.1:4001"
SIGN_WARNING = "WARNING: The signed/verified units feature is DEPRECATED and cannot be used."

FlagKind = Literal["bool", "int", "float", "str"]


@dataclass(frozen=True)
class Flag:
    name: str
    kind: FlagKind
    default: Any
    usage: str
    short: str = ""
    hidden: bool = False


GLOBAL_FLAGS: tuple[Flag, ...] = (
    Flag("help", "bool", False, "Print usage information and exit", short="h"),
    Flag("debug", "bool", False, "Print out more debug information to stderr"),
    Flag("version", "bool", False, "Print the version and exit"),
    Flag("driver", "str", "API", "Adapter used to execute fleetctl commands. Options: API, etcd"),
    Flag(
        "endpoint",
        "str",
        DEFAULT_ENDPOINT,
        "Location of the fleet API if --driver=API. Alternatively, if --driver=etcd, "
        "location of the etcd API.",
    ),
    Flag(
        "etcd-key-prefix",
        "str",
        DEFAULT_PREFIX,
        "Keyspace for fleet data in etcd (development use only!)",
    ),
    Flag("key-file", "str", "", "Location of TLS key file used to secure communication"),
    Flag("cert-file", "str", "", "Location of TLS cert file used to secure communication"),
    Flag("ca-file", "str", "", "Location of TLS CA file used to secure communication"),
    Flag(
        "known-hosts-file",
        "str",
        "~/.fleetctl/known_hosts",
        "File used to store remote machine fingerprints. Ignored if strict host key "
        "checking is disabled.",
    ),
    Flag(
        "strict-host-key-checking",
        "bool",
        True,
        "Verify host keys presented by remote machines before initiating SSH connections.",
    ),
    Flag("ssh-timeout", "float", 10.0, "Amount of time in seconds to allow for SSH connection"),
    Flag(
        "tunnel",
        "str",
        "",
        "Establish an SSH tunnel through the provided address for communication with fleet "
        "and etcd.",
    ),
    Flag(
        "request-timeout",
        "float",
        3.0,
        "Amount of time in seconds to allow a single request before considering it failed.",
    ),
    Flag("ssh-username", "str", "core", "Username to use when connecting to CoreOS instance."),
    # Not fleet's: the ssh_config `--tunnel` is reached with (`lab ssh-config`), usually
    # given as FLEETCTL_SSH_CONFIG; hidden so that the help reads as fleet's.
    Flag(
        "ssh-config",
        "str",
        "",
        "ssh_config file for the --tunnel connection (ssh -F): its host, key and known hosts.",
        hidden=True,
    ),
    Flag("experimental-api", "bool", True, "DEPRECATED: do not use this flag.", hidden=True),
    Flag("etcd-keyfile", "str", "", "DEPRECATED: do not use this flag.", hidden=True),
    Flag("etcd-certfile", "str", "", "DEPRECATED: do not use this flag.", hidden=True),
    Flag("etcd-cafile", "str", "", "DEPRECATED: do not use this flag.", hidden=True),
)

_BLOCK = (
    Flag(
        "block-attempts",
        "int",
        0,
        "Wait until the units are in the desired state, performing up to N attempts "
        "before giving up. A value of 0 indicates no limit.",
    ),
    Flag("no-block", "bool", False, "Do not wait until the units have reached the desired state."),
)
_REPLACE = Flag("replace", "bool", False, "Replace the already started units in the cluster.")
_SIGN = Flag("sign", "bool", False, "DEPRECATED - this option cannot be used")
_NO_LEGEND = Flag("no-legend", "bool", False, "Do not print a legend (column headers)")
_SSH_PORT = Flag("ssh-port", "int", 22, "Connect to remote hosts over SSH using this TCP port.")

Runner = Callable[["Context", dict[str, Any], list[str]], int]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    usage: str
    description: str
    flags: tuple[Flag, ...]
    run: Runner | None
    interspersed: bool = True
    needs_client: bool = True


COMMANDS: tuple[Command, ...] = (
    Command("cat", "Output the contents of a submitted unit", "UNIT", "", (), run_cat),
    Command(
        "destroy",
        "Destroy one or more units in the cluster",
        "UNIT...",
        "Completely remove one or more running or submitted units from the cluster.\n\n"
        "Instructs systemd on the host machine to stop the unit, deferring to systemd\n"
        "completely for any custom stop directives (i.e. ExecStop option in the unit\n"
        "file).\n\nDestroyed units are impossible to start unless re-submitted.",
        _BLOCK,
        run_destroy,
    ),
    Command(
        "fd-forward",
        "Proxy stdin and stdout to a unix domain socket",
        "SOCKET",
        "fd-forward is used by fleetctl --tunnel to reach the fleet API socket over SSH.",
        (),
        None,
        needs_client=False,
    ),
    Command(
        "help",
        "Show a list of commands or help for one command",
        "[COMMAND]",
        "Show a list of commands or detailed help for one command",
        (),
        None,
        needs_client=False,
    ),
    Command(
        "journal",
        "Print the journal of a unit in the cluster to stdout",
        "[--lines=N] [--ssh-port=N] [-f|--follow] [--output=STRING] UNIT",
        "Outputs the journal of a unit by connecting to the machine that the unit occupies.",
        (
            Flag("lines", "int", 10, "Number of recent log lines to return"),
            Flag(
                "follow",
                "bool",
                False,
                "Continuously print new entries as they are appended to the journal.",
                short="f",
            ),
            _SSH_PORT,
            Flag("sudo", "bool", False, "Execute journal command with sudo"),
            Flag(
                "output",
                "str",
                "short",
                "Output mode. This will be passed unaltered to "
                "journalctl --output, e.g. short, json or cat",
            ),
        ),
        run_journal,
    ),
    Command(
        "list-machines",
        "Enumerate the current hosts in the cluster",
        "[-l|--full] [--no-legend]",
        "Lists all active machines within the cluster. Previously active machines will\n"
        "not appear in this list.",
        (
            Flag("full", "bool", False, "Do not ellipsize fields on output", short="l"),
            _NO_LEGEND,
            Flag(
                "fields",
                "str",
                LIST_MACHINES_DEFAULT,
                'Columns to print for each Machine. Valid fields are "ip,machine,metadata"',
            ),
        ),
        run_list_machines,
    ),
    Command(
        "list-unit-files",
        "List the units that exist in the cluster.",
        "[--fields]",
        "Lists all unit files that exist in the cluster (whether or not they are loaded "
        "onto a machine).",
        (
            Flag("full", "bool", False, "Do not ellipsize fields on output"),
            _NO_LEGEND,
            Flag(
                "fields",
                "str",
                LIST_UNIT_FILES_DEFAULT,
                "Columns to print for each Unit "
                'file. Valid fields are "desc,dstate,global,hash,state,target,tmachine,unit"',
            ),
        ),
        run_list_unit_files,
    ),
    Command(
        "list-units",
        "List the current state of units in the cluster",
        "[--no-legend] [-l|--full] [--fields]",
        "Lists the state of all units in the cluster loaded onto a machine.",
        (
            Flag("full", "bool", False, "Do not ellipsize fields on output", short="l"),
            _NO_LEGEND,
            Flag(
                "fields",
                "str",
                LIST_UNITS_DEFAULT,
                "Columns to print for each Unit. Valid "
                'fields are "active,hash,load,machine,sub,unit"',
            ),
        ),
        run_list_units,
    ),
    Command(
        "load",
        "Schedule one or more units in the cluster, first submitting them if necessary.",
        "[--no-block|--block-attempts=N] UNIT...",
        "Load one or many units in the cluster into systemd, but do not start.",
        (*_BLOCK, _REPLACE, _SIGN),
        run_load,
    ),
    Command(
        "restart",
        "Instruct systemd to rolling restart one or more units in the cluster.",
        "[--block-attempts=N] UNIT...",
        "Restart one or more units: stop them, wait, and start them again.",
        (_BLOCK[0],),
        run_restart,
    ),
    Command(
        "ssh",
        "Open interactive shell on a machine in the cluster",
        "[-A|--forward-agent] [--ssh-port=N] [--machine|--unit] {MACHINE|UNIT} [COMMAND...]",
        "Open an interactive shell on a specific machine in the cluster or on the machine\n"
        "where the specified unit is located; or run a command there.",
        (
            Flag(
                "forward-agent",
                "bool",
                False,
                "Forward local ssh-agent to target machine.",
                short="A",
            ),
            _SSH_PORT,
            Flag("machine", "str", "", "Open SSH connection to a specific machine.", short="m"),
            Flag(
                "unit",
                "str",
                "",
                "Open SSH connection to machine running provided unit.",
                short="u",
            ),
        ),
        run_ssh,
        interspersed=False,
    ),
    Command(
        "start",
        "Instruct systemd to start one or more units in the cluster, first submitting and "
        "loading if necessary.",
        "[--no-block|--block-attempts=N] UNIT...",
        "Start one or many units on the cluster. Select units to start by glob matching\n"
        "for units in the current working directory or matching names of previously\n"
        "submitted units.",
        (*_BLOCK, _REPLACE, _SIGN),
        run_start,
    ),
    Command(
        "status",
        "Output the status of one or more units in the cluster",
        "[--ssh-port=N] UNIT...",
        "Output the status of one or more units currently running in the cluster.\n"
        "Supports glob matching of units in the current working directory or matches\n"
        "previously started units.",
        (_SSH_PORT,),
        run_status,
    ),
    Command(
        "stop",
        "Instruct systemd to stop one or more units in the cluster.",
        "[--no-block|--block-attempts=N] UNIT...",
        "Stop one or more units from running in the cluster, but allow them to be\n"
        "started again in the future.",
        _BLOCK,
        run_stop,
    ),
    Command(
        "submit",
        "Upload one or more units to the cluster without starting them",
        "UNIT...",
        "Upload one or more units to the cluster without starting them. Useful\n"
        "for validating units before they are started.",
        (_REPLACE, _SIGN),
        run_submit,
    ),
    Command(
        "unload",
        "Unschedule one or more units in the cluster.",
        "[--no-block|--block-attempts=N] UNIT...",
        "Unload one or more units from the cluster: stop them and remove them from systemd.",
        _BLOCK,
        run_unload,
    ),
    Command(
        "verify",
        "DEPRECATED - No longer works",
        "UNIT",
        "DEPRECATED - No longer works",
        (),
        run_verify,
        needs_client=False,
    ),
    Command(
        "version",
        "Print the version and exit",
        "",
        "Print the version and exit",
        (),
        run_version,
        needs_client=False,
    ),
)

COMMANDS_BY_NAME = {command.name: command for command in COMMANDS}


class UsageError(Exception):
    """Bad command line; the message is printed after ``Error: ``.

    ``command`` is the command whose flags did not parse (None when the command
    itself is unknown, cobra's ``Find`` error).
    """

    def __init__(self, message: str, command: Command | None = None) -> None:
        super().__init__(message)
        self.command = command


@dataclass
class ParsedArgs:
    command: Command
    global_values: dict[str, Any]
    global_set: set[str]
    options: dict[str, Any]
    args: list[str]


_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def _convert(flag: Flag, value: str) -> Any:
    """A flag value as Go's flag package parses it; UsageError if it does not parse."""
    problem = UsageError(f'invalid argument "{value}" for "--{flag.name}" flag')
    if flag.kind == "bool":
        if value.lower() not in _BOOLS:
            raise problem
        return _BOOLS[value.lower()]
    try:
        if flag.kind == "int":
            return int(value, 0) if value.lower().startswith(("0x", "0o", "0b")) else int(value)
        if flag.kind == "float":
            return float(value)
    except ValueError:
        raise problem from None
    return value


def find_command(name: str) -> Command:
    """Exact name or unambiguous prefix (cobra's EnablePrefixMatching)."""
    if name in COMMANDS_BY_NAME:
        return COMMANDS_BY_NAME[name]
    matches = [command for command in COMMANDS if command.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    suggestions = suggestions_for(name)
    hint = "".join(f"\t{s}\n" for s in suggestions)
    hint = f"\n\nDid you mean this?\n{hint}" if hint else ""
    raise UsageError(f'unknown command "{name}" for "{CLI_NAME}"{hint}')


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (cobra's ld, case-insensitive as it compares)."""
    a, b = a.lower(), b.lower()
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[len(b)]


def suggestions_for(typed: str) -> list[str]:
    """cobra's SuggestionsFor: commands within distance 2 of ``typed`` or starting with it."""
    return [
        c.name
        for c in COMMANDS
        if _distance(typed, c.name) <= 2 or c.name.startswith(typed.lower())
    ]


def _lookup(token: str, flags: tuple[Flag, ...]) -> Flag | None:
    if token.startswith("--"):
        return next((f for f in flags if f.name == token[2:]), None)
    return next((f for f in flags if f.short and f.short == token[1:]), None)


def _parse_flag(word: str, rest: list[str], command: Command | None) -> tuple[Flag, bool, Any, int]:
    """(flag, is a command flag, value, extra words consumed) for one ``-x``/``--x``."""
    name, eq, inline = word.partition("=")
    flag = _lookup(name, command.flags) if command is not None else None
    is_command_flag = flag is not None
    if flag is None:
        flag = _lookup(name, GLOBAL_FLAGS)
    if flag is None:
        if name.startswith("--"):
            raise UsageError(f"unknown flag: {name}")
        raise UsageError(f"unknown shorthand flag: '{name[1:2]}' in {word}")
    if eq:
        return flag, is_command_flag, _convert(flag, inline), 0
    if flag.kind == "bool":
        return flag, is_command_flag, True, 0
    if not rest:
        raise UsageError(f"flag needs an argument: {name}")
    return flag, is_command_flag, _convert(flag, rest[0]), 1


def parse_args(argv: list[str]) -> ParsedArgs:
    """Split argv into global flags, the command, its flags and its arguments."""
    parsed = ParsedArgs(
        COMMANDS_BY_NAME["help"], {f.name: f.default for f in GLOBAL_FLAGS}, set(), {}, []
    )
    command: Command | None = None
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            parsed.args.extend(argv[index:])
            break
        stop_flags = command is not None and not command.interspersed and bool(parsed.args)
        if word.startswith("-") and word != "-" and not stop_flags:
            try:
                flag, is_command_flag, value, used = _parse_flag(word, argv[index:], command)
            except UsageError as exc:
                exc.command = command or COMMANDS_BY_NAME["help"]
                raise
            index += used
            if is_command_flag:
                parsed.options[flag.name] = value
            else:
                parsed.global_values[flag.name] = value
                parsed.global_set.add(flag.name)
        elif command is None:
            command = find_command(word)
        else:
            parsed.args.append(word)
    if command is not None:
        parsed.command = command
    for flag in parsed.command.flags:
        parsed.options.setdefault(flag.name, flag.default)
    return parsed


def apply_environment(parsed: ParsedArgs, environ: Mapping[str, str]) -> None:
    """Global flags not on the command line come from FLEETCTL_<FLAG> if set."""
    for flag in GLOBAL_FLAGS:
        if flag.name in parsed.global_set:
            continue
        value = environ.get(f"FLEETCTL_{flag.name.upper().replace('-', '_')}", "")
        if value:
            try:
                parsed.global_values[flag.name] = _convert(flag, value)
            except UsageError:
                continue
            parsed.global_set.add(flag.name)


# -- help --------------------------------------------------------------------------------
def _flag_lines(flags: tuple[Flag, ...]) -> list[list[str]]:
    rows: list[list[str]] = []
    for flag in sorted(flags, key=lambda f: f.name):
        if flag.hidden:
            continue
        default = f'"{flag.default}"' if flag.kind == "str" else str(flag.default).lower()
        names = f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"
        rows.append(["", f"{names}={default}", flag.usage])
    return rows


def global_help() -> str:
    lines = [
        "NAME:",
        f"\t{CLI_NAME} - {CLI_DESCRIPTION}",
        "",
        "USAGE:",
        f"\t{CLI_NAME} [global options] <command> [command options] [arguments...]",
        "",
        "VERSION:",
        f"\t{VERSION}",
        "",
        "COMMANDS:",
    ]
    table = tabwrite([["", command.name, command.summary] for command in COMMANDS])
    options = tabwrite(_flag_lines(GLOBAL_FLAGS))
    return (
        "\n".join(lines)
        + "\n"
        + table
        + "\nGLOBAL OPTIONS:\n"
        + options
        + "\nGlobal options can also be configured via upper-case environment variables "
        'prefixed by "FLEETCTL_"\nFor example, "some-flag" => "FLEETCTL_SOME_FLAG"\n\n'
        f'Run "{CLI_NAME} help <command>" for more details on a specific command.\n'
    )


def command_help(command: Command) -> str:
    text = (
        f"NAME:\n\t{CLI_NAME} {command.name} - {command.summary}\n\n"
        f"USAGE:\n\t{CLI_NAME} {command.name} {command.usage}".rstrip()
        + "\n"
    )
    if command.description:
        text += "\nDESCRIPTION:\n" + "".join(
            f"\t{line}\n" for line in command.description.splitlines()
        )
    if command.flags:
        text += "\nOPTIONS:\n" + tabwrite(_flag_lines(command.flags))
    return text + "\nGLOBAL OPTIONS:\n" + tabwrite(_flag_lines(GLOBAL_FLAGS))


# -- main --------------------------------------------------------------------------------
def build_client(values: Mapping[str, Any], warn: Callable[[str], None]) -> FleetClient:
    driver = str(values["driver"])
    endpoint = str(values["endpoint"])
    if not values["experimental-api"] and endpoint == DEFAULT_ENDPOINT:
        driver, endpoint = "etcd", LEGACY_ETCD_ENDPOINTS
    tls = TlsFiles(
        cafile=str(values["ca-file"] or values["etcd-cafile"]),
        certfile=str(values["cert-file"] or values["etcd-certfile"]),
        keyfile=str(values["key-file"] or values["etcd-keyfile"]),
    )
    if values["tunnel"] and driver == "etcd":
        raise FleetError("--tunnel is only supported with --driver=API")
    client = make_client(
        driver=driver,
        endpoint=endpoint,
        key_prefix=str(values["etcd-key-prefix"]),
        request_timeout=float(values["request-timeout"]),
        tls=tls,
        warn=warn,
    )
    if values["tunnel"]:
        from provisioner.guest.fleet.tunnel import tunnelled

        client = tunnelled(client, ssh_options(values))
    return client


def ssh_options(values: Mapping[str, Any]) -> SshOptions:
    return SshOptions(
        username=str(values["ssh-username"]),
        tunnel=str(values["tunnel"]),
        strict_host_key_checking=bool(values["strict-host-key-checking"]),
        known_hosts_file=str(values["known-hosts-file"]),
        timeout=float(values["ssh-timeout"]),
        ssh_config=str(values.get("ssh-config") or ""),
    )


def _stdin_isatty() -> bool:
    return sys.stdin.isatty()


def run(
    argv: list[str],
    *,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    client_factory: Callable[[Mapping[str, Any]], FleetClient] | None = None,
    runner: Callable[[list[str]], int] = run_command,
    machine_id_path: str = "/etc/machine-id",
    stdin_is_terminal: Callable[[], bool] = _stdin_isatty,
) -> int:
    """fleetctl with explicit environment and streams; returns the exit status."""
    if argv[:1] in (["-v"], ["--version"]):
        argv = ["version", *argv[1:]]
    try:
        parsed = parse_args(argv)
    except UsageError as exc:
        return usage_error(exc, out, err)
    apply_environment(parsed, environ)
    if parsed.global_values["version"]:
        parsed.command = COMMANDS_BY_NAME["version"]
    early = _run_without_client(parsed, out, err)
    if early is not None:
        return early
    return _run_with_client(
        parsed, out, err, client_factory, runner, machine_id_path, stdin_is_terminal
    )


def usage_error(exc: UsageError, out: TextIO, err: TextIO) -> int:
    """A bad command line as fleet 1.0 reports it: cobra's error, then fleetctl's, exit 0.

    fleetctl.go's main prints ``cannot execute cmdFleet: …`` and exits with
    ``cmdExitCode``, which no command has set yet: 0. An unknown command gets
    cobra's ``Run 'fleetctl --help' for usage.``; a flag that does not parse gets
    the command's usage on stdout (fleetctl's usageFunc writes there).
    """
    err.write(f"Error: {exc}\n")
    if exc.command is None:
        err.write(f"Run '{CLI_NAME} --help' for usage.\n")
    else:
        out.write(command_help(exc.command) if exc.command.name != "help" else global_help())
    err.write(f"cannot execute cmdFleet: {exc}\n")
    return 0


def _run_without_client(parsed: ParsedArgs, out: TextIO, err: TextIO) -> int | None:
    """Help, --sign, fd-forward: the exit status, or None if the command needs a client."""
    command = parsed.command
    if parsed.global_values["help"] and command.name != "help":
        out.write(command_help(command))
        return 0
    if parsed.options.get("sign"):
        err.write(SIGN_WARNING + "\n")
        return 2
    if command.name == "help":
        return _help(parsed.args, out, err)
    if command.name == "fd-forward":
        return _fd_forward(parsed.args, err)
    return None


def _run_with_client(
    parsed: ParsedArgs,
    out: TextIO,
    err: TextIO,
    client_factory: Callable[[Mapping[str, Any]], FleetClient] | None,
    runner: Callable[[list[str]], int],
    machine_id_path: str,
    stdin_is_terminal: Callable[[], bool],
) -> int:
    command = parsed.command
    values = parsed.global_values

    def warn(message: str) -> None:
        err.write(message + "\n")

    client: Any = None
    if command.needs_client:
        try:
            client = (
                client_factory(values) if client_factory is not None else build_client(values, warn)
            )
        except FleetError as exc:
            err.write(f"Unable to initialize client: {exc.message}\n")
            return 1
    ctx = Context(
        client=client,
        out=out,
        err=err,
        ssh=ssh_options(values),
        run=runner,
        local_machine_id=lambda: read_local_machine_id(machine_id_path),
        stdin_is_terminal=stdin_is_terminal,
    )
    assert command.run is not None
    try:
        return command.run(ctx, parsed.options, parsed.args)
    except FleetError as exc:
        err.write(f"Error: {exc.message}\n")
        return 1
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()  # the --tunnel connection: one ssh for the whole command


def _help(args: list[str], out: TextIO, err: TextIO) -> int:
    if not args:
        out.write(global_help())
        return 0
    try:
        out.write(command_help(find_command(args[0])))
    except UsageError:
        # cobra's help command: "Unknown help topic" and the root usage, exit 0
        err.write("Unknown help topic [" + " ".join(f"`{a}`" for a in args) + "].")
        out.write(global_help())
    return 0


def _fd_forward(args: list[str], err: TextIO) -> int:
    if len(args) != 1:
        err.write("Provide a single argument: location of UNIX domain socket.\n")
        return 1
    try:
        return fd_forward(args[0], sys.stdin.buffer, sys.stdout.buffer)
    except OSError as exc:
        err.write(f"Unable to connect to {args[0]}: {exc.strerror}\n")
        return 1


def main(argv: list[str] | None = None) -> int:
    return run(
        sys.argv[1:] if argv is None else argv,
        environ=os.environ,
        out=sys.stdout,
        err=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
