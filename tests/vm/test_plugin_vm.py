"""lab's pytest plugin as a user runs it, against the session's real lab: two test modules
that each break the lab (a node killed, a key written, a unit started), run by pytest in
a child process with ``--lab-dir``; the second module gets the lab back from the
session's snapshot, unbroken, before it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.vm.conftest import Lab

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

SNAPSHOT = "plugin-vm"

BREAKS = """
from pathlib import Path


def test_{n}_finds_the_lab_whole_then_breaks_it(running_lab, tmp_path):
    running = [s.name for s in running_lab.status() if s.state == "running"]
    assert running == ["core-01", "core-02", "core-03"], running
    got = running_lab.etcdctl("get", "--print-value-only", "/plugin/broken-by").stdout
    assert got.strip() == "", f"a key from another module survived the restore: {{got}}"
    units = running_lab.fleetctl("list-unit-files", "--no-legend", check=True).stdout
    assert "plugin-{other}.service" not in units, units

    running_lab.etcdctl("put", "/plugin/broken-by", "{n}", check=True)
    unit = Path(tmp_path) / "plugin-{n}.service"
    unit.write_text("[Service]\\nExecStart=/bin/sleep 100000\\n")
    running_lab.start_unit(unit)
    running_lab.kill("core-03")
    assert running_lab.etcdctl("get", "--print-value-only", "/plugin/broken-by",
                               check=True).stdout.strip() == "{n}"
"""


def test_each_module_gets_the_lab_back_from_the_snapshot(lab: Lab, tmp_path: Path) -> None:
    suite = tmp_path / "acceptance"
    suite.mkdir()
    (suite / "test_first.py").write_text(BREAKS.format(n="first", other="second"))
    (suite / "test_second.py").write_text(BREAKS.format(n="second", other="first"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "provisioner.pytest_plugin", "-v",
             "-p", "no:cacheprovider", "--rootdir", str(suite), str(suite),
             "--lab-dir", str(lab.directory), "--lab-snapshot", SNAPSHOT],
            capture_output=True, text=True, timeout=1700, check=False, cwd=suite,
        )  # fmt: skip
        assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
        assert "2 passed" in run.stdout, run.stdout[-3000:]
    finally:
        # the last module left the lab broken: back to the snapshot for the tests after this
        lab.run("snapshot", "restore", SNAPSHOT, check=False, timeout=900)
        lab.run("snapshot", "rm", SNAPSHOT, check=False)
    assert [n["state"] for n in lab.status()["nodes"]] == ["running"] * 3
