"""[X-Fleet] requirements: extraction, specifiers, globbing and fleet's validation rules."""

from __future__ import annotations

import pytest

from provisioner.guest.fleet.errors import UnitValidationError
from provisioner.guest.fleet.requirements import (
    glob_matches,
    requirements_of,
    unrecognized_keys,
    validate_options,
)
from provisioner.guest.fleet.unitfile import parse_unit_file

pytestmark = pytest.mark.unit


def unit(xfleet: str) -> str:
    return f"[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n{xfleet}\n"


def test_metadata_values_of_one_key_are_ored_and_keys_anded() -> None:
    text = unit(
        'MachineMetadata="region=us-east-1" "job=foo"\n'
        'MachineMetadata="region=us-west-1" "job=bar"\n'
        "MachineMetadata=broken\nMachineMetadata=a=b=c\nMachineMetadata==x\n"
    )
    req = requirements_of("x.service", parse_unit_file(text))
    assert req.metadata_map() == {
        "region": frozenset({"us-east-1", "us-west-1"}),
        "job": frozenset({"foo", "bar"}),
    }


def test_deprecated_keys_still_count() -> None:
    text = unit(
        "X-ConditionMachineMetadata=zone=a\nX-ConditionMachineOf=peer.service\n"
        "X-Conflicts=old*\nX-ConditionMachineID=abc"
    )
    req = requirements_of("x.service", parse_unit_file(text))
    assert req.metadata_map() == {"zone": frozenset({"a"})}
    assert req.peers == ("peer.service",)
    assert req.conflicts == ("old*",)
    assert req.machine_id == "abc"


def test_first_machine_id_wins_and_modern_key_beats_deprecated() -> None:
    text = unit("X-ConditionMachineID=old\nMachineID=first\nMachineID=second")
    assert requirements_of("x.service", parse_unit_file(text)).machine_id == "first"


def test_conflicts_split_on_whitespace_and_lines() -> None:
    req = requirements_of("x.service", parse_unit_file(unit("Conflicts=a.* b.*\nConflicts=c")))
    assert req.conflicts == ("a.*", "b.*", "c")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("Global=true", True),
        ("Global=TRUE", True),
        ("Global=yes", True),
        ("Global=1", True),
        ("Global=on", True),
        ("Global=t", True),
        ("Global=false", False),
        ("Global=true\nGlobal=no", False),
        ("Global=0\nGlobal=On", True),
        ("Global=enabled", False),
    ],
)
def test_global_truthy_values_last_wins(values: str, expected: bool) -> None:
    assert requirements_of("x.service", parse_unit_file(unit(values))).is_global is expected


def test_specifiers_use_the_instance_name() -> None:
    text = unit("MachineMetadata=hostname=%i\nMachineID=%i\nConflicts=%p@*.service\nMachineOf=%N.x")
    req = requirements_of("web@smoke1.service", parse_unit_file(text))
    assert req.metadata_map() == {"hostname": frozenset({"smoke1"})}
    assert req.machine_id == "smoke1"
    assert req.conflicts == ("web@*.service",)
    assert req.peers == ("web@smoke1.x",)


def test_unrecognized_keys_are_reported_in_file_order() -> None:
    text = unit("Colour=blue\nMachineOf=x.service\nShape=round")
    assert unrecognized_keys(parse_unit_file(text)) == ["Colour", "Shape"]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*.service", "a.service", True),
        ("conflict*", "conflict.3.service", True),
        ("web@*.service", "web@1.service", True),
        ("web@?.service", "web@12.service", False),
        ("[ab].service", "b.service", True),
        ("[^ab].service", "b.service", False),
        ("[a-c]x.service", "cx.service", True),
        ("\\*.service", "*.service", True),
        ("exact.service", "exact.service", True),
        ("exact.service", "other.service", False),
        ("[", "[", False),
        ("*", "a/b", False),
    ],
)
def test_glob_matching_follows_go_path_match(pattern: str, name: str, matches: bool) -> None:
    assert glob_matches(pattern, name) is matches


@pytest.mark.parametrize(
    ("xfleet", "message"),
    [
        (
            "MachineOf=db.service\nConflicts=db*",
            'unresolvable requirements: peer "db.service" matches conflict "db*"',
        ),
        (
            "MachineOf=db.service\nReplaces=db.service",
            'unresolvable requirements: peer "db.service" matches replace "db.service"',
        ),
        ("MachineID=abc\nMachineOf=db.service", "MachineID cannot be used with Peers"),
        ("MachineID=abc\nConflicts=x*", "MachineID cannot be used with Conflicts"),
        ("MachineID=abc\nGlobal=true", "MachineID cannot be used with Global"),
        ("MachineID=abc\nReplaces=x.service", "MachineID cannot be used with Replaces"),
        ("Global=true\nMachineOf=db.service", "Global cannot be used with Peers"),
        ("Global=true\nReplaces=x.service", "Global cannot be used with Replaces"),
        ("Conflicts=x*\nReplaces=y.service", "Conflicts cannot be used with Replaces"),
    ],
)
def test_invalid_combinations_get_fleets_messages(xfleet: str, message: str) -> None:
    with pytest.raises(UnitValidationError) as err:
        validate_options(parse_unit_file(unit(xfleet)))
    assert err.value.message == message


def test_checks_run_in_fleets_order() -> None:
    # Both rule 3 (Peers) and rule 5 (Global) apply; the earlier one is reported.
    text = unit("MachineID=a\nGlobal=true\nMachineOf=p.service")
    with pytest.raises(UnitValidationError, match="MachineID cannot be used with Peers"):
        validate_options(parse_unit_file(text))


@pytest.mark.parametrize(
    "xfleet",
    [
        "Global=true\nMachineMetadata=role=web\nConflicts=other*",
        "MachineID=abc\nMachineMetadata=a=b",
        "MachineOf=a.service\nMachineMetadata=a=b",
        "Replaces=old.service\nMachineMetadata=a=b",
        "Global=false\nMachineID=abc",
    ],
)
def test_allowed_combinations(xfleet: str) -> None:
    validate_options(parse_unit_file(unit(xfleet)))
