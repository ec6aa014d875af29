"""Unit files as fleet sees them: parsing, serialising, hashing and unit names."""

from __future__ import annotations

import pytest

from provisioner.guest.fleet.errors import UnitFileError, UnitValidationError
from provisioner.guest.fleet.unitfile import (
    UnitOption,
    expand_specifiers,
    go_path_base,
    go_quote,
    go_quote_rune,
    mangle_unit_name,
    parse_unit_file,
    split_multivalue,
    unit_name_info,
    validate_name,
)

pytestmark = pytest.mark.unit

# fleet's examples/hello.service; its hash appears in fleet's README as e55c0ae.
HELLO = (
    "[Unit]\nDescription=Hello World\n\n[Service]\n"
    'ExecStart=/bin/bash -c "while true; do echo \\"Hello, world\\"; sleep 1; done"\n'
)


def test_hash_of_fleets_hello_example_matches_fleets_documentation() -> None:
    unit = parse_unit_file(HELLO)
    assert unit.hash.startswith("e55c0ae")
    assert unit.text == HELLO


def test_serialised_form_groups_sections_and_normalises_spacing() -> None:
    text = (
        "# leading comment\n"
        "[Unit]\n"
        "  Description =  spaced out  \n"
        "; another comment\n"
        "[Service]\n"
        "ExecStart=/bin/a \\\n"
        "  --flag\n"
        "[Unit]\n"
        "After=network.target\n"
    )
    unit = parse_unit_file(text)
    assert unit.options == (
        UnitOption("Unit", "Description", "spaced out"),
        UnitOption("Service", "ExecStart", "/bin/a    --flag"),
        UnitOption("Unit", "After", "network.target"),
    )
    assert unit.text == (
        "[Unit]\nDescription=spaced out\nAfter=network.target\n\n"
        "[Service]\nExecStart=/bin/a    --flag\n"
    )
    assert unit.description == "spaced out"


def test_whitespace_only_differences_hash_the_same() -> None:
    a = parse_unit_file("[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n")
    b = parse_unit_file("\n\n[Unit]\n\nDescription = x\n\n\n[Service]\r\nExecStart=/bin/true")
    assert a.hash == b.hash


def test_empty_values_and_missing_description() -> None:
    unit = parse_unit_file("[Service]\nEnvironment=\n")
    assert unit.text == "[Service]\nEnvironment=\n"
    assert unit.description == ""
    assert parse_unit_file("").text == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[Unit\nDescription=x\n", "unable to find end of section"),
        ("[Unit] trailing\n", "found garbage after section name Unit"),
        ("[Unit]\nDescription\n", "unexpected newline encountered while parsing option name"),
    ],
)
def test_parse_errors_name_the_source_and_line(text: str, message: str) -> None:
    with pytest.raises(UnitFileError) as err:
        parse_unit_file(text, source="x.service")
    assert err.value.message.startswith("x.service:")
    assert message in err.value.message


def test_xfleet_values_split_quoted_lists_only() -> None:
    unit = parse_unit_file(
        '[X-Fleet]\nMachineMetadata="region=us-east-1" "diskType=SSD"\n'
        "Conflicts=a.service b.service\nMachineOf=one.service\nMachineOf=two.service\n"
    )
    assert unit.values("X-Fleet", "MachineMetadata") == ["region=us-east-1", "diskType=SSD"]
    # Not wrapped in quotes: one value (Conflicts splits on whitespace later).
    assert unit.values("X-Fleet", "Conflicts") == ["a.service b.service"]
    assert unit.values("X-Fleet", "MachineOf") == ["one.service", "two.service"]
    assert split_multivalue('"a=b c" "d=e"') == ["a=b c", "d=e"]


def test_unit_name_info_for_plain_template_and_instance_names() -> None:
    plain = unit_name_info("foo.service")
    assert plain is not None
    assert (plain.prefix, plain.template, plain.instance) == ("foo", "", "")
    template = unit_name_info("foo@.service")
    assert template is not None
    assert template.is_template
    assert not template.is_instance
    instance = unit_name_info("foo@bar.service")
    assert instance is not None
    assert instance.is_instance
    assert (instance.name, instance.prefix, instance.template, instance.instance) == (
        "foo@bar",
        "foo",
        "foo@.service",
        "bar",
    )
    assert unit_name_info("nodot") is None


def test_specifiers_expand_with_the_instance_name() -> None:
    info = unit_name_info("web@8080.service")
    assert info is not None
    assert expand_specifiers("%n|%N|%p|%i|%m", info) == ("web@8080.service|web@8080|web|8080|%m")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "unit name cannot be empty"),
        ("a" * 250 + ".service", "unit name exceeds maximum length (256)"),
        ("hello", 'unit name must contain "."'),
        ("hello.", 'unit name cannot end in "."'),
        ("hello.unit", 'invalid unit type: "unit"'),
        ("hello@x.mount", 'invalid unit type for template: "mount"'),
        ("hel lo.service", "invalid character ' ' in unit name"),
        ("hel'lo.service", "invalid character '\\'' in unit name"),
        ("@hello.service", 'unit name cannot start in "@"'),
    ],
)
def test_invalid_unit_names_get_fleets_messages(name: str, message: str) -> None:
    with pytest.raises(UnitValidationError) as err:
        validate_name(name)
    assert err.value.message == message


@pytest.mark.parametrize(
    "name", ["hello.service", "a:b-c_d.e\\f.socket", "x@y.timer", "x@.path", "dev-sda.device"]
)
def test_valid_unit_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize(
    ("arg", "mangled"),
    [
        ("hello", "hello.service"),
        ("hello.service", "hello.service"),
        ("dir/sub/foo.socket", "foo.socket"),
        ("units/web@1", "web@1.service"),
        ("foo.conf", "foo.conf.service"),
        ("x.automount", "x.automount"),
        ("/", "/.service"),
    ],
)
def test_fleetctl_unit_name_mangling(arg: str, mangled: str) -> None:
    assert mangle_unit_name(arg) == mangled


def test_go_helpers() -> None:
    assert go_path_base("") == "."
    assert go_path_base("a/b/") == "b"
    assert go_quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    assert go_quote_rune("'") == "'\\''"
    assert go_quote_rune("\x01") == "'\\x01'"
