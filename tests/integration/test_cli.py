"""The real `lab` command in a subprocess: errors come early, clearly, and create nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from tests.loopback import free_port

LAB = [sys.executable, "-m", "provisioner.cli"]


def lab(
    *args: str | Path, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAB, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def libvirt_names() -> tuple[set[str], set[str]]:
    conn = libvirt.open("qemu:///system")
    try:
        return (
            {d.name() for d in conn.listAllDomains(0)},
            {n.name() for n in conn.listAllNetworks(0)},
        )
    finally:
        conn.close()


def test_up_with_zero_nodes_fails_fast_and_creates_nothing(tmp_path: Path) -> None:
    before = libvirt_names()
    started = time.monotonic()
    result = lab("-C", tmp_path, "up", "--nodes", "0")
    assert time.monotonic() - started < 20
    assert result.returncode == 2
    assert "num_instances: number of nodes must be between 1 and 200, got 0" in result.stderr
    assert "hint:" in result.stderr
    assert not (tmp_path / ".lab").exists()
    assert libvirt_names() == before


def test_up_with_a_typo_in_lab_yaml_names_file_key_and_fix(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("num_instances: 3\nvm_memroy: 1024\n")
    result = lab("-C", tmp_path, "up")
    assert result.returncode == 2
    assert f"{tmp_path / 'lab.yaml'}: vm_memroy: unknown key" in result.stderr
    assert "did you mean 'vm_memory'?" in result.stderr
    assert not (tmp_path / ".lab").exists()


def test_render_twice_is_byte_identical(tmp_path: Path) -> None:
    assert lab("-C", tmp_path, "render", "--nodes", "3").returncode == 0
    first = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".lab" not in p.parts
    }
    assert lab("-C", tmp_path, "render", "--nodes", "3").returncode == 0
    second = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".lab" not in p.parts
    }
    assert first == second
    assert len(first) == 5


def test_render_refuses_to_overwrite_an_edited_config_rb(tmp_path: Path) -> None:
    assert lab("-C", tmp_path, "render").returncode == 0
    config_rb = tmp_path / "config.rb"
    config_rb.write_text(config_rb.read_text() + "$vm_memory = 2048\n")
    result = lab("-C", tmp_path, "render")
    assert result.returncode == 1
    assert "edited since lab rendered them: config.rb" in result.stderr
    assert config_rb.read_text().endswith("$vm_memory = 2048\n")


def test_even_member_count_warns_with_the_quorum_table(tmp_path: Path) -> None:
    result = lab("-C", tmp_path, "render", "--nodes", "4", "--discovery", "static")
    assert result.returncode == 0
    assert "4 etcd members tolerate 1 failure(s)" in result.stderr
    assert "size  majority  failures tolerated" in result.stderr


def test_validate_prints_coreos_cloudinit_entries(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("#cloud-config\nhostname: core-01\n")
    assert lab("validate", good).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: fly\n")
    result = lab("validate", bad)
    assert result.returncode == 1
    assert result.stdout.strip() == "line 5: error: invalid value fly"


def test_a_reader_that_goes_away_stops_lab_quietly(tmp_path: Path) -> None:
    """`lab validate big.yaml | head -1`: no traceback, the shell's 128+SIGPIPE status."""
    noisy = tmp_path / "noisy.yaml"
    keys = "".join(f"  bogus{i}: x\n" for i in range(5000))
    noisy.write_text(f"#cloud-config\ncoreos:\n  fleet:\n{keys}")
    proc = subprocess.Popen(
        [*LAB, "validate", str(noisy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + signal.SIGPIPE
    assert first.startswith(b"line ")
    assert stderr == ""


def test_discovery_serve_and_new(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*LAB, "discovery", "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            result = lab("discovery", "new", "--size", "3", "--server", f"http://127.0.0.1:{port}")
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip().splitlines()[-1]
        assert url.startswith(f"http://127.0.0.1:{port}/")
        assert len(url.rsplit("/", 1)[-1]) == 32
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def test_doctor_reports_acceleration_and_tools() -> None:
    result = lab("doctor", timeout=300)
    assert "acceleration" in result.stdout
    assert "guests will use" in result.stdout
    if result.returncode != 0:
        pytest.fail(f"lab doctor found problems on this host:\n{result.stdout}")


def test_destroy_of_a_never_started_lab_is_harmless(tmp_path: Path) -> None:
    assert lab("-C", tmp_path, "render", "--nodes", "1").returncode == 0
    result = lab("-C", tmp_path, "destroy")
    assert result.returncode == 0, result.stderr
    assert "removed 0 domains, 0 volumes, 0 networks" in result.stdout
    assert not (tmp_path / ".lab" / "state.json").exists()


def test_a_destroyed_lab_renders_again_but_keeps_refusing_edits(tmp_path: Path) -> None:
    assert lab("-C", tmp_path, "render", "--nodes", "1").returncode == 0
    assert lab("-C", tmp_path, "destroy").returncode == 0
    # a new token and a new key change every user-data: lab's own files are replaced
    again = lab("-C", tmp_path, "render", "--nodes", "1")
    assert again.returncode == 0, again.stderr
    user_data = tmp_path / "nodes" / "core-01" / "user-data"
    user_data.write_text(user_data.read_text() + "# mine\n")
    assert lab("-C", tmp_path, "destroy").returncode == 0
    refused = lab("-C", tmp_path, "render", "--nodes", "1")
    assert refused.returncode != 0
    assert "nodes/core-01/user-data" in refused.stderr
    assert user_data.read_text().endswith("# mine\n")


@pytest.mark.parametrize(
    ("argv", "lab_yaml", "message"),
    [
        (
            ("--nodes", "3", "--workers", "3"),
            "",
            "workers: --workers 3 on 3 node(s) leaves no core",
        ),
        ((), "num_instances: 3\netcd_members: 5\n", "etcd_members: must be between 1 and"),
        ((), "etcdctl_api: 4\n", "etcdctl_api: etcdctl has no API version 4"),
    ],
)
def test_up_refuses_a_bad_topology_before_creating_anything(
    tmp_path: Path, argv: tuple[str, ...], lab_yaml: str, message: str
) -> None:
    if lab_yaml:
        (tmp_path / "lab.yaml").write_text(lab_yaml)
    result = lab("-C", tmp_path, "up", *argv)
    assert result.returncode == 2
    assert message in result.stderr
    assert "hint:" in result.stderr
    assert not (tmp_path / ".lab").exists()


USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuTsIdEoUtSiDeOuTsIdEoUtSiDeOuTsIdEoUtSi me@laptop"
EXTERNAL_YAML = f"""\
subnet: 10.0.0.0/24
ssh_authorized_keys: ["{USER_KEY}"]
nodes:
  core-01: {{ip: 10.0.0.11}}
  core-02: {{ip: 10.0.0.12}}
  core-03: {{ip: 10.0.0.13}}
"""


def test_render_for_external_machines_static_and_url(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(EXTERNAL_YAML)
    out = tmp_path / "out"
    result = lab("-C", tmp_path, "render", "--external", "--out", out, "--discovery", "static")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("user-data")) == [
        f"nodes/core-0{i}/user-data" for i in (1, 2, 3)
    ]
    assert not (out / "Vagrantfile").exists()
    text = (out / "nodes" / "core-02" / "user-data").read_text()
    assert "initial-cluster: core-01=http://10.0.0.11:2380," in text
    assert USER_KEY in text
    assert " lab\n" not in text  # not the lab's key
    assert lab("validate", out / "nodes" / "core-02" / "user-data").returncode in (0, 1)
    # the lab's own state is not touched by a render for other machines
    assert not (tmp_path / ".lab" / "state.json").exists()

    url = "https://discovery.etcd.io/" + "c" * 32
    again = lab(
        "-C", tmp_path, "render", "--external", "--out", out, "--discovery", url, "--lab-key"
    )
    assert again.returncode == 0, again.stderr
    text = (out / "nodes" / "core-01" / "user-data").read_text()
    assert f"discovery: {url}" in text
    assert " lab\n" in text  # the lab's key was asked for


def test_render_for_external_machines_refusals(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(EXTERNAL_YAML)
    out = tmp_path / "out"
    local = lab("-C", tmp_path, "render", "--external", "--out", out)
    assert local.returncode != 0
    assert "discovery: local discovery is the lab host's own service" in local.stderr
    public = lab("-C", tmp_path, "render", "--external", "--out", out, "--discovery", "public")
    assert public.returncode != 0
    assert "curl -w '\\n' 'https://discovery.etcd.io/new?size=3'" in public.stderr
    no_out = lab("-C", tmp_path, "render", "--external", "--discovery", "static")
    assert "--out: --external writes user-data for other machines" in no_out.stderr
    (tmp_path / "lab.yaml").write_text(EXTERNAL_YAML.replace(f'["{USER_KEY}"]', "[]"))
    keyless = lab("-C", tmp_path, "render", "--external", "--out", out, "--discovery", "static")
    assert "ssh_authorized_keys: no SSH key would be authorized" in keyless.stderr
    (tmp_path / "lab.yaml").write_text(EXTERNAL_YAML.replace("10.0.0.12", "10.0.1.12"))
    outside = lab("-C", tmp_path, "render", "--external", "--out", out, "--discovery", "static")
    assert "nodes.core-02.ip: 10.0.1.12 is outside the lab's subnet 10.0.0.0/24" in outside.stderr
    assert not out.exists()
