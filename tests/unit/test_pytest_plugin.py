"""The pytest plugin's options, errors and fixtures, in pytest run inside pytest (pytester).

The library under the plugin (snapshots, lab up, lab verify, lab logs) is faked: the
inner runs are in this process, so the fakes reach them. A real lab uses the
fixture in the VM tier.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import provisioner.lifecycle
import provisioner.operate
from provisioner.errors import ConfigError, LabError
from provisioner.lifecycle import fastpath, snapshots
from provisioner.lifecycle.snapshots import LabSnapshot
from provisioner.remote.runner import CommandResult
from provisioner.session import CommandError, LabLocation, LabSession, find_lab
from tests.unit.test_output_json import FAILED, PASSED, snapshot_result, up_result

pytestmark = pytest.mark.unit

PLUGIN = ("-p", "provisioner.pytest_plugin")
USAGE_ERROR = 4

TWO_TESTS = """
def test_one(running_lab):
    assert running_lab.nodes == ["core-01", "core-02", "core-03"]

def test_two(running_lab):
    pass
"""


@pytest.fixture(autouse=True)
def plugin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner runs load the plugin by -p, not also from an installed entry point."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


class FakeLab:
    """Counts what the plugin asks of the library; the lab has the snapshot or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, has: bool, verify: Any = PASSED) -> None:
        self.calls: list[str] = []
        self.has = has
        monkeypatch.setattr(snapshots, "find", self.find)
        monkeypatch.setattr(snapshots, "restore", self.restore)
        monkeypatch.setattr(snapshots, "save", self.save)
        monkeypatch.setattr(fastpath, "up", self.up)
        monkeypatch.setattr(fastpath, "run_verify", lambda config: self.note("verify", verify))
        monkeypatch.setattr(provisioner.lifecycle, "collect_logs", self.collect_logs)

    def note(self, what: str, result: Any) -> Any:
        self.calls.append(what)
        return result

    def find(self, config: Any, name: str, backends: Any = None) -> LabSnapshot | None:
        if not self.has:
            return None
        return LabSnapshot(name, 1, tuple(n.name for n in config.nodes), ())

    def restore(self, config: Any, name: str, progress: Any, backends: Any = None) -> Any:
        return self.note(f"restore {name}", snapshot_result(name))

    def save(self, config: Any, name: str, progress: Any, backends: Any = None) -> Any:
        self.has = True
        return self.note(f"save {name}", snapshot_result(name))

    def up(self, config: Any, progress: Any, **kw: Any) -> Any:
        return self.note("up", up_result())

    def collect_logs(self, config: Any, into: Path | None = None) -> Path:
        assert into is not None
        self.note(f"logs {into.relative_to(config.directory)}", into)
        return into


def lab_dir(pytester: pytest.Pytester) -> Path:
    (pytester.path / "lab.yaml").write_text("num_instances: 3\n")
    return pytester.path


# --- options and errors -----------------------------------------------------------------


def test_the_options_are_in_pytest_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*PLUGIN, "--help")
    for option in ("--lab-dir", "--lab-config", "--lab-snapshot", "--lab-restore", "--lab-logs"):
        result.stdout.fnmatch_lines([f"*{option}*"])


def test_without_a_lab_directory_each_test_errors_saying_where_it_looked(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(TWO_TESTS)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [f"*lab: no lab directory: no lab.yaml in {pytester.path}*", "*hint: pass --lab-dir DIR*"]
    )


def test_a_run_that_asks_for_no_lab_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--lab-dir", "nowhere"), "*lab: *nowhere: lab directory not found*"),
        (("--lab-dir", "empty"), "*lab: *empty: not a lab directory: it has neither lab.yaml*"),
        (("--lab-config", "missing.yaml"), "*lab: *missing.yaml: lab config file not found*"),
        (("--lab-snapshot", "no good"), "*lab: snapshot name 'no good' is not valid*"),
        (("--lab-restore", "always"), "*invalid choice: 'always'*"),
    ],
)
def test_options_that_name_no_lab_are_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    (pytester.path / "empty").mkdir()
    pytester.makepyfile(TWO_TESTS)
    result = pytester.runpytest(*PLUGIN, *args)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_restore_mode_in_the_ini_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlab_restore = sometimes\n")
    result = pytester.runpytest(*PLUGIN)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(["*lab_restore = 'sometimes' is not one of module, never*"])


def test_a_lab_that_fails_verify_errors_every_test_naming_the_checks_and_saves_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir(pytester)
    fake = FakeLab(monkeypatch, has=False, verify=FAILED)
    pytester.makepyfile(TWO_TESTS)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*lab: lab verify: 2 of 3 checks failed: core-02 test_etcd_health (failed),"
            " collection test_mine (error)*",
            "*FAIL core-02 test_etcd_health*",
        ]
    )
    assert fake.calls == ["up", "verify"]  # once for the session, and no snapshot saved


# --- the fixtures -------------------------------------------------------------------------


def two_modules(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=TWO_TESTS, test_b=TWO_TESTS)


def test_a_boot_is_verified_and_saved_then_each_later_module_restores(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir(pytester)
    fake = FakeLab(monkeypatch, has=False)
    two_modules(pytester)
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=4)
    assert fake.calls == ["up", "verify", "save clean", "restore clean"]


