"""``lab verify`` end to end on loopback: a real sshd, a real etcd 3.4 and real pytest runs.

The loopback host plays node ``core-01`` (logging in as root); the etcd checks run
on it over the pinned SSH backend, against a single etcd member.
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from provisioner.checks.expectations import Expectations, NodeExpectation, render_expectations
from provisioner.checks.runner import VerifyResult, run_verify
from provisioner.errors import LabError, RemoteError, WaitTimeout
from provisioner.remote.sshconfig import HostSpec, write_ssh_config
from tests.etcd_support import running_etcd
from tests.loopback import free_port
from tests.sshd_support import keygen, loopback_sshd

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 120.0
NODE = "core-01"


@dataclass(frozen=True)
class Sshd:
    port: int
    client_key: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    other_public_key: str  # a key the node does not have
    log: Path

    def accepted_logins(self) -> int:
        return self.log.read_text().count("Accepted publickey")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    work = tmp_path_factory.mktemp("sshd")
    keygen(work / "other_ed25519")
    with loopback_sshd(work) as running:

        def public(name: str) -> str:
            return " ".join((work / f"{name}.pub").read_text().split()[:2])

        yield Sshd(
            running.port,
            running.client_key,
            public("host_ed25519"),
            public("other_ed25519"),
            running.log,
        )


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single etcd 3.4 member on loopback, with the v2 API on as a lab's members
    have it (etcd2.service's ETCD_ENABLE_V2); yields its client URL."""
    with running_etcd(tmp_path_factory.mktemp("etcd"), NODE, "--enable-v2") as member:
        yield member.client_url


@dataclass(frozen=True)
class Lab:
    """The files a lab hands to ``run_verify`` for the loopback node."""

    dir: Path
    host: HostSpec
    ssh_config: Path
    known_hosts: Path
    expectations: Expectations
    marker: Path  # the user's own check creates it on the node
    user_checks: Path

    def write_known_hosts(self, key: str) -> None:
        self.known_hosts.write_text(f"[127.0.0.1]:{self.host.port} {key}\n")

    def verify(self, expectations: Expectations | None = None, **kwargs: object) -> VerifyResult:
        path = self.dir / "expectations.json"
        path.write_text(render_expectations(expectations or self.expectations))
        options: dict[str, object] = {
            "junit": None,
            "extra_paths": [self.user_checks],
            "timeout": RUN_TIMEOUT,
            "only": ["etcd"],
            **kwargs,
        }
        return run_verify([self.host], path, self.ssh_config, **options)  # type: ignore[arg-type]


USER_CHECKS = """
import json


def test_user_check_runs_on_the_node(host, lab_node):
    assert lab_node.name == "core-01"
    assert host.run("touch " + json.loads({marker!r})).rc == 0
"""


@pytest.fixture
def lab(tmp_path: Path, sshd: Sshd, etcd: str) -> Lab:
    host = HostSpec(NODE, "127.0.0.1", sshd.port, "root")
    known_hosts = tmp_path / "known_hosts"
    marker = tmp_path / "user-check-ran"
    user_checks = tmp_path / "mine" / "test_mine.py"
    user_checks.parent.mkdir()
    user_checks.write_text(USER_CHECKS.format(marker=json.dumps(str(marker))))
    node = NodeExpectation(NODE, "127.0.0.1", "core", {}, (etcd,), ())
    created = Lab(
        dir=tmp_path,
        host=host,
        ssh_config=write_ssh_config(tmp_path / "ssh_config", [host], sshd.client_key, known_hosts),
        known_hosts=known_hosts,
        expectations=Expectations(lab="loopback", etcd_members=1, nodes=(node,)),
        marker=marker,
        user_checks=user_checks,
    )
    created.write_known_hosts(sshd.host_public_key)
    return created


def junit_cases(path: Path) -> list[ET.Element]:
    return list(ET.parse(path).getroot().iter("testcase"))


def test_passing_checks_pass_and_write_junit(lab: Lab) -> None:
    junit = lab.dir / "out" / "junit.xml"
    result = lab.verify(junit=junit)
    assert result.ok, result.output
    assert sorted(o.check for o in result.outcomes) == [
        "test_every_member_is_healthy",
        "test_local_endpoint_is_healthy",
        "test_member_count",
        "test_node_is_a_member",
        "test_one_leader",
        "test_user_check_runs_on_the_node",
        "test_v2_api_answers_on_loopback",
    ]
    assert {o.node for o in result.outcomes} == {NODE}
    assert lab.marker.exists()  # the user's check really ran on the node
    assert result.junit == junit
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("name") == "lab-verify"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("7", "0", "0")
    for case in junit_cases(junit):
        assert case.find("properties/property[@name='node']") is not None
    result.raise_for_failures()


