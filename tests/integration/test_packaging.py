"""An installed `lab` (a wheel in a fresh virtualenv, no checkout) finds its data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(
    *argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_ships_templates_boxes_and_vagrantfile(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT)
    (wheel,) = wheels.glob("lab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.namelist()
    # the product only: benchmark and test harness code stays in the checkout
    assert not [n for n in shipped if n.split("/")[0] in ("benchmarks", "tests", "scripts")]
    assert "provisioner/progress.py" in shipped
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in shipped if n.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    assert "[pytest11]\nprovisioner.pytest_plugin = provisioner.pytest_plugin" in declared
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    # The dependencies come from the test's own environment on PYTHONPATH, which
    # does not process .pth files, so the checkout's editable install stays out.
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    env = {**os.environ, "PYTHONPATH": deps}

    where = run(
        venv / "bin" / "python",
        "-c",
        "import provisioner.resources as r; print(r.data_root()); print(r.boxes_dir())",
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    # pytest finds the plugin by its entry point: its options are in pytest's help
    helped = run(venv / "bin" / "python", "-m", "pytest", "--help", cwd=tmp_path, env=env).stdout
    assert "--lab-dir" in helped
    assert "--lab-snapshot" in helped

    assert str(ROOT) not in where[0]
    assert where[0].endswith("provisioner/data")
    assert Path(where[1], "default").is_dir()

    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    run(
        venv / "bin" / "lab",
        "-C",
        lab_dir,
        "render",
        "--nodes",
        "2",
        "--discovery",
        "static",
        cwd=tmp_path,
        env=env,
    )
    assert "config.vm.box" in (lab_dir / "Vagrantfile").read_text()
    assert "$num_instances = 2" in (lab_dir / "config.rb").read_text()
    user_data = yaml.safe_load((lab_dir / "nodes" / "core-02" / "user-data").read_text())
    assert user_data["hostname"] == "core-02"

    # the host's fleetctl (the project's own) comes with the installation
    version = run(venv / "bin" / "fleetctl", "--version", cwd=tmp_path, env=env)
    assert version.stdout == "fleetctl version 1.0.0\n"
