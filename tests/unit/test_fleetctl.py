"""fleetctl: argument parsing, messages and exit codes, with an in-memory cluster.

``MemoryCluster`` stands in for the fleet API here; the same commands run
against real etcd and real fleetd processes in tests/integration/test_fleet_*.py.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from provisioner.guest.fleet.client import (
    API_ANSWER_TIMEOUT,
    FleetClient,
    HttpApiClient,
    RegistryClient,
    api_answer_timeout,
    check_target_state,
)
from provisioner.guest.fleet.errors import FleetError
from provisioner.guest.fleet.fleetctl import (
    UsageError,
    build_client,
    global_help,
    parse_args,
    run,
)
from provisioner.guest.fleet.model import INACTIVE, LAUNCHED, LOADED, MachineState, UnitState
from provisioner.guest.fleet.registry import UnitView
from provisioner.guest.fleet.unitfile import UnitFile, parse_unit_file

pytestmark = pytest.mark.unit

LOCAL = MachineState("a" * 32, "10.0.0.1")
REMOTE = MachineState("ab" + "c" * 30, "10.0.0.2")
PLAIN = "[Unit]\nDescription=plain\n\n[Service]\nExecStart=/bin/true\n"
GLOBAL = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n"


class MemoryCluster:
    """An in-memory fleet: desired states take effect at once on the first machine."""

    def __init__(self, machines: list[MachineState], *, converge: bool = True) -> None:
        self.machine_list = machines
        self.views: dict[str, UnitView] = {}
        self.converge = converge
        self.calls: list[tuple[str, ...]] = []

    def add(self, name: str, text: str, desired: str, current: str, machine: str = "") -> None:
        self.views[name] = UnitView(name, parse_unit_file(text), desired, current, machine)

    def units(self) -> list[UnitView]:
        return sorted(self.views.values(), key=lambda v: v.name)

    def unit(self, name: str) -> UnitView | None:
        return self.views.get(name)

    def create_unit(self, name: str, unit: UnitFile) -> None:
        self.calls.append(("create", name))
        self.views[name] = UnitView(name, unit, INACTIVE, INACTIVE, "")

    def replace_unit(self, name: str, unit: UnitFile, desired_state: str) -> None:
        self.calls.append(("replace", name, desired_state))
        old = self.views[name]
        self.views[name] = UnitView(name, unit, desired_state, old.current_state, old.machine_id)

    def set_unit_target_state(self, name: str, state: str) -> None:
        check_target_state(name, state)
        self.calls.append(("state", name, state))
        old = self.views[name]
        current, machine = old.current_state, old.machine_id
        if self.converge and not old.is_global:
            current = state
            machine = self.machine_list[0].id if state != INACTIVE else ""
        self.views[name] = UnitView(name, old.unit, state, current, machine)

    def destroy_unit(self, name: str) -> bool:
        self.calls.append(("destroy", name))
        return self.views.pop(name, None) is not None

    def unit_states(self) -> list[UnitState]:
        return [
            UnitState(v.name, v.machine_id, "loaded", "active", "running", v.unit.hash)
            for v in self.units()
            if v.machine_id and v.current_state == LAUNCHED
        ]

    def machines(self) -> list[MachineState]:
        return list(self.machine_list)


class Result:
    def __init__(self, code: int, out: str, err: str, commands: list[list[str]]) -> None:
        self.code, self.out, self.err, self.commands = code, out, err, commands


def fleetctl(
    cluster: MemoryCluster | None,
    *argv: str,
    env: Mapping[str, str] | None = None,
    machine_id_file: Path | None = None,
    terminal: bool = False,
) -> Result:
    out, err = io.StringIO(), io.StringIO()
    commands: list[list[str]] = []

    def runner(command: list[str]) -> int:
        commands.append(command)
        return 3

    def factory(_values: Mapping[str, Any]) -> FleetClient:
        assert cluster is not None
        return cluster

    code = run(
        list(argv),
        environ=env or {},
        out=out,
        err=err,
        client_factory=factory,
        runner=runner,
        machine_id_path=str(machine_id_file or "/nonexistent/machine-id"),
        stdin_is_terminal=lambda: terminal,
    )
    return Result(code, out.getvalue(), err.getvalue(), commands)


@pytest.fixture
def cluster() -> MemoryCluster:
    return MemoryCluster([LOCAL, REMOTE])


# -- parsing --------------------------------------------------------------------------
def test_prefix_matching_and_flags_anywhere() -> None:
    parsed = parse_args(["list-m", "--full", "--endpoint", "http://x:1", "--no-legend=false"])
    assert parsed.command.name == "list-machines"
    assert parsed.options == {"full": True, "no-legend": False, "fields": "machine,ip,metadata"}
    assert parsed.global_values["endpoint"] == "http://x:1"
    with pytest.raises(UsageError, match="unknown shorthand flag: 'l' in -l"):
        parse_args(["-l", "list-units"])  # -l belongs to list-units, not to fleetctl
    with pytest.raises(UsageError, match='unknown command "st" for "fleetctl"'):
        parse_args(["st", "x"])
    with pytest.raises(UsageError, match="unknown flag: --bogus"):
        parse_args(["start", "--bogus"])
    with pytest.raises(UsageError, match='invalid argument "many" for "--block-attempts" flag'):
        parse_args(["start", "--block-attempts=many"])


def test_ssh_stops_parsing_flags_after_the_target() -> None:
    parsed = parse_args(["ssh", "-A", "machine1", "ls", "-l", "--all"])
    assert parsed.options["forward-agent"] is True
    assert parsed.args == ["machine1", "ls", "-l", "--all"]
    assert parse_args(["start", "a", "--no-block", "b"]).args == ["a", "b"]
    assert parse_args(["cat", "--", "--odd"]).args == ["--odd"]


def test_environment_fills_unset_global_flags(tmp_path: Path) -> None:
    env = {"FLEETCTL_ENDPOINT": "http://env:2379", "FLEETCTL_STRICT_HOST_KEY_CHECKING": "false"}
    seen: dict[str, Any] = {}

    def factory(values: Mapping[str, Any]) -> FleetClient:
        seen.update(values)
        return MemoryCluster([LOCAL])

    out, err = io.StringIO(), io.StringIO()
    assert run(["list-units"], environ=env, out=out, err=err, client_factory=factory) == 0
    assert seen["endpoint"] == "http://env:2379"
    assert seen["strict-host-key-checking"] is False
    run(
        ["--endpoint=http://flag:1", "list-units"],
        environ=env,
        out=out,
        err=err,
        client_factory=factory,
    )
    assert seen["endpoint"] == "http://flag:1"


# -- commands without a cluster ------------------------------------------------------
@pytest.mark.parametrize("argv", [["version"], ["-v"], ["--version"], ["vers"]])
def test_version(argv: list[str]) -> None:
    result = fleetctl(None, *argv)
    assert (result.code, result.out) == (0, "fleetctl version 1.0.0\n")


def test_help_lists_sections_and_version() -> None:
    result = fleetctl(None)
    assert result.code == 0
    assert result.out == global_help()
    for section in ("NAME:", "USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"):
        assert section in result.out
    assert "\t1.0.0\n" in result.out
    detail = fleetctl(None, "help", "start")
    assert "DESCRIPTION:" in detail.out
    assert "--block-attempts=0" in detail.out
    assert fleetctl(None, "start", "--help").out == detail.out


def test_deprecated_signing_and_verify_exit_2() -> None:
    warning = "WARNING: The signed/verified units feature is DEPRECATED and cannot be used.\n"
    for argv in (["verify", "x"], ["submit", "--sign", "x"], ["start", "--sign", "x"]):
        result = fleetctl(None, *argv)
        assert (result.code, result.err) == (2, warning)


def test_usage_errors_exit_0_as_fleet_1_0_does() -> None:
    """fleetctl/fleetctl.go main: cobra's error, ``cannot execute cmdFleet``, cmdExitCode 0."""
    result = fleetctl(None, "frobnicate")
    assert result.code == 0
    assert result.err == (
        'Error: unknown command "frobnicate" for "fleetctl"\n'
        "Run 'fleetctl --help' for usage.\n"
        'cannot execute cmdFleet: unknown command "frobnicate" for "fleetctl"\n'
    )
    flag = fleetctl(None, "list-units", "--bogus")
    assert flag.code == 0
    assert flag.err == (
        "Error: unknown flag: --bogus\ncannot execute cmdFleet: unknown flag: --bogus\n"
    )
    assert flag.out.startswith("NAME:\n\tfleetctl list-units - ")
    needs = fleetctl(None, "list-units", "--fields")
    assert (needs.code, needs.err.splitlines()[0]) == (0, "Error: flag needs an argument: --fields")


