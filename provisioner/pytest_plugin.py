"""The pytest plugin for acceptance tests against a lab (installed with lab: ``pytest11``).

Fixtures:

- ``running_lab`` (per module): a running lab that passed ``lab verify``, brought
  back to the session's snapshot before each module after the first (so a module
  that kills a node or fills etcd spoils nothing for the next);
- ``lab_session`` (per session): the same lab without the restores.

Both are a :class:`provisioner.session.LabSession`: ``exec``, ``etcdctl``,
``fleetctl``, ``start_unit``, ``kill``/``stop``/``start``, ``status``, ``verify``,
``restore`` (on demand), ``collect_logs``. The lab is brought up once per
session with ``lab up --snapshot NAME``'s fast path (restore NAME if the lab has
it; else boot, verify, save NAME) and verified; it is left running at the end
(``lab destroy`` is the job's). A failed test's journals and consoles are saved
in ``<lab>/.lab/logs/failed-<test>/`` (``--lab-logs DIR`` for elsewhere).

The lab is found from ``--lab-dir``/``--lab-config`` (or the ini keys ``lab_dir``,
``lab_config``), else a ``lab.yaml`` in the directory pytest was started in or in
its rootdir. Nothing happens unless a test asks for a fixture, so the plugin is
harmless in every other pytest run.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from provisioner.errors import LabError
from provisioner.lifecycle import snapshots
from provisioner.lifecycle.fastpath import VerifyError
from provisioner.session import LabLocation, LabSession, find_lab

DEFAULT_SNAPSHOT = "clean"
RESTORE_MODES = ("module", "never")
ACCELS = ("auto", "kvm", "tcg")
_LOG_NAME_LENGTH = 120


@dataclass
class PluginState:
    """The options as given, and what the session has done with the lab."""

    directory: Path | None
    config_file: Path | None
    search_from: tuple[Path, ...]
    snapshot: str
    restore: str
    accel: str
    logs: Path | None
    dirty: bool = False  # a module has used the lab since it was last brought up or restored


STATE = pytest.StashKey[PluginState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lab", "acceptance tests against a lab (lab's pytest plugin)")
    group.addoption("--lab-dir", help="The lab directory (holds lab.yaml and .lab/).")
    group.addoption("--lab-config", help="The lab's config file (default: DIR/lab.yaml).")
    group.addoption(
        "--lab-snapshot",
        help=f"The snapshot the lab comes up from and goes back to (default {DEFAULT_SNAPSHOT}).",
    )
    group.addoption(
        "--lab-restore",
        choices=RESTORE_MODES,
        help="module: restore the snapshot before each module after the first (default); "
        "never: only on demand, running_lab.restore().",
    )
    group.addoption("--lab-accel", choices=ACCELS, help="For a boot: auto (default), kvm, tcg.")
    group.addoption("--lab-logs", help="Where a failed test's logs go (default: <lab>/.lab/logs).")
    parser.addini("lab_dir", "The lab directory, relative to the ini file.", type="string")
    parser.addini("lab_config", "The lab's config file, relative to the ini file.", type="string")
    parser.addini("lab_snapshot", "The session's snapshot.", type="string")
    parser.addini("lab_restore", "module or never.", type="string")
    parser.addini(
        "lab_logs", "Where a failed test's logs go, relative to the ini file.", type="string"
    )


def _path(config: pytest.Config, option: str, ini: str) -> Path | None:
    """An option (relative to where pytest started) or an ini key (relative to the ini file)."""
    given = config.getoption(option)
    if given:
        return config.invocation_params.dir / Path(given).expanduser()
    value = str(config.getini(ini) or "")
    if value:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / Path(value).expanduser()
    return None


def _setting(config: pytest.Config, option: str, ini: str, default: str) -> str:
    return str(config.getoption(option) or config.getini(ini) or default)


def pytest_configure(config: pytest.Config) -> None:
    state = PluginState(
        directory=_path(config, "--lab-dir", "lab_dir"),
        config_file=_path(config, "--lab-config", "lab_config"),
        search_from=tuple(dict.fromkeys((config.invocation_params.dir, config.rootpath))),
        snapshot=_setting(config, "--lab-snapshot", "lab_snapshot", DEFAULT_SNAPSHOT),
        restore=_setting(config, "--lab-restore", "lab_restore", RESTORE_MODES[0]),
        accel=str(config.getoption("--lab-accel") or "auto"),
        logs=_path(config, "--lab-logs", "lab_logs"),
    )
    if state.restore not in RESTORE_MODES:
        raise pytest.UsageError(
            f"lab: lab_restore = {state.restore!r} is not one of {', '.join(RESTORE_MODES)}"
        )
    try:  # what the user gave is checked now, before a long session; finding a lab waits
        snapshots.check_name(state.snapshot)
        if state.directory is not None or state.config_file is not None:
            find_lab(state.directory, state.config_file)
    except LabError as exc:
        raise pytest.UsageError(_text(exc)) from None
    config.stash[STATE] = state


def _text(exc: LabError) -> str:
    return f"lab: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else "")


def _fail(exc: LabError, extra: str = "") -> NoReturn:
    pytest.fail(_text(exc) + (f"\n{extra}" if extra else ""), pytrace=False)


@pytest.fixture(scope="session")
def lab_session(pytestconfig: pytest.Config) -> LabSession:
    """The session's lab: up (or restored from the session's snapshot) and verified."""
    state = pytestconfig.stash[STATE]
    try:  # a failure here fails once: pytest hands its error to every test that asks
        where: LabLocation = find_lab(state.directory, state.config_file, state.search_from)
        session = LabSession.load(where, state.snapshot, accel=state.accel)
        session.bring_up()
    except VerifyError as exc:
        from provisioner.checks.runner import render_report

        _fail(exc, render_report(exc.result))
    except LabError as exc:
        _fail(exc)
    state.dirty = False
    return session


@pytest.fixture(scope="module")
def running_lab(lab_session: LabSession, pytestconfig: pytest.Config) -> Iterator[LabSession]:
    """The session's lab, brought back to its snapshot first unless no module used it yet."""
    state = pytestconfig.stash[STATE]
    if state.dirty and state.restore == "module":
        try:
            lab_session.restore()
        except LabError as exc:
            _fail(exc)
    yield lab_session
    state.dirty = True


def _log_dir_name(nodeid: str) -> str:
    return ("failed-" + re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_"))[:_LOG_NAME_LENGTH]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used the lab gets every node's journal and console saved."""
    report = yield
    if report.when != "call" or not report.failed:
        return report
    funcargs = getattr(item, "funcargs", {})
    session = next((v for v in funcargs.values() if isinstance(v, LabSession)), None)
    if session is None:
        return report
    state = item.config.stash[STATE]
    into = (state.logs or session.logs) / _log_dir_name(item.nodeid)
    try:
        where = f"journals and consoles saved in {session.collect_logs(into)}"
    except LabError as exc:
        where = f"logs not saved: {exc.message}"
    report.sections.append(("lab logs", where))
    return report
