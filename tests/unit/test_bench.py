"""The benchmark's pure helpers: reading `lab up` progress, etcd's HTTP answers, meminfo, XML."""

from __future__ import annotations

import io
import ipaddress
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provisioner.accel import AccelChoice
from provisioner.bench import (
    SUMMARY_HEADERS,
    BootTimes,
    FloorGuest,
    PartStats,
    average_rate,
    box_uploaded,
    format_table,
    lab_milestones,
    lab_phase_seconds,
    parse_cpu_busy_ticks,
    parse_ip_addr_networks,
    parse_mem_available_kib,
    parse_phase_summary,
    parse_process_cpu_ticks,
    parse_progress_line,
    parse_vm_rss_kib,
    peak_used_mib,
    pick_subnets,
    render_domain_xml,
    summary_rows,
    verdict,
    window_max,
)
from provisioner.hypervisor.boxvolume import volume_prefix
from provisioner.hypervisor.libvirt import parse_console_log_path, parse_disk_paths
from provisioner.parsers import parse_etcd_health, parse_started_members
from provisioner.progress import LAB, PlainProgress

pytestmark = pytest.mark.unit


def progress_lines(updates: list[tuple[str, str, str, str]]) -> list[str]:
    """What lab's own PlainProgress prints for ``updates`` (subject, phase, status, detail)."""
    stream = io.StringIO()
    progress = PlainProgress(stream)
    for subject, phase, status, detail in updates:
        progress.update(subject, phase, status, detail)  # type: ignore[arg-type]
    return stream.getvalue().splitlines()


# --- progress lines ------------------------------------------------------------


