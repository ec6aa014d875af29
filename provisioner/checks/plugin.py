"""pytest plugin for ``lab verify``: loaded with ``-p provisioner.checks.plugin``.

* registers the ``lab-paramiko`` testinfra backend (pinned host keys);
* ``--lab-expectations PATH``: the lab's expectations file, offered to checks as the
  ``lab_expectations`` fixture, and ``lab_node`` (the expectations of the node the
  ``host`` fixture points at). The user's own testinfra files may use both;
* ``--lab-report PATH``: writes every check's outcome as JSON for
  :func:`provisioner.checks.runner.run_verify`, and tags each test case with the
  node it ran on (a ``node`` property in JUnit XML).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import testinfra.backend

from provisioner.checks import backend
from provisioner.checks.expectations import Expectations, NodeExpectation, load_expectations
from provisioner.errors import LabError

# testinfra resolves connection names through this table; registering a new name
# (rather than replacing "paramiko") means a run without this plugin fails loudly
# instead of silently falling back to a backend that accepts any host key.
testinfra.backend.BACKENDS.setdefault(backend.NAME, backend.CLASS_PATH)

REPORT_FORMAT = 1
_MESSAGE_LINES = 30
_HOST_PARAM = "_testinfra_host"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lab", "lab verify")
    group.addoption(
        "--lab-expectations",
        metavar="PATH",
        help="JSON file with the lab's expected nodes, etcd size and metadata",
    )
    group.addoption(
        "--lab-report",
        metavar="PATH",
        help="write each check's outcome as JSON to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("lab_report")
    if path:
        config.pluginmanager.register(Recorder(Path(path)), "lab-report")


def node_of(item: pytest.Item) -> str | None:
    """The testinfra host alias a test case runs against, if it uses ``host``."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or _HOST_PARAM not in callspec.params:
        return None
    name: str = callspec.params[_HOST_PARAM].backend.get_hostname()
    return name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        node = node_of(item)
        if node is not None:
            item.user_properties.append(("node", node))


@pytest.fixture(scope="session")
def lab_expectations(pytestconfig: pytest.Config) -> Expectations:
    """The lab's expectations file (``--lab-expectations``)."""
    path = pytestconfig.getoption("lab_expectations")
    if not path:
        raise pytest.UsageError("the lab's checks need --lab-expectations=PATH")
    return load_expectations(Path(path))


@pytest.fixture(scope="module")
def lab_node(host: Any, lab_expectations: Expectations) -> NodeExpectation:
    """What the expectations say about the node ``host`` points at."""
    return lab_expectations.node(host.backend.get_hostname())


def _type_name(exc_type: type[BaseException]) -> str:
    if exc_type.__module__ == "builtins":
        return exc_type.__qualname__
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def _hint(exc: BaseException) -> str:
    return (exc.hint or "") if isinstance(exc, LabError) else ""


def _message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    if len(lines) > _MESSAGE_LINES:
        lines = [*lines[:_MESSAGE_LINES], "..."]
    return "\n".join(lines)


class Recorder:
    """Collects one outcome per test case (and per failed collection) and writes JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcomes: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        previous = self.outcomes.get(item.nodeid)
        if report.when == "teardown" and (
            report.passed or (previous and previous["outcome"] in ("failed", "error"))
        ):
            return report  # a teardown error must not hide the check's own outcome
        excinfo = call.excinfo
        self.outcomes[item.nodeid] = {
            "nodeid": item.nodeid,
            "node": node_of(item),
            "check": getattr(item, "originalname", item.name),
            "outcome": "error" if report.failed and report.when != "call" else report.outcome,
            "message": _message(excinfo.value) if excinfo else "",
            "hint": _hint(excinfo.value) if excinfo else "",
            "error_type": _type_name(excinfo.type) if excinfo else "",
            "duration": round(report.duration, 3),
        }
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.outcomes[report.nodeid] = {
                "nodeid": report.nodeid,
                "node": None,
                "check": report.nodeid,
                "outcome": "error",
                "message": _tail(report.longreprtext),
                "hint": "",
                "error_type": "CollectError",
                "duration": 0.0,
            }

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG002
        payload = {
            "format": REPORT_FORMAT,
            "exitstatus": int(exitstatus),
            "outcomes": list(self.outcomes.values()),
        }
        self.path.write_text(json.dumps(payload, indent=2) + "\n")


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-_MESSAGE_LINES:])
