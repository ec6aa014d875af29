"""Run the checks: pytest + testinfra in a subprocess, over SSH with pinned host keys.

:func:`run_verify` runs the shipped check modules (and the user's own testinfra
files) against every node. Each node is a host URL for the ``lab-paramiko``
backend (:mod:`provisioner.checks.backend`), which reads the node's Host block
from the lab's ssh_config and refuses any host key the lab's known_hosts does not
pin. The run happens in a child process with a deadline; the plugin writes each
check's outcome as JSON, which comes back as a :class:`VerifyResult`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from provisioner.checks import backend
from provisioner.checks.expectations import load_expectations
from provisioner.errors import ConfigError, HostKeyError, LabError, RemoteError, WaitTimeout
from provisioner.remote.sshconfig import HostSpec, ssh_options

log = logging.getLogger(__name__)

CHECKS_DIR = Path(__file__).resolve().parent
CHECK_MODULES = ("etcd", "fleet", "flannel", "system")
PLUGIN = "provisioner.checks.plugin"
HOST_KEY_ERROR = f"{HostKeyError.__module__}.{HostKeyError.__qualname__}"
_OUTPUT_TAIL_LINES = 40

Outcome = Literal["passed", "failed", "error", "skipped"]
_OUTCOMES = ("passed", "failed", "error", "skipped")

# pytest's exit codes (pytest.ExitCode) that still leave a report worth reading.
_EXIT_OK, _EXIT_FAILED, _EXIT_INTERRUPTED, _EXIT_NO_TESTS = 0, 1, 2, 5


@dataclass(frozen=True)
class CheckOutcome:
    """One check on one node (``node`` is None for a file that failed to load)."""

    nodeid: str
    node: str | None
    check: str
    outcome: Outcome
    message: str = ""
    hint: str = ""
    error_type: str = ""
    duration: float = 0.0

    @property
    def host_key_refused(self) -> bool:
        return self.error_type == HOST_KEY_ERROR

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "skipped")


@dataclass(frozen=True)
class VerifyResult:
    """Every check's outcome, pytest's exit code and output, and the JUnit file if written."""

    returncode: int
    outcomes: tuple[CheckOutcome, ...]
    junit: Path | None
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == _EXIT_OK and all(o.ok for o in self.outcomes)

    @property
    def failures(self) -> tuple[CheckOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def refused_nodes(self) -> tuple[str, ...]:
        """Nodes whose host key was refused: nothing ran on them."""
        return tuple(sorted({o.node for o in self.outcomes if o.host_key_refused and o.node}))

    def raise_for_failures(self) -> None:
        """Raise one error summing up every failure; return if all checks passed."""
        if self.ok:
            return
        refused = [o for o in self.failures if o.host_key_refused]
        if refused:
            first = refused[0]
            others = len(self.refused_nodes) - 1
            more = f" (and {others} more node(s))" if others > 0 else ""
            raise RemoteError(first.message.splitlines()[0] + more, hint=first.hint or None)
        nodes = sorted({o.node or "collection" for o in self.failures})
        raise LabError(
            f"{len(self.failures)} of {len(self.outcomes)} checks failed on {', '.join(nodes)}",
            hint="the report above says what each check found"
            + (f"; JUnit XML in {self.junit}" if self.junit else ""),
        )


# --- pure parts ---------------------------------------------------------------


def host_url(host: HostSpec, ssh_config: Path, command_timeout: float) -> str:
    """The testinfra host URL of a node for the pinned backend."""
    return (
        f"{backend.NAME}://{host.name}?ssh_config={quote(str(ssh_config), safe='/')}"
        f"&read_timeout_sec={command_timeout:g}"
    )


def check_paths(only: Sequence[str] | None) -> list[Path]:
    """The shipped check modules to run: all of them, or those named in ``only``."""
    names = CHECK_MODULES if only is None else tuple(only)
    unknown = [name for name in names if name not in CHECK_MODULES]
    if unknown or not names:
        raise ConfigError(
            f"unknown check group(s) {unknown}" if unknown else "no check group selected",
            hint=f"choose from {', '.join(CHECK_MODULES)}",
        )
    return [CHECKS_DIR / f"test_{name}.py" for name in names]


def pytest_argv(
    hosts: Sequence[HostSpec],
    expectations: Path,
    ssh_config: Path,
    *,
    paths: Sequence[Path],
    report: Path,
    inifile: Path,
    junit: Path | None,
    command_timeout: float,
) -> list[str]:
    """The child's command line: pytest with testinfra and the lab plugin only."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(inifile),
        "--rootdir",
        os.path.commonpath([str(path.parent) for path in paths]) if paths else str(inifile.parent),
        "-p",
        "no:cacheprovider",
        "-p",
        "testinfra.plugin",
        "-p",
        PLUGIN,
        "--import-mode=importlib",
        "--color=no",
        "--tb=short",
        "-v",
        f"--hosts={','.join(host_url(h, ssh_config, command_timeout) for h in hosts)}",
        f"--lab-expectations={expectations}",
        f"--lab-report={report}",
    ]
    if junit is not None:
        argv += [f"--junitxml={junit}", "-o", "junit_suite_name=lab-verify"]
    return argv + [str(path) for path in paths]


def _outcome(raw: Any) -> CheckOutcome:
    outcome = raw["outcome"]
    if outcome not in _OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return CheckOutcome(
        nodeid=str(raw["nodeid"]),
        node=None if raw["node"] is None else str(raw["node"]),
        check=str(raw["check"]),
        outcome=outcome,
        message=str(raw["message"]),
        hint=str(raw["hint"]),
        error_type=str(raw["error_type"]),
        duration=float(raw["duration"]),
    )