def test_an_unknown_command_gets_cobras_suggestions() -> None:
    """cobra's SuggestionsFor (vendor/github.com/spf13/cobra/command.go): distance 2 or prefix."""
    result = fleetctl(None, "sart")
    assert result.code == 0
    assert "\n\nDid you mean this?\n\tcat\n\tstart\n\n" in result.err


def test_help_for_an_unknown_topic_exits_0() -> None:
    """cobra's help command: ``Unknown help topic`` and the root usage."""
    result = fleetctl(None, "help", "nothing")
    assert (result.code, result.err) == (0, "Unknown help topic [`nothing`].")
    assert result.out == global_help()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--endpoint=unix://var/run/fleet.sock"],
            'unable to connect to host "var" with scheme "unix"',
        ),
        (["--endpoint=var/run/fleet.sock"], "URL scheme undefined"),
        (["--driver=carrier-pigeon"], 'unrecognized driver "carrier-pigeon"'),
        (["--driver=etcd", "--endpoint=unix:///x"], "must be an http:// or https:// URL"),
    ],
)
def test_client_initialisation_errors(flags: list[str], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run([*flags, "list-units"], environ={}, out=out, err=err) == 1
    assert err.getvalue().startswith("Unable to initialize client: ")
    assert message in err.getvalue()


def test_client_selection() -> None:
    def values(**changes: Any) -> dict[str, Any]:
        parsed = parse_args(["list-units"])
        return {**parsed.global_values, **changes}

    api = build_client(values(), print)
    assert isinstance(api, HttpApiClient)
    assert api.endpoint.unix_path == "/var/run/fleet.sock"
    legacy = build_client(values(**{"experimental-api": False}), print)
    assert isinstance(legacy, RegistryClient)
    assert legacy.registry.etcd.endpoints == ["http://127.0.0.1:2379", "http://127.0.0.1:4001"]
    warnings: list[str] = []
    build_client(values(endpoint="http://a:1,http://b:2"), warnings.append)
    assert warnings == ["multiple endpoints provided but only the first (http://a:1) is used"]


# -- unit lifecycle ---------------------------------------------------------------------
def test_no_units_given(cluster: MemoryCluster) -> None:
    for command in ("submit", "start", "load", "destroy"):
        result = fleetctl(cluster, command)
        assert (result.code, result.err) == (0, "No units given\n")


def test_start_submits_from_file_and_waits(cluster: MemoryCluster, tmp_path: Path) -> None:
    path = tmp_path / "web.service"
    path.write_text(PLAIN)
    result = fleetctl(cluster, "start", "--block-attempts=3", str(path))
    assert result.code == 0, result.err
    assert result.out == "Unit web.service launched on aaaaaaaa.../10.0.0.1\n"
    assert cluster.calls == [("create", "web.service"), ("state", "web.service", LAUNCHED)]
    # Already launched: nothing triggered, nothing printed.
    again = fleetctl(cluster, "start", "web")
    assert (again.code, again.out, again.err) == (0, "", "")


def test_start_times_out_when_the_cluster_does_not_move(tmp_path: Path) -> None:
    stuck = MemoryCluster([LOCAL], converge=False)
    path = tmp_path / "web.service"
    path.write_text(PLAIN)
    result = fleetctl(stuck, "start", "--block-attempts=2", str(path))
    assert result.code == 1
    assert result.err == (
        "Error waiting for unit states, exit status: "
        "timed out waiting for unit web.service to report state launched\n"
    )


def test_no_block_and_global_units(cluster: MemoryCluster, tmp_path: Path) -> None:
    (tmp_path / "a.service").write_text(PLAIN)
    (tmp_path / "g.service").write_text(GLOBAL)
    result = fleetctl(
        cluster, "load", "--no-block", str(tmp_path / "a.service"), str(tmp_path / "g.service")
    )
    assert result.code == 0
    # Global units are reported while their state is set; the others when waiting ends.
    assert result.out == "Triggered global unit g.service load\nTriggered unit a.service load\n"


def test_instances_come_from_templates(cluster: MemoryCluster, tmp_path: Path) -> None:
    (tmp_path / "web@.service").write_text(PLAIN)
    result = fleetctl(cluster, "submit", str(tmp_path / "web@1.service"))
    assert result.code == 0, result.err
    assert cluster.views["web@1.service"].unit.text == PLAIN
    missing = fleetctl(cluster, "submit", str(tmp_path / "db@1.service"))
    assert missing.err == (
        "Error creating units: unable to find Unit(db@1.service) or template "
        "Unit(db@.service) in Registry or on filesystem\n"
    )
    cluster.add("app@.service", GLOBAL, INACTIVE, INACTIVE)
    assert fleetctl(cluster, "submit", "app@x").code == 0
    assert cluster.views["app@x.service"].is_global


def test_bad_unit_names_and_options(cluster: MemoryCluster, tmp_path: Path) -> None:
    # A file with an unknown suffix is submitted under its name plus ".service".
    (tmp_path / "odd.timerx").write_text(PLAIN)
    assert fleetctl(cluster, "submit", str(tmp_path / "odd.timerx")).code == 0
    assert "odd.timerx.service" in cluster.views
    (tmp_path / "x@y.mount").write_text(PLAIN)
    named = fleetctl(cluster, "submit", str(tmp_path / "x@y.mount"))
    assert named.err == (
        "Error creating units: failed creating unit x@y.mount: "
        'invalid unit type for template: "mount"\n'
    )
    (tmp_path / "pinned.service").write_text(GLOBAL + "MachineID=abc\n")
    invalid = fleetctl(cluster, "submit", str(tmp_path / "pinned.service"))
    assert (invalid.code, invalid.err) == (
        1,
        "Error creating units: MachineID cannot be used with Global\n",
    )
    assert "pinned.service" not in cluster.views


def test_stop_messages_and_exit_codes(cluster: MemoryCluster) -> None:
    cluster.add("idle.service", PLAIN, INACTIVE, INACTIVE)
    cluster.add("run.service", PLAIN, LAUNCHED, LAUNCHED, LOCAL.id)
    cluster.add("half.service", PLAIN, LOADED, LOADED, LOCAL.id)
    assert fleetctl(cluster, "stop", "nothing").err == "Units not found in registry\n"
    refused = fleetctl(cluster, "stop", "idle", "run")
    assert (refused.code, refused.err) == (
        1,
        "Unable to stop unit idle.service in state inactive\n",
    )
    stopped = fleetctl(cluster, "stop", "--block-attempts=2", "run", "half")
    assert stopped.code == 0
    assert stopped.out == "Unit run.service loaded on aaaaaaaa.../10.0.0.1\n"
    assert stopped.err == "Successfully stopped units [run.service].\n"
    unloaded = fleetctl(cluster, "unload", "--block-attempts=2", "run", "idle")
    assert unloaded.out == "Unit run.service inactive\n"
    assert unloaded.err == "Successfully unloaded units [run.service].\n"


def test_destroy(cluster: MemoryCluster) -> None:
    cluster.add("a.service", PLAIN, LAUNCHED, LAUNCHED, LOCAL.id)
    result = fleetctl(cluster, "destroy", "a", "missing")
    assert (result.code, result.out) == (0, "Destroyed a.service\n")
    assert fleetctl(cluster, "destroy", "a").err == "Units not found in registry\n"


def test_start_of_a_template_is_refused(cluster: MemoryCluster) -> None:
    cluster.add("web@.service", PLAIN, INACTIVE, INACTIVE)
    result = fleetctl(cluster, "start", "web@.service")
    assert (result.code, result.err) == (
        1,
        'Error starting units: cannot activate template "web@.service"\n',
    )


def test_replace_rules(cluster: MemoryCluster, tmp_path: Path) -> None:
    path = tmp_path / "app.service"
    path.write_text(PLAIN)
    cluster.add("app.service", PLAIN, LOADED, LOADED, LOCAL.id)
    same = fleetctl(cluster, "submit", "--replace", str(path))
    assert same.out == "Found same Unit(app.service) in Registry, nothing to do\n"
    path.write_text(PLAIN.replace("plain", "changed"))
    refused = fleetctl(cluster, "submit", "--replace", str(path))
    assert refused.err == (
        "Warning: can not replace Unit(app.service) in state 'loaded', "
        "use the appropriate command\n"
    )
    assert fleetctl(cluster, "load", "--replace", "--no-block", str(path)).code == 0
    assert ("replace", "app.service", LOADED) in cluster.calls
    assert cluster.views["app.service"].unit.description == "changed"


# -- listing ------------------------------------------------------------------------------
def test_listing_errors(cluster: MemoryCluster) -> None:
    bad = fleetctl(cluster, "list-units", "--fields=unit,colour")
    assert (bad.code, bad.err) == (1, 'Invalid key in output format: "colour"\n')
    empty = fleetctl(cluster, "list-unit-files", "--fields=")
    assert (empty.code, empty.err) == (1, "Must define output format\n")
    legacy = fleetctl(cluster, "list-unit-files", "--fields=unit,tmachine")
    assert legacy.code == 0
    assert "deprecated" in legacy.err


def test_cat_prints_the_unit_exactly(cluster: MemoryCluster) -> None:
    cluster.add("a.service", PLAIN, INACTIVE, INACTIVE)
    assert fleetctl(cluster, "cat", "a").out == PLAIN
    assert fleetctl(cluster, "cat").err == "One unit file must be provided\n"
    assert fleetctl(cluster, "cat", "b").err == "Unit b.service not found\n"


# -- commands run on the unit's machine -----------------------------------------------------
def test_status_runs_locally_or_over_ssh(cluster: MemoryCluster, tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text(LOCAL.id + "\n")
    cluster.add("here.service", PLAIN, LAUNCHED, LAUNCHED, LOCAL.id)
    cluster.add("there.service", PLAIN, LAUNCHED, LAUNCHED, REMOTE.id)
    cluster.add("idle.service", PLAIN, INACTIVE, INACTIVE)
    result = fleetctl(
        cluster, "status", "--ssh-port=2222", "here", "there", machine_id_file=machine_id
    )
    # The runner answers 3 (systemctl's "not running"): that is the exit status, and it stops.
    assert result.code == 3
    assert result.commands == [["systemctl", "status", "-l", "here.service"]]
    remote = fleetctl(cluster, "status", "there", machine_id_file=machine_id)
    assert remote.commands[0][-3:] == ["10.0.0.2", "--", "systemctl status -l there.service"]
    assert remote.commands[0][3:5] == ["-p", "22"]
    assert fleetctl(cluster, "status", "nope").err == "Unit nope.service does not exist.\n"
    assert fleetctl(cluster, "status", "idle").err == (
        "Unit idle.service does not appear to be loaded.\n"
    )


def test_journal_arguments_and_refusals(cluster: MemoryCluster) -> None:
    cluster.add("web.service", PLAIN, LAUNCHED, LAUNCHED, REMOTE.id)
    cluster.add("g.service", GLOBAL, LAUNCHED, "", "")
    cluster.add("idle.service", PLAIN, INACTIVE, INACTIVE)
    result = fleetctl(cluster, "journal", "--lines=5", "-f", "--sudo", "--output=cat", "web")
    assert result.commands[0][-1] == (
        "sudo journalctl --unit web.service --no-pager -n 5 --output cat -f"
    )
    # a terminal only when fleetctl's stdin is one (ssh/ssh.go makeSession), -f or not
    assert "-T" in result.commands[0]
    followed = fleetctl(cluster, "journal", "-f", "web", terminal=True)
    assert "-t" in followed.commands[0]
    assert fleetctl(cluster, "journal").err == "One unit file must be provided.\n"
    assert fleetctl(cluster, "journal", "g").err == (
        "Unable to retrieve journal of global unit g.service.\n"
    )
    assert fleetctl(cluster, "journal", "idle").err == (
        "Unit idle.service does not appear to be running.\n"
    )


def test_ssh_target_lookup(cluster: MemoryCluster) -> None:
    cluster.add("web.service", PLAIN, LAUNCHED, LAUNCHED, REMOTE.id)
    by_unit = fleetctl(cluster, "ssh", "web", "uptime", "-p")
    assert by_unit.commands[0][-3:] == ["10.0.0.2", "--", "uptime -p"]
    # Without -m, an ambiguous machine prefix is no match (fleet's globalMachineLookup).
    ambiguous = fleetctl(cluster, "ssh", "a")
    assert (ambiguous.code, ambiguous.err) == (1, "could not find matching unit or machine\n")
    assert fleetctl(cluster, "ssh", "-m", "a").err == "found more than one machine\n"
    shell = fleetctl(cluster, "ssh", "--machine", "ab", "--ssh-port", "2200", terminal=True)
    assert shell.commands[0][-2:] == ["-t", "10.0.0.2"]
    piped = fleetctl(cluster, "ssh", "--machine", "ab")
    assert piped.commands[0][-2:] == ["-T", "10.0.0.2"]
    assert "2200" in shell.commands[0]
    both = fleetctl(cluster, "ssh", "-m", "ab", "-u", "web")
    assert both.err == "Both machine and unit flags provided, please specify only one.\n"
    cluster.add("ab.service", PLAIN, LAUNCHED, LAUNCHED, LOCAL.id)
    clash = fleetctl(cluster, "ssh", "ab")
    assert clash.err.startswith("ambiguous argument, both machine and unit found for `ab`.")
    assert fleetctl(cluster, "ssh", "zz").err == "could not find matching unit or machine\n"


def test_ssh_runs_a_quoted_command_line(cluster: MemoryCluster) -> None:
    """fleetctl/ssh.go runSSH: the words after the target, joined with spaces, are
    one command line for the remote shell; after ``--`` flags are the command's."""
    cluster.add("web.service", PLAIN, LAUNCHED, LAUNCHED, REMOTE.id)
    line = fleetctl(cluster, "ssh", "ab", "echo a; echo b")
    assert line.commands[0][-3:] == ["10.0.0.2", "--", "echo a; echo b"]
    words = fleetctl(cluster, "ssh", "web", "--", "ps", "aux", "|", "grep", "-c", "x")
    assert words.commands[0][-3:] == ["10.0.0.2", "--", "ps aux | grep -c x"]
    by_flag = fleetctl(cluster, "ssh", "-u", "web", "uname -a && uptime")
    assert by_flag.commands[0][-3:] == ["10.0.0.2", "--", "uname -a && uptime"]
    assert "-T" in by_flag.commands[0]


def test_errors_from_the_cluster_become_messages(tmp_path: Path) -> None:
    class Down(MemoryCluster):
        def machines(self) -> list[MachineState]:
            raise FleetError("connection refused")

    result = fleetctl(Down([]), "list-machines")
    assert result.code == 1
    assert result.err.splitlines()[:2] == [
        "Error retrieving list of active machines from fleet API (connection refused)",
        "Possible issues:",
    ]


def test_restart_skips_inactive_units(cluster: MemoryCluster) -> None:
    cluster.add("idle.service", PLAIN, INACTIVE, INACTIVE)
    cluster.add("run.service", PLAIN, LAUNCHED, LAUNCHED, LOCAL.id)
    result = fleetctl(cluster, "restart", "--block-attempts=2", "idle", "run")
    assert result.code == 0
    assert result.err == "Unable to restart unit idle.service in state inactive\n"
    assert result.out == (
        "Unit run.service loaded on aaaaaaaa.../10.0.0.1\n"
        "Unit run.service launched on aaaaaaaa.../10.0.0.1\n"
    )
    assert cluster.calls == [("state", "run.service", LOADED), ("state", "run.service", LAUNCHED)]


def test_api_requests_wait_for_fleetd_beyond_the_request_timeout(tmp_path: Path) -> None:
    """fleetd bounds its own etcd work; an API answer slower than --request-timeout counts."""
    sock_path = tmp_path / "fleet.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    body = json.dumps({"machines": [{"id": LOCAL.id, "primaryIP": "10.0.0.1"}]}).encode()

    def answer_slowly() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            time.sleep(0.6)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )

    server = threading.Thread(target=answer_slowly, daemon=True)
    server.start()
    out, err = io.StringIO(), io.StringIO()
    flags = [f"--endpoint=unix://{sock_path}", "--request-timeout=0.2"]
    try:
        code = run([*flags, "list-machines", "--no-legend"], environ={}, out=out, err=err)
    finally:
        server.join(timeout=10)
        listener.close()
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().split() == [f"{LOCAL.id[:8]}...", "10.0.0.1", "-"]


def test_api_answer_timeout_is_a_minute_or_the_request_timeout() -> None:
    api = build_client(parse_args(["--request-timeout=0.2", "list-units"]).global_values, print)
    assert isinstance(api, HttpApiClient)
    assert api.timeout == API_ANSWER_TIMEOUT == 60.0
    assert api_answer_timeout(90.0) == 90.0
