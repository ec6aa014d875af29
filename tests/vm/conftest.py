"""One real 3-node lab for the VM tier, brought up by the real `lab up` command.

The lab carries the seed's metadata (web/rack1, web/rack2, db/rack3) and a short
fleet ``agent_ttl`` so fault drills finish quickly. It lives under
``/var/tmp/lab-vm-tests`` in directories only their owner can enter (QEMU reads
and writes only storage pool volumes, never the lab directory) and is destroyed
at the end of the session; the logs directory is
printed whenever something fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

LAB_ROOT = Path(os.environ.get("LAB_VM_TEST_ROOT", "/var/tmp/lab-vm-tests"))
AGENT_TTL = 10
SEED_METADATA = {
    "core-01": "compute=web,rack=rack1",
    "core-02": "compute=web,rack=rack2",
    "core-03": "compute=db,rack=rack3",
}
# what fleet lists: the seed's metadata and each node's role (all three are core nodes)
FLEET_METADATA = {name: f"{meta},role=core" for name, meta in SEED_METADATA.items()}
UP_TIMEOUT = 2400.0
# Saved once the session lab is up: a test that breaks the lab (a node powered off)
# gets it back with `lab snapshot restore` in seconds instead of a boot
SESSION_SNAPSHOT = "vm-session"


@dataclass
class Lab:
    """The lab under test and a way to run `lab` verbs in it."""

    directory: Path
    name: str

    @property
    def logs(self) -> Path:
        return self.directory / ".lab" / "logs"

    def run(
        self, *args: str, timeout: float = 900.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "provisioner.cli", "-C", str(self.directory), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"`lab {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
                f"logs: {self.logs}"
            )
        return result

    def has_snapshot(self, name: str) -> bool:
        listed = json.loads(self.run("snapshot", "list", "--json").stdout)
        return any(snap["name"] == name and not snap["missing"] for snap in listed)

    def restore_session(self) -> bool:
        """The lab as it was when the session brought it up; False if no snapshot of it
        exists (a lab given by LAB_VM_EXISTING), and the caller mends the lab itself."""
        if not self.has_snapshot(SESSION_SNAPSHOT):
            return False
        self.run("snapshot", "restore", SESSION_SNAPSHOT, timeout=900)
        return True

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("status", "--json").stdout)
        return data

    def node_status(self, name: str) -> dict[str, Any]:
        for node in self.status()["nodes"]:
            if node["name"] == name:
                return dict(node)
        raise AssertionError(f"{name} missing from lab status")

    def wait_for(self, what: str, check: Any, timeout: float, interval: float = 3.0) -> Any:
        """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(
            f"gave up after {timeout:.0f}s waiting for {what}; last: {last!r}; logs: {self.logs}"
        )


# The session lab's last test destroys it: whatever file a test is in, it runs before.
LAST = "test_destroy_leaves_nothing"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.name == LAST)  # stable: the rest keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed check saves every node's journal and console as they were, for that check."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    lab = getattr(item, "funcargs", {}).get("lab")
    if report.when != "call" or not report.failed or not isinstance(lab, Lab):
        return
    into = lab.logs / f"failed-{item.name}"[:120]
    saved = lab.run("logs", "--into", str(into), check=False, timeout=300)
    where = saved.stdout.strip() or f"not saved: {saved.stderr.strip()}"
    report.sections.append(("lab logs", where))
    sys.stderr.write(f"\n{item.name}: {where}\n")


def new_lab_dir() -> Path:
    """A lab directory like one in a home directory only its owner can enter."""
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    LAB_ROOT.chmod(0o700)
    directory = LAB_ROOT / f"vm-{uuid.uuid4().hex[:6]}"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    existing = os.environ.get("LAB_VM_EXISTING")
    if existing:
        # A lab that is already up (same settings as below): used as is, never destroyed.
        directory = Path(existing).resolve()
        yield Lab(directory=directory, name=directory.name)
        return
    directory = new_lab_dir()
    settings = {
        "num_instances": 3,
        "agent_ttl": f"{AGENT_TTL}s",
        "nodes": {name: {"metadata": meta} for name, meta in SEED_METADATA.items()},
    }
    (directory / "lab.yaml").write_text(yaml.safe_dump(settings))
    lab = Lab(directory=directory, name=directory.name)
    try:
        result = lab.run("up", timeout=UP_TIMEOUT)
        sys.stderr.write(result.stderr[-4000:])
        lab.run("snapshot", "save", SESSION_SNAPSHOT, timeout=600)
        yield lab
    finally:
        destroyed = lab.run("destroy", check=False, timeout=600)
        if destroyed.returncode != 0:
            sys.stderr.write(f"lab destroy failed: {destroyed.stderr}\n")
        logs = lab.logs
        if logs.exists():
            sys.stderr.write(f"\nlab logs kept in {logs}\n")
        shutil.rmtree(directory / ".vagrant", ignore_errors=True)
