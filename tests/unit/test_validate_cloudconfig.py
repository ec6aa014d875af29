"""The cloud-config validator: coreos-cloudinit's rules, messages and line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.guest.cloudinit.validate import Report, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cloudinit"
CASES = sorted(path for path in FIXTURES.iterdir() if path.suffix != ".expected")
GZIP_HELLO = "H4sIAOC3tVQAA8tIzcnJ5wIAIDA6NgYAAAA="  # gzip of "hello\n", base64


def lines(text: str) -> list[str]:
    return [str(report) for report in validate(text)]


@pytest.mark.unit
@pytest.mark.parametrize("fixture", CASES, ids=[path.name for path in CASES])
def test_fixture_reports_exactly_the_expected_entries(fixture: Path) -> None:
    expected = fixture.with_suffix(".expected").read_text().splitlines()
    assert lines(fixture.read_text()) == expected


@pytest.mark.unit
def test_report_formats_like_coreos_cloudinit() -> None:
    report = Report(3, "error", "invalid value false")
    assert str(report) == "line 3: error: invalid value false"
    assert (
        json.dumps(report.as_dict())
        == '{"kind": "error", "message": "invalid value false", "line": 3}'
    )


@pytest.mark.unit
def test_reports_are_sorted_by_line() -> None:
    text = "#cloud-config\nzzz: 1\ncoreos:\n  units:\n    - command: lol\nhostname: [a]\n"
    assert [report.line for report in validate(text)] == [2, 5, 6]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("#!/bin/sh\necho hi\n", []),
        ('{"ignition": {"version": "2.2.0"}}', []),
        ('{"ignitionVersion": 1}', []),
        ("#cloud-config\n", []),
        ("#cloud-config\r\nhostname: a\r\n", []),
        (
            "#cloud-config \nhostname: a\n",
            ['line 1: error: must be "#cloud-config" or begin with "#!"'],
        ),
        ("# cloud-config\n", ['line 1: error: must be "#cloud-config" or begin with "#!"']),
        ('{"hostname": "a"}', ['line 1: error: must be "#cloud-config" or begin with "#!"']),
    ],
    ids=[
        "empty",
        "script",
        "ignition",
        "ignition-v1",
        "header-only",
        "crlf",
        "header-trailing-space",
        "header-with-space",
        "json",
    ],
)
def test_recognition(text: str, expected: list[str]) -> None:
    assert lines(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # libyaml's messages; the line is the mark go-yaml prints (1 when it gives none)
        ("\t", ["line 1: error: found character that cannot start any token"]),
        ("a:\na", ["line 3: error: could not find expected ':'"]),
        ("hostname: a: b", ["line 1: error: mapping values are not allowed in this context"]),
        ("hostname: 'x", ["line 1: error: found unexpected end of stream"]),
        ("hostname: *x", ["line 1: error: found undefined alias"]),
        ("- a\n- b", ["line 2: error: cannot unmarshal !!seq into a cloud-config mapping"]),
    ],
    ids=["tab", "missing-colon", "nested-mapping", "open-quote", "alias", "sequence-root"],
)
def test_yaml_errors_use_the_line_go_yaml_reports(body: str, expected: list[str]) -> None:
    assert lines("#cloud-config\n" + body) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("test:", ['line 2: warning: unrecognized key "test"']),
        (
            "coreos:\n  etcd2:\n    bad-key: 1",
            [
                'line 4: warning: unrecognized key "bad_key"',
            ],
        ),
        (
            "coreos:\n  units:\n    - hello\n    - goodbye",
            [
                'line 4: warning: incorrect type for "units[0]" (want struct)',
                'line 5: warning: incorrect type for "units[1]" (want struct)',
            ],
        ),
        ("coreos:\n  units:\n    - enable: true", []),
        (
            "coreos:\n  units:\n    - enable: 4",
            ['line 4: warning: incorrect type for "enable" (want bool)'],
        ),
        (
            "coreos:\n  units:\n    - enable: bad",
            ['line 4: warning: incorrect type for "enable" (want bool)'],
        ),
        (
            "coreos:\n  units:\n    - enable:\n        bad:",
            [
                'line 4: warning: incorrect type for "enable" (want bool)',
            ],
        ),
        ("hostname: true", []),
        ("hostname: 4", []),
        ("hostname: 4.5", []),
        ("hostname:\n  - name", ['line 2: warning: incorrect type for "hostname" (want string)']),
        ("hostname:", ['line 2: warning: incorrect type for "hostname" (want string)']),
        ("coreos: true", ['line 2: warning: incorrect type for "coreos" (want struct)']),
        ("coreos: hello", ['line 2: warning: incorrect type for "coreos" (want struct)']),
        (
            "ssh_authorized_keys: 4",
            [
                'line 2: warning: incorrect type for "ssh_authorized_keys" (want []string)',
            ],
        ),
        ("ssh_authorized_keys:\n  - key", []),
        ("users:\n  bad:", ['line 2: warning: incorrect type for "users" (want []struct)']),
        (
            "users:\n  - name: hi\n  - true",
            ['line 4: warning: incorrect type for "users[1]" (want struct)'],
        ),
        ("users:\n  - - bad", ['line 3: warning: incorrect type for "users[0]" (want struct)']),
        (
            "coreos:\n  fleet:\n    engine-reconcile-interval: 2",
            [],
        ),
        (
            "coreos:\n  fleet:\n    etcd_request_timeout: fast",
            [
                'line 4: warning: incorrect type for "etcd_request_timeout" (want float64)',
            ],
        ),
        (
            "coreos:\n  etcd2:\n    ca-file: /ca.pem",
            [
                'line 4: warning: deprecated key "ca_file" '
                "(ca_file obsoleted by trusted_ca_file and client_cert_auth)",
            ],
        ),
        (
            "users:\n  - name: a\n    coreos-ssh-import-github: a",
            [
                'line 4: warning: deprecated key "coreos_ssh_import_github" '
                "(trying to fetch from a remote endpoint introduces too many intermittent errors)",
            ],
        ),
    ],
)
def test_structure(body: str, expected: list[str]) -> None:
    assert lines("#cloud-config\n" + body) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("coreos:\n  units:\n    - command: start\n    - name: stop.service", []),
        ("coreos:\n  units:\n    - command: lol", ["line 4: error: invalid value lol"]),
        ("coreos:\n  update:\n    reboot_strategy: off", []),
        ("coreos:\n  update:\n    reboot-strategy: etcd-lock", []),
        (
            "coreos:\n  update:\n    reboot_strategy: always",
            ["line 4: error: invalid value always"],
        ),
        ("coreos:\n  update:\n    reboot_strategy: false", ["line 4: error: invalid value false"]),
        ("write_files:\n  - permissions: 0744", []),
        ("write_files:\n  - permissions: 744", []),
        ("write_files:\n  - permissions: '0o744'", ["line 3: error: invalid value 0o744"]),
        ("write_files:\n  - permissions: 07444", []),
        ("write_files:\n  - permissions: 077777", ["line 3: error: invalid value 077777"]),
        ("write_files:\n  - encoding: gzip", []),
        ("coreos:\n  units:\n    - name: app@.service\n    - name: app@1.service", []),
        ("coreos:\n  units:\n    - name: eth0.network\n    - name: a-b_c:d.socket", []),
        (
            "coreos:\n  units:\n    - name: ../etc/passwd.service",
            ["line 4: error: invalid value ../etc/passwd.service"],
        ),
        (
            "coreos:\n  units:\n    - name: app service",
            ["line 4: error: invalid value app service"],
        ),
        (
            "coreos:\n  units:\n    - name: a.service\n      drop-ins:\n        - name: 10-a.conf",
            [],
        ),
        ("coreos:\n  locksmith:\n    window-start: 23:59\n    window-length: 1h30m", []),
        ("coreos:\n  locksmith:\n    window-start: sun 1:00", []),
        ("unknown: hi", ['line 2: warning: unrecognized key "unknown"']),
    ],
)
def test_validity(body: str, expected: list[str]) -> None:
    assert lines("#cloud-config\n" + body) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("write_files:\n  - encoding: base64\n    content: aGVsbG8K", []),
        ("write_files:\n  - content: !!binary aGVsbG8K", []),
        (
            "write_files:\n  - encoding: base64\n    content: !!binary aGVsbG8K",
            [
                'line 4: error: content cannot be decoded as "base64"',
            ],
        ),
        ("write_files:\n  - encoding: base64\n    content: !!binary YUdWc2JHOEsK", []),
        (
            "write_files:\n  - encoding: gzip\n    content: !!binary " + GZIP_HELLO,
            [],
        ),
        (
            "write_files:\n  - encoding: gzip+base64\n    content: " + GZIP_HELLO,
            [],
        ),
        ("write_files:\n  - encoding: b64\n    content: |\n      aGVs\n      bG8K", []),
        (
            "write_files:\n  - encoding: custom\n    content: hello",
            [
                "line 3: error: invalid value custom",
                'line 4: error: content cannot be decoded as "custom"',
            ],
        ),
    ],
)
def test_encoding(body: str, expected: list[str]) -> None:
    assert lines("#cloud-config\n" + body) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("write_files:\n  - path: /valid", []),
        ("write_files:\n  - path: /tmp/usr/valid", []),
        (
            "write_files:\n  - path: /usr/invalid",
            ["line 3: error: file cannot be written to a read-only filesystem"],
        ),
        (
            "write-files:\n  - path: /tmp/../usr/invalid",
            [
                "line 3: error: file cannot be written to a read-only filesystem",
            ],
        ),
        (
            "coreos:\n  write-files:\n    - path: /hyphen",
            [
                'line 3: warning: unrecognized key "write_files"',
                "line 3: info: write_files doesn't belong under coreos",
            ],
        ),
    ],
)
def test_write_files(body: str, expected: list[str]) -> None:
    assert lines("#cloud-config\n" + body) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://discovery.etcd.io/00000000000000000000000000000000", []),
        ("http://custom.domain/mytoken", []),
        ("http://$private_ipv4:4001/v2/keys/_etcd/registry/abc", []),
        ("/relative/path", []),
        ("disco", ["line 4: warning: discovery URL is not valid"]),
        ("fire in the disco", ["line 4: warning: discovery URL is not valid"]),
        ("http://bad host/", ["line 4: warning: discovery URL is not valid"]),
    ],
)
def test_discovery_url_of_legacy_etcd(url: str, expected: list[str]) -> None:
    deprecated = (
        'line 3: warning: deprecated key "etcd" (etcd is no longer shipped in Container Linux)'
    )
    text = f"#cloud-config\ncoreos:\n  etcd:\n    discovery: {url}\n"
    assert lines(text) == [deprecated, *expected]


@pytest.mark.unit
def test_unit_content_inside_a_literal_block_reports_its_own_line() -> None:
    text = (
        "#cloud-config\n"
        "coreos:\n"
        "  units:\n"
        "    - name: a.service\n"
        "      content: |\n"
        "\n"
        "        [Unit]\n"
        "        Description=a\n"
        "        Requires net.target\n"
        "        [Service]\n"
        "        ExecStart=/bin/a \\\n"
        "          --flag\n"
        "        Restart\n"
    )
    assert lines(text) == [
        'line 9: warning: missing "=" in line "Requires net.target"',
        'line 13: warning: missing "=" in line "Restart"',
    ]


@pytest.mark.unit
def test_enable_of_a_unit_with_an_install_section_is_fine() -> None:
    text = (
        "#cloud-config\ncoreos:\n  units:\n    - name: a.timer\n      enable: true\n"
        "      content: |\n        [Timer]\n        OnCalendar=daily\n        [Install]\n"
        "        WantedBy=timers.target\n"
    )
    assert lines(text) == []
