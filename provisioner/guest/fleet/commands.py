"""fleetctl's commands: behaviour, messages and exit codes of fleet 1.0's fleetctl.

Each ``run_*`` takes the command context, the parsed command flags and the
positional arguments and returns the exit status. Output goes to the context's
streams, so the commands are tested without a terminal.

Longer than most modules on purpose: fleet's fleetctl has some twenty commands
(one Go file each in fleet's fleetctl/ package); they share the context and the
unit-state helpers here, and guest code keeps its module count, and so the
emulated guest's imports, small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from provisioner.guest.fleet import VERSION
from provisioner.guest.fleet.client import FleetClient
from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.model import INACTIVE, LAUNCHED, LOADED, MachineState
from provisioner.guest.fleet.output import (
    LIST_MACHINES_FIELDS,
    LIST_UNIT_FILES_FIELDS,
    LIST_UNITS_FIELDS,
    FieldError,
    list_machines_table,
    list_unit_files_table,
    list_units_table,
    machine_full_legend,
    parse_fields,
)
from provisioner.guest.fleet.registry import UnitView
from provisioner.guest.fleet.remote import (
    SshOptions,
    ensure_known_hosts_dir,
    remote_command_line,
    run_command,
    ssh_argv,
    ssh_command_line,
)
from provisioner.guest.fleet.requirements import unrecognized_keys, validate_options
from provisioner.guest.fleet.unitfile import (
    UnitFile,
    mangle_unit_name,
    parse_unit_file,
    unit_name_info,
    validate_name,
)

WAIT_INTERVAL = 0.5
SYSTEMD_CHECK_INTERVAL = 0.25
SYSTEMD_CHECK_TIMEOUT = 2.0

#: Desired states from which ``--replace`` may replace a unit, per command.
REPLACE_ALLOWED = {
    "submit": {INACTIVE},
    "load": {INACTIVE, LOADED},
    "start": {INACTIVE, LOADED, LAUNCHED},
}


def go_list(names: list[str]) -> str:
    """Go's ``%v`` of a []string."""
    return "[" + " ".join(names) + "]"


