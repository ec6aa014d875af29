"""The verify runner's pure parts: host URLs, the child's argv, the report and its summary."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra.backend

from provisioner.checks.runner import (
    CHECK_MODULES,
    HOST_KEY_ERROR,
    CheckOutcome,
    VerifyResult,
    check_paths,
    host_url,
    parse_report,
    pytest_argv,
    render_report,
)
from provisioner.errors import ConfigError, LabError, RemoteError
from provisioner.remote.sshconfig import HostSpec

SSH_CONFIG = Path("/labs/my lab,1/.lab/ssh_config")


def test_host_url_survives_testinfra_parsing() -> None:
    hosts = [HostSpec("core-01", "10.0.0.1"), HostSpec("core-02", "10.0.0.2")]
    joined = ",".join(host_url(h, SSH_CONFIG, 45) for h in hosts)
    # testinfra splits --hosts on commas before parsing each URL.
    parsed = [testinfra.backend.parse_hostspec(spec) for spec in joined.split(",")]
    assert [name for name, _ in parsed] == ["core-01", "core-02"]
    for _, kw in parsed:
        assert kw == {
            "connection": "lab-paramiko",
            "ssh_config": str(SSH_CONFIG),
            "read_timeout_sec": "45",
        }


def test_check_paths() -> None:
    assert [p.name for p in check_paths(None)] == [f"test_{m}.py" for m in CHECK_MODULES]
    assert all(p.is_file() for p in check_paths(None))
    assert [p.name for p in check_paths(["etcd"])] == ["test_etcd.py"]
    with pytest.raises(ConfigError, match="unknown check group"):
        check_paths(["etc"])
    with pytest.raises(ConfigError, match="no check group selected"):
        check_paths([])


def test_pytest_argv() -> None:
    argv = pytest_argv(
        [HostSpec("core-01", "10.0.0.1")],
        Path("/lab/expectations.json"),
        SSH_CONFIG,
        paths=[Path("/pkg/test_etcd.py"), Path("/mine/test_extra.py")],
        report=Path("/tmp/x/report.json"),
        inifile=Path("/tmp/x/pytest.ini"),
        junit=Path("/lab/junit.xml"),
        command_timeout=60,
    )
    assert argv[:3] == [sys.executable, "-m", "pytest"]
    assert argv[-2:] == ["/pkg/test_etcd.py", "/mine/test_extra.py"]
    pairs = list(itertools.pairwise(argv))
    assert ("-p", "testinfra.plugin") in pairs
    assert ("-p", "provisioner.checks.plugin") in pairs
    assert ("-c", "/tmp/x/pytest.ini") in pairs
    assert "--junitxml=/lab/junit.xml" in argv
    assert "--lab-expectations=/lab/expectations.json" in argv
    assert "--lab-report=/tmp/x/report.json" in argv
    assert any(a.startswith("--hosts=lab-paramiko://core-01?ssh_config=") for a in argv)
    without = pytest_argv(
        [HostSpec("core-01", "10.0.0.1")],
        Path("/e.json"),
        SSH_CONFIG,
        paths=[],
        report=Path("/r.json"),
        inifile=Path("/i/pytest.ini"),
        junit=None,
        command_timeout=60,
    )
    assert not any(a.startswith("--junitxml") for a in without)


def outcome(node: str | None, check: str, result: str, **extra: Any) -> dict[str, Any]:
    return {
        "nodeid": f"test_x.py::{check}[lab-paramiko://{node}]",
        "node": node,
        "check": check,
        "outcome": result,
        "message": extra.get("message", ""),
        "hint": extra.get("hint", ""),
        "error_type": extra.get("error_type", ""),
        "duration": 0.25,
    }


def report(*outcomes: dict[str, Any]) -> str:
    return json.dumps({"format": 1, "exitstatus": 1, "outcomes": list(outcomes)})


def test_parse_report() -> None:
    parsed = parse_report(
        report(
            outcome("core-01", "test_member_count", "passed"),
            outcome("core-02", "test_member_count", "failed", message="expected 3\nfound 1"),
        )
    )
    assert parsed[0] == CheckOutcome(
        nodeid="test_x.py::test_member_count[lab-paramiko://core-01]",
        node="core-01",
        check="test_member_count",
        outcome="passed",
        duration=0.25,
    )
    assert parsed[1].message == "expected 3\nfound 1"
    assert not parsed[1].ok


@pytest.mark.parametrize(
    "text",
    ["", "{}", report(outcome("core-01", "t", "maybe")), '{"outcomes": [{"node": null}]}'],
)
def test_unreadable_report(text: str) -> None:
    with pytest.raises(LabError, match="report is unreadable"):
        parse_report(text)


def result_of(*outcomes: dict[str, Any], returncode: int = 1) -> VerifyResult:
    return VerifyResult(
        returncode=returncode,
        outcomes=parse_report(report(*outcomes)),
        junit=Path("/lab/junit.xml"),
        output="",
    )


def test_all_passed_is_ok() -> None:
    result = result_of(
        outcome("core-01", "test_a", "passed"),
        outcome("core-01", "test_b", "skipped", message="worker"),
        returncode=0,
    )
    assert result.ok
    assert result.failures == ()
    result.raise_for_failures()
    assert render_report(result).splitlines() == [
        "ok   core-01 test_a",
        "skip core-01 test_b",
        "       worker",
        "2/2 checks passed",
    ]


def test_failures_are_summed_up() -> None:
    result = result_of(
        outcome("core-01", "test_a", "passed"),
        outcome("core-02", "test_a", "failed", message="expected 3 members, found 1"),
        outcome(
            None, "mine/test_bad.py", "error", message="SyntaxError", error_type="CollectError"
        ),
    )
    assert not result.ok
    assert [f.node for f in result.failures] == ["core-02", None]
    with pytest.raises(LabError, match="2 of 3 checks failed on collection, core-02") as caught:
        result.raise_for_failures()
    assert caught.value.hint is not None
    assert "/lab/junit.xml" in caught.value.hint
    lines = render_report(result).splitlines()
    assert "FAIL core-02 test_a" in lines
    assert "       expected 3 members, found 1" in lines
    assert "ERR  - mine/test_bad.py" in lines


def test_host_key_refusals_are_shown_once_per_node_and_raised() -> None:
    refused = {
        "message": "core-01: 127.0.0.1 offered host key ssh-ed25519 SHA256:x; refusing to connect",
        "hint": "re-read its console fingerprints",
        "error_type": HOST_KEY_ERROR,
    }
    result = result_of(
        outcome("core-01", "test_a", "failed", **refused),
        outcome("core-01", "test_b", "failed", **refused),
        outcome("core-02", "test_a", "passed"),
    )
    assert result.refused_nodes == ("core-01",)
    assert [line for line in render_report(result).splitlines() if "REFUSED" in line] == [
        f"REFUSED core-01: {refused['message'].removeprefix('core-01: ')}"
    ]
    with pytest.raises(RemoteError, match="refusing to connect") as caught:
        result.raise_for_failures()
    assert caught.value.hint == "re-read its console fingerprints"


def test_a_nonzero_exit_is_not_ok_even_without_failures() -> None:
    assert not result_of(outcome("core-01", "test_a", "passed"), returncode=2).ok