def test_an_existing_snapshot_is_restored_and_verified(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir(pytester)
    fake = FakeLab(monkeypatch, has=True)
    two_modules(pytester)
    pytester.runpytest(*PLUGIN, "--lab-snapshot", "ci-base").assert_outcomes(passed=4)
    assert fake.calls == ["restore ci-base", "verify", "restore ci-base"]


def test_restore_never_leaves_the_lab_as_the_last_module_left_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir(pytester)
    fake = FakeLab(monkeypatch, has=True)
    two_modules(pytester)
    pytester.runpytest(*PLUGIN, "--lab-restore", "never").assert_outcomes(passed=4)
    assert fake.calls == ["restore clean", "verify"]


def test_the_lab_is_found_from_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    labs = pytester.path / "labs" / "ci"
    labs.mkdir(parents=True)
    (labs / "lab.yaml").write_text("num_instances: 1\n")
    pytester.makeini("[pytest]\nlab_dir = labs/ci\nlab_snapshot = base\n")
    fake = FakeLab(monkeypatch, has=True)
    pytester.makepyfile(
        "def test_it(lab_session):\n"
        "    assert lab_session.nodes == ['core-01']\n"
        f"    assert str(lab_session.directory) == {str(labs)!r}\n"
    )
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    assert fake.calls == ["restore base", "verify"]


def test_a_failed_test_gets_the_logs_beside_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_dir(pytester)
    fake = FakeLab(monkeypatch, has=True)
    pytester.makepyfile(
        test_drill="""
def test_passes(running_lab):
    pass

def test_fails(running_lab):
    assert False, "the unit did not move"

def test_fails_without_the_lab():
    assert False
"""
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, failed=2)
    logs = [c for c in fake.calls if c.startswith("logs")]
    assert logs == ["logs .lab/logs/failed-test_drill.py_test_fails"]
    result.stdout.fnmatch_lines(
        [
            "*- lab logs -*",
            "journals and consoles saved in */.lab/logs/failed-test_drill.py_test_fails",
        ]
    )


# --- LabSession and find_lab, without pytest around them ----------------------------------


def test_find_lab(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "lab.yaml").write_text("{}\n")
    assert find_lab(None, None, [tmp_path / "a", tmp_path / "b"]) == LabLocation(tmp_path / "b")
    config = tmp_path / "a" / "other.yaml"
    config.write_text("{}\n")
    assert find_lab(None, config) == LabLocation(tmp_path / "a", config)
    assert find_lab(tmp_path / "a", config) == LabLocation(tmp_path / "a", config)
    (tmp_path / "c" / ".lab").mkdir(parents=True)
    assert find_lab(tmp_path / "c", None) == LabLocation(tmp_path / "c")
    with pytest.raises(ConfigError, match="not a lab directory"):
        find_lab(tmp_path / "a", None)
    with pytest.raises(ConfigError, match=r"no lab directory: no lab\.yaml in"):
        find_lab(None, None, [tmp_path / "a"])


def session(tmp_path: Path) -> LabSession:
    (tmp_path / "lab.yaml").write_text("num_instances: 3\n")
    return LabSession.load(LabLocation(tmp_path), "clean")


def test_exec_returns_results_raises_on_errors_and_checks_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = session(tmp_path)
    seen: list[tuple[list[str], list[str]]] = []

    def exec_on(config: Any, names: Any, argv: Any) -> dict[str, Any]:
        seen.append((list(names), list(argv)))
        if argv[0] == "unreachable":
            return {name: LabError(f"{name}: no route") for name in names}
        return {
            name: CommandResult(1 if argv[0] == "false" else 0, "out\n", "err\n") for name in names
        }

    monkeypatch.setattr(provisioner.operate, "exec_on", exec_on)
    assert lab.exec("core-01", "sh", "-c", "a | b") == CommandResult(0, "out\n", "err\n")
    assert seen[-1] == (["core-01"], ["sh", "-c", "a | b"])
    assert lab.exec("core-02", "false").rc == 1
    with pytest.raises(CommandError, match="core-02: false exited 1\n  err"):
        lab.exec("core-02", "false", check=True)
    with pytest.raises(LabError, match="core-01: no route"):
        lab.exec("core-01", "unreachable")
    assert set(lab.exec_all("true")) == {"core-01", "core-02", "core-03"}


def test_start_unit_needs_a_file(tmp_path: Path) -> None:
    lab = session(tmp_path)
    with pytest.raises(ConfigError, match="unit file not found"):
        lab.start_unit(tmp_path / "absent.service")


def test_the_readme_example_compiles_and_calls_only_what_a_lab_session_has() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    compile(example, "README example", "exec")
    assert "running_lab" in example
    called = set(re.findall(r"running_lab\.(\w+)\(", example))
    assert called == {"start_unit", "fleetctl", "kill", "etcdctl"}
    assert all(callable(getattr(LabSession, name)) for name in called)


def test_the_plugin_is_a_pytest11_entry_point_of_the_package() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["pytest11"]
    assert declared == {"provisioner.pytest_plugin": "provisioner.pytest_plugin"}