def parse_report(text: str) -> tuple[CheckOutcome, ...]:
    """Outcomes from the JSON the plugin writes (``--lab-report``)."""
    try:
        return tuple(_outcome(raw) for raw in json.loads(text)["outcomes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"the checks' report is unreadable: {exc}") from exc


def render_report(result: VerifyResult) -> str:
    """One line per check (failures with their findings indented); refusals once per node."""
    lines = []
    shown_refusals: set[str] = set()
    for outcome in sorted(result.outcomes, key=lambda o: (o.node or "", o.nodeid)):
        where = outcome.node or "-"
        if outcome.host_key_refused:
            if where not in shown_refusals:
                shown_refusals.add(where)
                message = outcome.message.splitlines()[0].removeprefix(f"{where}: ")
                lines.append(f"REFUSED {where}: {message}")
            continue
        label = {"passed": "ok  ", "skipped": "skip", "failed": "FAIL", "error": "ERR "}
        lines.append(f"{label[outcome.outcome]} {where} {outcome.check}")
        if outcome.outcome == "skipped" or not outcome.ok:
            lines += [f"       {line}" for line in outcome.message.splitlines()]
    passed = sum(1 for o in result.outcomes if o.ok)
    lines.append(f"{passed}/{len(result.outcomes)} checks passed")
    return "\n".join(lines)


# --- running ------------------------------------------------------------------


def _preflight(
    hosts: Sequence[HostSpec], expectations: Path, ssh_config: Path, extra_paths: Sequence[Path]
) -> None:
    """Refuse a run that could not mean anything, before starting it."""
    if not hosts:
        raise ConfigError("no nodes to verify", hint="boot the lab with `lab up` first")
    expected = load_expectations(expectations)
    try:
        config_text = ssh_config.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(ssh_config)) from exc
    for host in hosts:
        expected.node(host.name)
        options = ssh_options(config_text, host.name, source=str(ssh_config))
        if (options.hostname, options.port) != (host.address, host.port):
            raise ConfigError(
                f"Host {host.name} points at {options.hostname}:{options.port},"
                f" but the node is at {host.address}:{host.port}",
                path=str(ssh_config),
                hint="regenerate it with `lab ssh-config`",
            )
        if not options.known_hosts.is_file():
            raise RemoteError(
                f"{host.name}: the lab's known_hosts {options.known_hosts} does not exist",
                hint="it is written when the nodes boot; run `lab up` first",
            )
    for path in extra_paths:
        if not path.exists():
            raise ConfigError(f"check file or directory {path} does not exist")


def _tail(output: str) -> str:
    return "\n".join(output.strip().splitlines()[-_OUTPUT_TAIL_LINES:])


def _run_child(argv: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # testinfra and the lab plugin come via -p
    log.debug("running checks: %s", argv)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout can stop the whole group
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise WaitTimeout(
            "verify",
            f"the checks did not finish within {timeout:g}s; last output:\n{_tail(output)}",
        ) from None
    return proc.returncode, output


def run_verify(
    hosts: list[HostSpec],
    expectations: Path,
    ssh_config: Path,
    junit: Path | None,
    extra_paths: list[Path],
    timeout: float,
    *,
    only: Sequence[str] | None = None,
    command_timeout: float | None = None,
) -> VerifyResult:
    """Run the checks against ``hosts`` and return every outcome.

    ``only`` picks shipped check groups (``etcd``, ``fleet``, ``flannel``, ``system``; default
    all); ``extra_paths`` adds the user's own testinfra files or directories, which
    get the same ``host``, ``lab_node`` and ``lab_expectations`` fixtures. The
    whole run has ``timeout`` seconds; each remote command ``command_timeout``
    (default: 60 s, or ``timeout`` if shorter).
    Failing checks are returned, not raised (see :meth:`VerifyResult.raise_for_failures`);
    a run that cannot start or report raises :class:`LabError`.
    """
    expectations, ssh_config = expectations.resolve(), ssh_config.resolve()
    junit = junit.resolve() if junit is not None else None
    extra = [path.resolve() for path in extra_paths]
    paths = check_paths(only) + extra
    _preflight(hosts, expectations, ssh_config, extra)
    with tempfile.TemporaryDirectory(prefix="lab-verify-") as tmp:
        work = Path(tmp)
        inifile = work / "pytest.ini"
        inifile.write_text("[pytest]\n")
        report = work / "report.json"
        argv = pytest_argv(
            hosts,
            expectations,
            ssh_config,
            paths=paths,
            report=report,
            inifile=inifile,
            junit=junit,
            command_timeout=command_timeout or min(backend.DEFAULT_COMMAND_TIMEOUT, timeout),
        )
        returncode, output = _run_child(argv, work, timeout)
        if returncode == _EXIT_NO_TESTS:
            raise LabError(
                f"no checks were collected from {', '.join(map(str, paths))}",
                hint="testinfra files need test_* functions taking the `host` fixture",
            )
        if returncode not in (_EXIT_OK, _EXIT_FAILED, _EXIT_INTERRUPTED) or not report.exists():
            raise LabError(
                f"the checks could not run (pytest exited with {returncode}):\n{_tail(output)}"
            )
        outcomes = parse_report(report.read_text())
    return VerifyResult(
        returncode=returncode,
        outcomes=outcomes,
        junit=junit if junit is not None and junit.exists() else None,
        output=output,
    )