def test_a_wrong_member_count_fails_and_is_reported(lab: Lab) -> None:
    junit = lab.dir / "junit.xml"
    result = lab.verify(replace(lab.expectations, etcd_members=3), junit=junit)
    assert not result.ok
    assert result.returncode == 1
    failed = {o.check: o for o in result.failures}
    assert set(failed) == {"test_member_count", "test_one_leader"}
    assert failed["test_member_count"].message.startswith(
        "expected 3 started etcd members, found 1: "
    )
    assert "1 etcd members answered, expected 3" in failed["test_one_leader"].message
    assert failed["test_member_count"].node == NODE
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "2"
    with pytest.raises(LabError, match=f"2 of 7 checks failed on {NODE}"):
        result.raise_for_failures()


def test_a_worker_skips_only_the_member_check(lab: Lab) -> None:
    worker = replace(lab.expectations.nodes[0], role="worker")
    result = lab.verify(replace(lab.expectations, nodes=(worker,)))
    assert result.ok, result.output
    (skipped,) = [o for o in result.outcomes if o.outcome == "skipped"]
    assert skipped.check == "test_node_is_a_member"
    assert skipped.message == f"{NODE} is a worker and runs no etcd member"
    assert sum(1 for o in result.outcomes if o.outcome == "passed") == 6


def test_an_unreachable_member_fails_the_health_check(lab: Lab) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    node = replace(lab.expectations.nodes[0], etcd_endpoints=(dead,))
    result = lab.verify(replace(lab.expectations, nodes=(node,)), extra_paths=[])
    failed = {o.check: o for o in result.failures}
    assert set(failed) == {
        "test_every_member_is_healthy",
        "test_local_endpoint_is_healthy",
        "test_member_count",
        "test_node_is_a_member",
        "test_one_leader",
        "test_v2_api_answers_on_loopback",
    }
    local = failed.pop("test_local_endpoint_is_healthy")  # etcdctl tells: unhealthy
    assert (local.error_type, dead.split("//")[1] in local.message) == ("Failed", True)
    assert all(o.error_type == "provisioner.errors.RemoteError" for o in failed.values())
    assert "etcdctl" in failed["test_member_count"].message


@pytest.mark.parametrize("known", ["changed", "unknown"])
def test_a_host_key_not_pinned_is_refused_before_anything_runs(
    lab: Lab, sshd: Sshd, known: str
) -> None:
    if known == "changed":
        lab.write_known_hosts(sshd.other_public_key)
    else:  # known_hosts pins a key for another port only
        lab.known_hosts.write_text(f"[127.0.0.1]:{free_port()} {sshd.host_public_key}\n")
    logins_before = sshd.accepted_logins()
    junit = lab.dir / "junit.xml"
    result = lab.verify(junit=junit)
    assert not result.ok
    assert result.refused_nodes == (NODE,)
    assert len(result.outcomes) == 7
    assert all(o.host_key_refused for o in result.outcomes), result.output
    assert "refusing to connect" in result.outcomes[0].message
    assert not lab.marker.exists()  # the user's check never ran
    assert sshd.accepted_logins() == logins_before  # never even authenticated
    assert junit.exists()
    with pytest.raises(RemoteError, match="refusing to connect"):
        result.raise_for_failures()


def test_a_slow_command_hits_its_deadline(lab: Lab) -> None:
    lab.user_checks.write_text(
        "def test_slow(host):\n    host.run('sleep 3')\n",
    )
    started = time.monotonic()
    result = lab.verify(only=["etcd"], command_timeout=1)
    slow = next(o for o in result.outcomes if o.check == "test_slow")
    assert slow.outcome == "failed"
    assert slow.error_type == "provisioner.errors.WaitTimeout"
    assert "did not finish within 1s" in slow.message
    assert time.monotonic() - started < 30


def test_a_run_past_its_deadline_is_stopped(lab: Lab) -> None:
    lab.user_checks.write_text("import time\n\n\ndef test_hangs():\n    time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="did not finish within 3s"):
        lab.verify(timeout=3)
    assert time.monotonic() - started < 20


def test_a_broken_user_file_is_reported(lab: Lab) -> None:
    lab.user_checks.write_text("def test_broken(:\n")
    result = lab.verify()
    (broken,) = [o for o in result.outcomes if o.outcome == "error"]
    assert broken.node is None
    assert "SyntaxError" in broken.message
    assert result.returncode == 2


def test_openssh_reads_the_same_ssh_config(lab: Lab, sshd: Sshd) -> None:
    """`lab ssh-config` output works with real OpenSSH and pins host keys there too."""

    def ssh() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", NODE, "echo", "hello"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = ssh()
    assert (ok.returncode, ok.stdout) == (0, "hello\n"), ok.stderr
    lab.write_known_hosts(sshd.other_public_key)
    refused = ssh()
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr
    assert lab.known_hosts.read_text().split()[-1] == sshd.other_public_key.split()[-1]