@dataclass
class Context:
    """Everything a command needs: client, streams, ssh settings, how to run things."""

    client: FleetClient
    out: TextIO
    err: TextIO
    ssh: SshOptions = field(default_factory=SshOptions)
    run: Callable[[list[str]], int] = run_command
    sleep: Callable[[float], None] = time.sleep
    local_machine_id: Callable[[], str] = field(default=lambda: "")
    # fleet's ssh sessions get a terminal when fleetctl's stdin is one (ssh/ssh.go makeSession)
    stdin_is_terminal: Callable[[], bool] = field(default=lambda: False)
    _machines: dict[str, MachineState] | None = None

    def stdout(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def stderr(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def machines(self) -> dict[str, MachineState]:
        """Machine states, fetched once per invocation (fleet's cachedMachineState)."""
        if self._machines is None:
            self._machines = {m.id: m for m in self.client.machines()}
        return self._machines

    def legend(self, machine_id: str) -> str | None:
        try:
            machine = self.machines().get(machine_id)
        except FleetError:
            return None
        return machine_full_legend(machine, False) if machine is not None else None


def read_local_machine_id(path: str = "/etc/machine-id") -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


# -- unit creation --------------------------------------------------------------------------
def unit_from_file(path: str) -> UnitFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"unable to read {path}: {exc.strerror}") from None
    return parse_unit_file(text, source=path)


def create_unit(ctx: Context, name: str, unit: UnitFile) -> None:
    """fleetctl's createUnit: warn on unknown [X-Fleet] keys, validate, create."""
    unknown = unrecognized_keys(unit)
    if unknown:
        ctx.stderr(f'Unit {name}: unrecognized requirement in [X-Fleet] section: "{unknown[0]}"')
    validate_options(unit)
    try:
        validate_name(name)
        ctx.client.create_unit(name, unit)
    except FleetError as exc:
        raise FleetError(f"failed creating unit {name}: {exc.message}") from None


def warn_on_different_local_unit(ctx: Context, arg: str, unit: UnitView) -> None:
    if Path(arg).exists():
        try:
            local = unit_from_file(arg)
        except FleetError:
            local = None
        if local is not None and local.hash != unit.unit.hash:
            ctx.stderr(
                f"WARNING: Unit {unit.name} in registry differs from local unit file {arg}. "
                "Add --replace to override."
            )
            return
    info = unit_name_info(Path(arg).name)
    if info is not None and info.is_instance:
        template = Path(arg).parent / info.template
        if template.exists():
            try:
                local = unit_from_file(str(template))
            except FleetError:
                return
            if local.hash != unit.unit.hash:
                ctx.stderr(
                    f"WARNING: Unit {unit.name} in registry differs from local template unit "
                    f"file {info.template}. Add --replace to override."
                )


def _replace_unit(ctx: Context, arg: str, existing: UnitView, command: str) -> None:
    local = unit_from_file(arg)
    if local.hash == existing.unit.hash:
        ctx.stdout(f"Found same Unit({existing.name}) in Registry, nothing to do")
        return
    if existing.desired_state not in REPLACE_ALLOWED[command]:
        ctx.stderr(
            f"Warning: can not replace Unit({existing.name}) in state "
            f"'{existing.desired_state}', use the appropriate command"
        )
        return
    validate_options(local)
    ctx.client.replace_unit(existing.name, local, existing.desired_state)


def lazy_create_units(ctx: Context, args: list[str], *, replace: bool, command: str) -> None:
    """Make sure a unit exists for every argument (registry, file, template)."""
    for arg in args:
        name = mangle_unit_name(arg)
        existing = ctx.client.unit(name)
        if existing is not None:
            if replace and Path(arg).is_file():
                _replace_unit(ctx, arg, existing, command)
            else:
                warn_on_different_local_unit(ctx, arg, existing)
            continue
        if Path(arg).exists():
            create_unit(ctx, name, unit_from_file(arg))
            continue
        info = unit_name_info(name)
        if info is None:
            raise FleetError(f"error extracting information from unit name {name}")
        if not info.is_instance:
            raise FleetError(f"unable to find Unit({name}) in Registry or on filesystem")
        template = ctx.client.unit(info.template)
        if template is None:
            path = str(Path(arg).parent / info.template)
            if not Path(path).exists():
                raise FleetError(
                    f"unable to find Unit({name}) or template Unit({info.template}) "
                    "in Registry or on filesystem"
                )
            unit = unit_from_file(path)
        else:
            warn_on_different_local_unit(ctx, arg, template)
            unit = template.unit
        create_unit(ctx, name, unit)


def set_target_state_of_units(ctx: Context, names: list[str], state: str) -> list[UnitView]:
    """Set desired states; the units whose desired state actually changed."""
    triggered: list[UnitView] = []
    for name in names:
        unit = ctx.client.unit(name)
        if unit is None:
            raise FleetError(f"unable to find unit {name}")
        if unit.desired_state == state:
            continue
        ctx.client.set_unit_target_state(name, state)
        triggered.append(unit)
    return triggered


def find_units(ctx: Context, args: list[str]) -> list[UnitView]:
    """Registry units named by ``args`` (mangled), in argument order."""
    by_name = {unit.name: unit for unit in ctx.client.units()}
    found: list[UnitView] = []
    for arg in args:
        unit = by_name.get(mangle_unit_name(arg))
        if unit is not None and unit not in found:
            found.append(unit)
    return found


# -- waiting ----------------------------------------------------------------------------------
def wait_for_unit_states(ctx: Context, names: list[str], state: str, attempts: int) -> list[str]:
    """Poll until each unit reports ``state`` (forever if ``attempts`` < 1); errors."""
    pending = list(names)
    tries = 0
    while pending:
        try:
            current = {unit.name: unit for unit in ctx.client.units()}
        except FleetError as exc:
            ctx.stderr(f"Error retrieving units from Registry: {exc.message}")
            current = {}
        for name in list(pending):
            unit = current.get(name)
            if unit is None or unit.current_state != state:
                continue
            message = f"Unit {name} {unit.current_state}"
            legend = ctx.legend(unit.machine_id) if unit.machine_id else None
            if legend:
                message += f" on {legend}"
            ctx.stdout(message)
            pending.remove(name)
        if not pending:
            break
        tries += 1
        if attempts > 0 and tries >= attempts:
            return [
                f"timed out waiting for unit {name} to report state {state}" for name in pending
            ]
        ctx.sleep(WAIT_INTERVAL)
    return []


def try_wait_for_unit_states(
    ctx: Context, names: list[str], verb: str, state: str, attempts: int
) -> tuple[int, str]:
    """Wait (or just report triggering with --no-block); (exit status, error)."""
    if attempts < 0:
        for name in names:
            ctx.stdout(f"Triggered unit {name} {verb}")
        return 0, ""
    errors = wait_for_unit_states(ctx, names, state, attempts)
    if errors:
        ctx.stderr(f"Error waiting for unit states, exit status: {errors[0]}")
        return 1, errors[0]
    return 0, ""


def _systemd_active(ctx: Context, name: str) -> bool:
    deadline = time.monotonic() + SYSTEMD_CHECK_TIMEOUT
    while True:
        try:
            states = ctx.client.unit_states()
        except FleetError:
            states = []
        for state in states:
            if (state.name, state.active_state, state.load_state) == (name, "active", "loaded"):
                return True
        if time.monotonic() + SYSTEMD_CHECK_INTERVAL > deadline:
            return False
        ctx.sleep(SYSTEMD_CHECK_INTERVAL)


def wait_for_systemd_active(ctx: Context, names: list[str], attempts: int) -> list[str]:
    """Each unit ActiveState=active and LoadState=loaded somewhere; errors."""
    if attempts < 0:
        return []
    errors: list[str] = []
    for name in names:
        tries = 0
        while not _systemd_active(ctx, name):
            tries += 1
            if attempts > 0 and tries >= attempts:
                errors.append(f"timed out waiting for unit {name} to become active in systemd")
                break
    return errors


def block_attempts(opts: dict[str, Any]) -> int:
    """--no-block means -1 (do not wait), else --block-attempts (0 = no limit)."""
    if opts.get("no-block"):
        return -1
    return int(opts.get("block-attempts", 0))


# -- unit lifecycle commands --------------------------------------------------------------
def run_submit(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    if not args:
        ctx.stderr("No units given")
        return 0
    try:
        lazy_create_units(ctx, args, replace=bool(opts.get("replace")), command="submit")
    except FleetError as exc:
        ctx.stderr(f"Error creating units: {exc.message}")
        return 1
    return 0


def _load_or_start(ctx: Context, opts: dict[str, Any], args: list[str], command: str) -> int:
    state, verb, noun = (
        (LAUNCHED, "start", "starting") if command == "start" else (LOADED, "load", "loading")
    )
    if not args:
        ctx.stderr("No units given")
        return 0
    try:
        lazy_create_units(ctx, args, replace=bool(opts.get("replace")), command=command)
    except FleetError as exc:
        ctx.stderr(f"Error creating units: {exc.message}")
        return 1
    names = [mangle_unit_name(arg) for arg in args]
    try:
        triggered = set_target_state_of_units(ctx, names, state)
    except FleetError as exc:
        ctx.stderr(f"Error {noun} units: {exc.message}")
        return 1
    waiting: list[str] = []
    for unit in triggered:
        if unit.is_global:
            ctx.stdout(f"Triggered global unit {unit.name} {verb}")
        else:
            waiting.append(unit.name)
    attempts = block_attempts(opts)
    exit_code, _ = try_wait_for_unit_states(ctx, waiting, verb, state, attempts)
    if exit_code != 0:
        return 1
    if command == "start":
        errors = wait_for_systemd_active(ctx, waiting, attempts)
        if errors:
            ctx.stderr(f"Error waiting for systemd unit states, err: {errors[0]}")
            return 1
    return 0


def run_load(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    return _load_or_start(ctx, opts, args, "load")


def run_start(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    return _load_or_start(ctx, opts, args, "start")


def run_stop(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    try:
        units = find_units(ctx, args)
    except FleetError as exc:
        ctx.stderr(exc.message)
        return 1
    if not units:
        ctx.stderr("Units not found in registry")
        return 0
    stopping: list[str] = []
    for unit in units:
        if not unit.is_global:
            if unit.current_state == INACTIVE:
                ctx.stderr(f"Unable to stop unit {unit.name} in state {INACTIVE}")
                return 1
            if unit.current_state == LOADED:
                continue
        ctx.client.set_unit_target_state(unit.name, LOADED)
        if unit.is_global:
            ctx.stdout(f"Triggered global unit {unit.name} stop")
        else:
            stopping.append(unit.name)
    exit_code, error = try_wait_for_unit_states(ctx, stopping, "stop", LOADED, block_attempts(opts))
    if exit_code == 0:
        ctx.stderr(f"Successfully stopped units {go_list(stopping)}.")
    else:
        ctx.stderr(f"Failed to stop units {go_list(stopping)}. err: {error}")
    return exit_code


def run_unload(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    try:
        units = find_units(ctx, args)
    except FleetError as exc:
        ctx.stderr(exc.message)
        return 1
    if not units:
        ctx.stderr("Units not found in registry")
        return 0
    waiting: list[str] = []
    for unit in units:
        if not unit.is_global and unit.current_state == INACTIVE:
            continue
        ctx.client.set_unit_target_state(unit.name, INACTIVE)
        if unit.is_global:
            ctx.stdout(f"Triggered global unit {unit.name} unload")
        else:
            waiting.append(unit.name)
    exit_code, error = try_wait_for_unit_states(
        ctx, waiting, "unload", INACTIVE, block_attempts(opts)
    )
    if exit_code == 0:
        ctx.stderr(f"Successfully unloaded units {go_list(waiting)}.")
    else:
        ctx.stderr(f"Failed to unload units {go_list(waiting)}. err: {error}")
    return exit_code


def run_destroy(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    if not args:
        ctx.stderr("No units given")
        return 0
    try:
        units = find_units(ctx, args)
    except FleetError as exc:
        ctx.stderr(exc.message)
        return 1
    if not units:
        ctx.stderr("Units not found in registry")
        return 0
    exit_code = 0
    attempts = block_attempts(opts)
    for unit in units:
        try:
            ctx.client.destroy_unit(unit.name)
        except FleetError as exc:
            ctx.stderr(f"Error destroying units: {exc.message}")
            exit_code = 1
            continue
        tries = 0
        while attempts >= 0 and ctx.client.unit(unit.name) is not None:
            tries += 1
            if attempts > 0 and tries >= attempts:
                ctx.stderr(f"Error destroying units: unit {unit.name} still exists")
                exit_code = 1
                break
            ctx.sleep(WAIT_INTERVAL)
        ctx.stdout(f"Destroyed {unit.name}")
    return exit_code


def run_restart(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    try:
        units = find_units(ctx, args)
    except FleetError as exc:
        ctx.stderr(exc.message)
        return 1
    if not units:
        ctx.stderr("Units not found in registry")
        return 0
    attempts = int(opts.get("block-attempts", 0))
    exit_code = 0
    for unit in units:
        if unit.is_global:
            exit_code = _restart_global(ctx, unit) or exit_code
            continue
        if unit.current_state == INACTIVE:
            ctx.stderr(f"Unable to restart unit {unit.name} in state {INACTIVE}")
            continue
        if unit.current_state == LAUNCHED:
            ctx.client.set_unit_target_state(unit.name, LOADED)
            if try_wait_for_unit_states(ctx, [unit.name], "stop", LOADED, attempts)[0]:
                exit_code = 1
                continue
        ctx.client.set_unit_target_state(unit.name, LAUNCHED)
        if try_wait_for_unit_states(ctx, [unit.name], "start", LAUNCHED, attempts)[0]:
            exit_code = 1
    return exit_code


def _restart_global(ctx: Context, unit: UnitView) -> int:
    exit_code = 0
    for state in ctx.client.unit_states():
        if state.name == unit.name:
            status = run_on_machine(ctx, state.machine_id, ["systemctl", "restart", unit.name])
            exit_code = exit_code or (1 if status else 0)
    return exit_code


# -- listing ------------------------------------------------------------------------------
def run_list_units(ctx: Context, opts: dict[str, Any], _args: list[str]) -> int:
    try:
        fields = parse_fields(str(opts.get("fields", "")), LIST_UNITS_FIELDS)
    except FieldError as exc:
        ctx.stderr(str(exc))
        return 1
    try:
        states = ctx.client.unit_states()
        machines = ctx.machines() if "machine" in fields else {}
    except FleetError as exc:
        ctx.stderr(f"Error retrieving list of units from repository: {exc.message}")
        return 1
    full = bool(opts.get("full"))
    legend = not opts.get("no-legend")
    ctx.out.write(list_units_table(states, machines, fields, full=full, legend=legend))
    return 0


def run_list_unit_files(ctx: Context, opts: dict[str, Any], _args: list[str]) -> int:
    try:
        fields = parse_fields(str(opts.get("fields", "")), LIST_UNIT_FILES_FIELDS)
    except FieldError as exc:
        ctx.stderr(str(exc))
        return 1
    if "tmachine" in fields:
        ctx.stderr('WARNING: "tmachine" field is deprecated, use "target" instead.')
    try:
        units = ctx.client.units()
        machines = ctx.machines() if {"target", "tmachine"} & set(fields) else {}
    except FleetError as exc:
        ctx.stderr(f"Error retrieving list of units from repository: {exc.message}")
        return 1
    full = bool(opts.get("full"))
    legend = not opts.get("no-legend")
    ctx.out.write(list_unit_files_table(units, machines, fields, full=full, legend=legend))
    return 0


def run_list_machines(ctx: Context, opts: dict[str, Any], _args: list[str]) -> int:
    try:
        fields = parse_fields(str(opts.get("fields", "")), LIST_MACHINES_FIELDS)
    except FieldError as exc:
        ctx.stderr(str(exc))
        return 1
    try:
        machines = ctx.client.machines()
    except FleetError as exc:
        ctx.stderr(f"Error retrieving list of active machines from fleet API ({exc.message})")
        ctx.stderr("Possible issues:")
        ctx.stderr(" - fleetd is not running on the machine behind --endpoint")
        ctx.stderr(" - fleetd cannot reach etcd (check etcd_servers and etcd's health)")
        return 1
    full = bool(opts.get("full"))
    legend = not opts.get("no-legend")
    ctx.out.write(list_machines_table(machines, fields, full=full, legend=legend))
    return 0


def run_cat(ctx: Context, _opts: dict[str, Any], args: list[str]) -> int:
    if len(args) != 1:
        ctx.stderr("One unit file must be provided")
        return 1
    name = mangle_unit_name(args[0])
    try:
        unit = ctx.client.unit(name)
    except FleetError as exc:
        ctx.stderr(f"Error retrieving Unit {name}: {exc.message}")
        return 1
    if unit is None:
        ctx.stderr(f"Unit {name} not found")
        return 1
    ctx.out.write(unit.unit.text)
    ctx.out.flush()
    return 0


# -- commands that run on the unit's machine ---------------------------------------------
def run_on_machine(ctx: Context, machine_id: str, argv: list[str]) -> int:
    """Run ``argv`` on ``machine_id``: locally if that is this machine, else over ssh
    (fleetctl/ssh.go ``runCommand``)."""
    if machine_id and machine_id == ctx.local_machine_id():
        return ctx.run(argv)
    machine = ctx.machines().get(machine_id)
    if machine is None or not machine.public_ip:
        ctx.stderr(f"Error: unable to find the public IP of machine {machine_id}")
        return 1
    ensure_known_hosts_dir(ctx.ssh)
    command = remote_command_line(argv)
    return ctx.run(ssh_argv(machine.public_ip, command, ctx.ssh, tty=ctx.stdin_is_terminal()))


def _ssh_options(ctx: Context, opts: dict[str, Any]) -> SshOptions:
    base = ctx.ssh
    return SshOptions(
        username=base.username,
        port=int(opts.get("ssh-port", base.port)),
        forward_agent=bool(opts.get("forward-agent", False)),
        tunnel=base.tunnel,
        strict_host_key_checking=base.strict_host_key_checking,
        known_hosts_file=base.known_hosts_file,
        timeout=base.timeout,
    )


def run_status(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    ctx.ssh = _ssh_options(ctx, opts)
    exit_code = 0
    for index, arg in enumerate(args):
        name = mangle_unit_name(arg)
        try:
            unit = ctx.client.unit(name)
        except FleetError as exc:
            ctx.stderr(f"Error retrieving unit {name}: {exc.message}")
            return 1
        if unit is None:
            ctx.stderr(f"Unit {name} does not exist.")
            return 1
        if index:
            ctx.stdout("")
        if unit.is_global:
            for state in ctx.client.unit_states():
                if state.name == name:
                    exit_code = run_on_machine(ctx, state.machine_id, ["systemctl", "status", name])
            continue
        if unit.current_state == INACTIVE or not unit.machine_id:
            ctx.stderr(f"Unit {name} does not appear to be loaded.")
            return 1
        exit_code = run_on_machine(ctx, unit.machine_id, ["systemctl", "status", "-l", name])
        if exit_code != 0:
            break
    return exit_code


def journal_argv(name: str, *, lines: int, output: str, follow: bool, sudo: bool) -> list[str]:
    argv = ["journalctl", "--unit", name, "--no-pager", "-n", str(lines), "--output", output]
    if follow:
        argv.append("-f")
    return (["sudo"] if sudo else []) + argv


def run_journal(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    if len(args) != 1:
        ctx.stderr("One unit file must be provided.")
        return 1
    ctx.ssh = _ssh_options(ctx, opts)
    name = mangle_unit_name(args[0])
    try:
        unit = ctx.client.unit(name)
    except FleetError as exc:
        ctx.stderr(f"Error retrieving unit {name}: {exc.message}")
        return 1
    if unit is None:
        ctx.stderr(f"Unit {name} does not exist.")
        return 1
    if unit.is_global:
        ctx.stderr(f"Unable to retrieve journal of global unit {name}.")
        return 1
    if unit.current_state == INACTIVE or not unit.machine_id:
        ctx.stderr(f"Unit {name} does not appear to be running.")
        return 1
    argv = journal_argv(
        name,
        lines=int(opts.get("lines", 10)),
        output=str(opts.get("output", "short")),
        follow=bool(opts.get("follow")),
        sudo=bool(opts.get("sudo")),
    )
    return run_on_machine(ctx, unit.machine_id, argv)


def _machine_by_prefix(ctx: Context, lookup: str) -> tuple[MachineState | None, str]:
    match: MachineState | None = None
    for machine in ctx.machines().values():
        if machine.id.startswith(lookup):
            if match is not None:
                return None, "found more than one machine"
            match = machine
    return (match, "") if match is not None else (None, "machine does not exist")


def _machine_of_unit(ctx: Context, lookup: str) -> tuple[MachineState | None, str]:
    unit = ctx.client.unit(mangle_unit_name(lookup))
    if unit is None:
        return None, "unit does not exist"
    if unit.is_global:
        return None, "global units unsupported"
    machine = ctx.machines().get(unit.machine_id)
    if machine is None or not machine.public_ip:
        return None, "unit is not scheduled to a machine with a known address"
    return machine, ""


def _ssh_target(
    ctx: Context, opts: dict[str, Any], args: list[str]
) -> tuple[MachineState | None, str, list[str]]:
    """(machine, problem, remaining command) for ``fleetctl ssh``."""
    by_machine = str(opts.get("machine", ""))
    by_unit = str(opts.get("unit", ""))
    if by_machine and by_unit:
        return None, "Both machine and unit flags provided, please specify only one.", args
    if by_machine:
        return (*_machine_by_prefix(ctx, by_machine), args)
    if by_unit:
        return (*_machine_of_unit(ctx, by_unit), args)
    if not args:
        return None, "one machine or unit must be provided", args
    lookup, rest = args[0], args[1:]
    machine, _ = _machine_by_prefix(ctx, lookup)
    unit_machine, _ = _machine_of_unit(ctx, lookup)
    if machine is not None and unit_machine is not None:
        problem = (
            f"ambiguous argument, both machine and unit found for `{lookup}`.\n"
            "Please use flag `-m` or `-u` to refine the search"
        )
        return None, problem, rest
    target = machine or unit_machine
    return target, "" if target is not None else "could not find matching unit or machine", rest


def run_ssh(ctx: Context, opts: dict[str, Any], args: list[str]) -> int:
    ctx.ssh = _ssh_options(ctx, opts)
    try:
        target, problem, command = _ssh_target(ctx, opts, args)
    except FleetError as exc:
        ctx.stderr(exc.message)
        return 1
    if target is None or not target.public_ip:
        ctx.stderr(problem or "Requested machine could not be found.")
        return 1
    ensure_known_hosts_dir(ctx.ssh)
    line = ssh_command_line(command)
    return ctx.run(ssh_argv(target.public_ip, line, ctx.ssh, tty=ctx.stdin_is_terminal()))


def run_verify(ctx: Context, _opts: dict[str, Any], _args: list[str]) -> int:
    ctx.stderr("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.")
    return 2


def run_version(ctx: Context, _opts: dict[str, Any], _args: list[str]) -> int:
    ctx.stdout(f"fleetctl version {VERSION}")
    return 0