def test_progress_lines_printed_by_lab_parse_back() -> None:
    lines = progress_lines(
        [
            (LAB, "nodes", "running", ""),
            (LAB, "nodes", "ok", "all running"),
            ("core-01", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"),
            (LAB, "boot", "failed", "vagrant up: exit 1"),
        ]
    )
    events = [parse_progress_line(line, at=float(i)) for i, line in enumerate(lines)]
    assert [e.subject if e else None for e in events] == [LAB, LAB, "core-01", LAB]
    running, ok, banner, failed = events
    assert running is not None
    assert running.status == "running"
    assert running.elapsed is None
    assert ok is not None
    assert ok.phase == "nodes"
    assert ok.detail == "all running"
    assert ok.elapsed is not None
    assert ok.elapsed >= 0
    assert banner is not None
    assert banner.phase == "ssh banner"
    assert banner.detail.startswith("SSH-2.0-")
    assert failed is not None
    assert failed.status == "failed"
    assert failed.at == 3.0


def test_a_line_from_the_cli_exact_shape() -> None:
    line = "17:50:32 lab        nodes        ok after 13.4s: all running"
    event = parse_progress_line(line, at=42.0)
    assert event is not None
    assert (event.subject, event.phase, event.status, event.elapsed, event.detail) == (
        "lab", "nodes", "ok", 13.4, "all running",
    )  # fmt: skip


@pytest.mark.parametrize(
    "line",
    ["", "error: lab.yaml: vm_cpu: unknown key", "hint: did you mean 'vm_cpus'?", "17:50:32 lab"],
)
def test_other_output_is_not_progress(line: str) -> None:
    assert parse_progress_line(line, at=0.0) is None


def test_phase_seconds_come_from_the_lab_rows_only() -> None:
    lines = progress_lines(
        [
            (LAB, "render", "running", ""),
            (LAB, "render", "ok", "4 files"),
            ("core-01", "systemd", "running", ""),
            ("core-01", "systemd", "ok", "running"),
            (LAB, "box", "running", ""),
            (LAB, "box", "ok", "lab/default-abc (cached)"),
        ]
    )
    events = [e for i, line in enumerate(lines) if (e := parse_progress_line(line, float(i)))]
    assert list(lab_phase_seconds(events)) == ["render", "box"]


def test_milestones_are_when_the_lines_arrived() -> None:
    lines = progress_lines(
        [
            ("core-02", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1"),
            ("core-01", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1"),
            (LAB, "cluster", "running", ""),
            ("core-03", "ssh banner", "ok", "SSH-2.0-OpenSSH_9.2p1"),
            (LAB, "cluster", "running", "3/3 members healthy"),
            (LAB, "cluster", "running", "/lab/ready written on core-01, read on 3 nodes"),
        ]
    )
    at = [10.0, 12.5, 13.0, 20.0, 31.0, 33.0]
    events = [e for t, line in zip(at, lines, strict=True) if (e := parse_progress_line(line, t))]
    marks = lab_milestones(events, nodes=3)
    assert (marks.first_banner, marks.all_banners, marks.etcd_healthy) == (10.0, 20.0, 31.0)


def test_milestones_missing_when_not_every_node_got_there() -> None:
    lines = progress_lines([("core-01", "ssh banner", "ok", "SSH-2.0-x")])
    events = [e for line in lines if (e := parse_progress_line(line, 5.0))]
    marks = lab_milestones(events, nodes=3)
    assert (marks.first_banner, marks.all_banners, marks.etcd_healthy) == (5.0, None, None)


# --- the CLI's final timing line ------------------------------------------------------

SUMMARY = (
    "accel tcg; render 0.0s, host 0.0s, box 1.4s, network 0.3s, discovery 0.5s, "
    "drives 0.2s, boot 61.0s, nodes 13.4s, cluster 6.1s"
)


def test_final_timing_line() -> None:
    parsed = parse_phase_summary("┏━━━━┓ table\n" + SUMMARY + "\n")
    assert parsed is not None
    accel, phases = parsed
    assert accel == "tcg"
    assert phases["boot"] == 61.0
    assert phases["cluster"] == 6.1
    assert next(iter(phases)) == "render"
    assert len(phases) == 9


def test_final_timing_line_wrapped_at_any_space() -> None:
    whole = parse_phase_summary(SUMMARY)
    spaces = [i for i, char in enumerate(SUMMARY) if char == " "]
    for i in spaces:
        assert parse_phase_summary(SUMMARY[:i] + "\n" + SUMMARY[i + 1 :]) == whole, i


def test_no_final_line_after_an_already_up_lab() -> None:
    assert parse_phase_summary("lab x is already up; nothing changed\n") is None


# --- etcd over HTTP: bodies as etcd 3.4.23 returns them --------------------------

HEALTHY = '{"health":"true"}'
UNHEALTHY = '{"health":"false"}'
MEMBERS = (
    '{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709",'
    '"raft_term":"2"},"members":[{"ID":"13668033151171901709","name":"core-01",'
    '"peerURLs":["http://192.168.200.101:2380"],"clientURLs":["http://192.168.200.101:2379"]},'
    '{"ID":"2","name":"core-02","peerURLs":["http://192.168.200.102:2380"],'
    '"clientURLs":["http://192.168.200.102:2379"]},'
    '{"ID":"3","peerURLs":["http://192.168.200.103:2380"]}]}'
)


def test_health_answers() -> None:
    assert parse_etcd_health(HEALTHY)
    assert not parse_etcd_health(UNHEALTHY)
    assert not parse_etcd_health("404 page not found\n")
    assert not parse_etcd_health("[]")


def test_members_that_have_not_started_have_no_name() -> None:
    assert parse_started_members(MEMBERS) == ("core-01", "core-02")
    assert parse_started_members("not json") == ()
    assert parse_started_members('{"header":{}}') == ()


# --- memory -------------------------------------------------------------------------

MEMINFO = """MemTotal:       24684012 kB
MemFree:        17580020 kB
MemAvailable:   20788316 kB
Buffers:          125956 kB
"""


def test_mem_available() -> None:
    assert parse_mem_available_kib(MEMINFO) == 20788316
    with pytest.raises(ValueError, match="MemAvailable"):
        parse_mem_available_kib("MemTotal: 1 kB\n")


def test_peak_is_above_the_level_at_the_start() -> None:
    samples = [(0.0, 10 * 1024**2), (1.0, 9 * 1024**2), (2.0, 8 * 1024**2), (3.0, 9 * 1024**2)]
    # From t=0.5 the baseline is the t=0 sample (10 GiB); the low point is 8 GiB.
    assert peak_used_mib(samples, 0.5, 3.0) == 2048
    assert peak_used_mib(samples, 2.0, 3.0) == 0  # it only went up from there
    assert peak_used_mib(samples, 5.0, 6.0) is None


def test_resident_memory_of_a_process() -> None:
    own = Path("/proc/self/status").read_text()
    assert parse_vm_rss_kib(own) > 0
    assert parse_vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n") == 0  # no VmRSS line


def test_busy_cpu_of_the_host() -> None:
    stat = "cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n"
    assert parse_cpu_busy_ticks(stat) == 100 + 5 + 50 + 1 + 2 + 3  # not idle, not iowait
    real = Path("/proc/stat").read_text()
    assert parse_cpu_busy_ticks(real) > 0


def test_cpu_of_a_process_with_an_awkward_name() -> None:
    # comm may contain spaces and ')'; utime=11 stime=22 are fields 14 and 15.
    stat = "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 11 22 0 0 20 0 3 0 5 6 7\n"
    assert parse_process_cpu_ticks(stat) == 33
    assert parse_process_cpu_ticks(Path("/proc/self/stat").read_text()) >= 0


def test_average_rate() -> None:
    samples = [(0.0, 0), (1.0, 100), (2.0, 300), (3.0, 300)]
    assert average_rate(samples, 0.0, 2.0) == 150.0
    assert average_rate(samples, 2.0, 3.0) == 0.0
    assert average_rate(samples, 2.5, 3.0) is None  # one sample is not a rate


def test_window_max() -> None:
    samples = [(0.0, 1), (1.0, 5), (2.0, 3)]
    assert window_max(samples, 0.0, 0.5) == 1
    assert window_max(samples, 0.5, 2.0) == 5
    assert window_max(samples, 3.0, 4.0) is None


# --- networks -----------------------------------------------------------------------

IP_ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n"
    "33: lab-c80f3b5d6c    inet 192.168.200.1/24 brd 192.168.200.255 scope global lab-c80f\n"
)


def test_host_networks_from_ip_addr() -> None:
    assert parse_ip_addr_networks(IP_ADDR) == [
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv4Network("192.0.2.0/24"),
        ipaddress.IPv4Network("192.168.200.0/24"),
    ]


def test_subnets_avoid_what_is_used_and_each_other() -> None:
    used = [*parse_ip_addr_networks(IP_ADDR), ipaddress.IPv4Network("192.168.202.0/23")]
    chosen = pick_subnets(used, 3)
    assert [str(n) for n in chosen] == ["192.168.201.0/24", "192.168.204.0/24", "192.168.205.0/24"]


def test_no_free_subnet_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 2 free"):
        pick_subnets([ipaddress.IPv4Network("192.168.0.0/16")], 2)


# --- vagrant-libvirt's copy of the box ------------------------------------------------


def test_box_volume_as_vagrant_libvirt_names_it() -> None:
    # A volume name as seen in the default pool after `vagrant up`.
    seen = "lab-VAGRANTSLASH-default-6d98a028920c_vagrant_box_image_0_1795456645_box.img"
    assert seen.startswith(volume_prefix("lab/default-6d98a028920c"))
    assert box_uploaded(["other.img", seen], "lab/default-6d98a028920c")
    assert not box_uploaded([seen], "lab/default-4df8c813d879")
    assert not box_uploaded(["lab-x_core-01.img"], "lab/default-6d98a028920c")


# --- the floor's domain XML -----------------------------------------------------------


def guest(tmp: Path) -> FloorGuest:
    return FloorGuest(
        domain="bench-floor-abc123-core-01",
        hostname="core-01",
        ip="192.168.201.101",
        mac="52:54:00:12:34:01",
        memory_mib=768,
        cpus=1,
        disk=tmp / "core-01.qcow2",
        config_drive=tmp / "core-01-config-2.iso",
        console_log=tmp / "core-01-console.log",
        network="bench-floor-abc123",
    )


def attribute(root: ET.Element, path: str, name: str) -> str | None:
    element = root.find(path)
    assert element is not None, path
    return element.get(name)


def test_domain_xml_under_tcg(tmp_path: Path) -> None:
    spec = guest(tmp_path)
    xml = render_domain_xml(spec, AccelChoice("tcg", "no vmx/svm"))
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == spec.domain
    assert root.findtext("memory") == "768"
    assert attribute(root, "memory", "unit") == "MiB"
    assert root.findtext("cpu/model") == "qemu64"
    assert attribute(root, "devices/interface/mac", "address") == spec.mac
    assert attribute(root, "devices/interface/source", "network") == spec.network
    assert root.find("devices/disk[@device='cdrom']/readonly") is not None
    cdrom_source = attribute(root, "devices/disk[@device='cdrom']/source", "file")
    assert cdrom_source == str(spec.config_drive)
    # The project's own readers of domain XML find the console log and the overlay.
    assert parse_console_log_path(xml) == spec.console_log
    assert parse_disk_paths(xml) == (spec.disk,)


def test_domain_xml_with_hardware_virtualisation(tmp_path: Path) -> None:
    root = ET.fromstring(render_domain_xml(guest(tmp_path), AccelChoice("kvm", "vmx")))
    assert root.get("type") == "kvm"
    cpu = root.find("cpu")
    assert cpu is not None
    assert cpu.get("mode") == "host-passthrough"
    assert cpu.find("model") is None


# --- the summary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "start"),
    [(1.1, "meets the goal"), (1.2, "meets the goal"), (1.4, "meets the target"), (1.6, "misses")],
)
def test_verdict(ratio: float, start: str) -> None:
    assert verdict(ratio).startswith(start)


def test_summary_has_the_ratio_of_totals() -> None:
    floor = BootTimes(prep=2.0, first_banner=30.0, all_banners=40.0, healthy=48.0)
    assert floor.total == 50.0
    part = PartStats(
        seconds=75.0,
        peak_mib=1500.0,
        guests_peak_mib=2400.4,
        host_cpu=1.98,
        guests_cpu=1.2,
        load_before=(3.0, 2.0, 1.0),
        load_after=(4.0, 3.0, 2.0),
        other_domains=3,
    )
    lab_boot = BootTimes(prep=20.0, first_banner=35.0, all_banners=41.0, healthy=50.0)
    rows = summary_rows(floor, lab_boot, 75.0, {"boot": 60.0}, {"lab up": part})
    assert all(len(row) == len(SUMMARY_HEADERS) for row in rows)
    table = {row[0]: row for row in rows}
    assert table["ratio lab up / floor"][1] == "1.50"
    assert "meets the target" in table["ratio lab up / floor"][-1]
    assert table["lab up: boot"][1] == "60.0"
    assert table["lab up: first guest started"][1] == "20.0"
    assert table["lab up: after etcd healthy"][1] == "5.0"  # 75 - (20 + 50)
    assert table["lab up: total"][2:8] == ["1500", "2400", "1.98", "1.20", "3.0/4.0", "3"]
    assert table["lab verify"][1:4] == ["-", "-", "-"]


def test_summary_without_a_floor_has_no_ratio() -> None:
    rows = summary_rows(None, None, None, {}, {})
    assert all(not row[0].startswith("ratio") for row in rows)


def test_table_columns_line_up() -> None:
    text = format_table(("", "seconds", "note"), [["floor: total", "50.0", "x"], ["a", "1.5", ""]])
    header, rule, first, second = text.splitlines()
    assert rule.startswith("-" * len("floor: total") + "  ")
    assert first.index("50.0") + len("50.0") == second.index("1.5") + len("1.5")
    assert header.index("seconds") + len("seconds") == first.index("50.0") + len("50.0")
