"""fleetctl's tables: tabwriter layout, columns, placeholders, legends and sorting."""

from __future__ import annotations

import pytest

from provisioner.guest.fleet.model import MachineState, UnitState
from provisioner.guest.fleet.output import (
    LIST_MACHINES_DEFAULT,
    LIST_MACHINES_FIELDS,
    LIST_UNIT_FILES_DEFAULT,
    LIST_UNIT_FILES_FIELDS,
    LIST_UNITS_DEFAULT,
    LIST_UNITS_FIELDS,
    FieldError,
    list_machines_table,
    list_unit_files_table,
    list_units_table,
    machine_full_legend,
    parse_fields,
    tabwrite,
)
from provisioner.guest.fleet.registry import UnitView
from provisioner.guest.fleet.unitfile import parse_unit_file

pytestmark = pytest.mark.unit

M1 = MachineState("113f16a7" + "0" * 24, "172.17.8.103", (("region", "us"), ("az", "1")))
M2 = MachineState("85c0c595" + "1" * 24, "172.17.8.102")
M3 = MachineState("01234567" + "2" * 24)
MACHINES = {m.id: m for m in (M1, M2, M3)}
HELLO = parse_unit_file(
    "[Unit]\nDescription=Hello World\n\n[Service]\n"
    'ExecStart=/bin/bash -c "while true; do echo \\"Hello, world\\"; sleep 1; done"\n'
)
GLOBAL = parse_unit_file("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")


def test_tabwriter_pads_to_tab_stops_like_go() -> None:
    # Widest cell + 1 rounded up to a multiple of 8; padding written as tabs.
    assert tabwrite([["UNIT", "MACHINE"], ["hello.service", "x"]]) == (
        "UNIT\t\tMACHINE\nhello.service\tx\n"
    )
    assert tabwrite([["1234567", "b"], ["12345678", "c"]]) == "1234567\t\tb\n12345678\tc\n"
    assert tabwrite([["a", "b", "c"]]) == "a\tb\tc\n"
    assert tabwrite([]) == ""


def test_machine_legends() -> None:
    assert machine_full_legend(M1, False) == "113f16a7.../172.17.8.103"
    assert machine_full_legend(M1, True) == f"{M1.id}/172.17.8.103"
    assert machine_full_legend(M3, False) == "01234567..."


def test_list_units_matches_fleets_example_and_sorts() -> None:
    states = [
        UnitState("hello.service", M1.id, "loaded", "active", "running", HELLO.hash),
        UnitState("goodbye.service", M2.id, "loaded", "active", "running", HELLO.hash),
        UnitState("hello.service", M3.id, "loaded", "inactive", "dead", ""),
    ]
    fields = parse_fields(LIST_UNITS_DEFAULT, LIST_UNITS_FIELDS)
    table = list_units_table(states, MACHINES, fields, full=False, legend=True)
    assert table.splitlines() == [
        "UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB",
        "goodbye.service\t85c0c595.../172.17.8.102\tactive\t\trunning",
        "hello.service\t01234567...\t\t\tinactive\tdead",
        "hello.service\t113f16a7.../172.17.8.103\tactive\t\trunning",
    ]


def test_list_units_hash_and_placeholders() -> None:
    states = [
        UnitState("a.service", "", "loaded", "active", "running", ""),
        UnitState("b.service", "f" * 32, "loaded", "active", "running", HELLO.hash),
    ]
    fields = parse_fields("unit,hash,machine,load", LIST_UNITS_FIELDS)
    short = list_units_table(states, MACHINES, fields, full=False, legend=False)
    assert short.splitlines() == [
        "a.service\t-\t-\t\tloaded",
        "b.service\te55c0ae\tffffffff...\tloaded",
    ]
    full = list_units_table(states, MACHINES, fields, full=True, legend=False)
    assert f"\t{HELLO.hash}\t" in full
    assert "f" * 32 in full


def test_list_unit_files_columns_and_placeholders() -> None:
    units = [
        UnitView("hello.service", HELLO, "launched", "launched", M1.id),
        UnitView("agent.service", GLOBAL, "launched", "", ""),
        UnitView("idle.service", HELLO, "inactive", "inactive", ""),
    ]
    fields = parse_fields(LIST_UNIT_FILES_DEFAULT, LIST_UNIT_FILES_FIELDS)
    table = list_unit_files_table(units, MACHINES, fields, full=False, legend=True)
    assert table.splitlines() == [
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET",
        f"agent.service\t{GLOBAL.hash[:7]}\tlaunched\t-\t\tglobal",
        "hello.service\te55c0ae\tlaunched\tlaunched\t113f16a7.../172.17.8.103",
        "idle.service\te55c0ae\tinactive\tinactive\t-",
    ]
    other = parse_fields("unit,desc,global,tmachine", LIST_UNIT_FILES_FIELDS)
    rows = list_unit_files_table(units, MACHINES, other, full=False, legend=False)
    assert rows.splitlines() == [
        "agent.service\t-\t\ttrue\t-",
        "hello.service\tHello World\tfalse\t113f16a7.../172.17.8.103",
        "idle.service\tHello World\tfalse\t-",
    ]


def test_list_machines_columns_sorting_and_placeholders() -> None:
    fields = parse_fields(LIST_MACHINES_DEFAULT, LIST_MACHINES_FIELDS)
    table = list_machines_table([M1, M2, M3], fields, full=False, legend=True)
    assert table.splitlines() == [
        "MACHINE\t\tIP\t\tMETADATA",
        "01234567...\t-\t\t-",
        "113f16a7...\t172.17.8.103\taz=1,region=us",
        "85c0c595...\t172.17.8.102\t-",
    ]
    full = list_machines_table([M2], ["machine"], full=True, legend=False)
    assert full == f"{M2.id}\n"


def test_field_errors_use_fleets_messages() -> None:
    with pytest.raises(FieldError, match=r"^Must define output format$"):
        parse_fields("", LIST_UNITS_FIELDS)
    with pytest.raises(FieldError, match=r'^Invalid key in output format: "nope"$'):
        parse_fields("unit,nope", LIST_UNITS_FIELDS)
    assert sorted(LIST_UNITS_FIELDS) == ["active", "hash", "load", "machine", "sub", "unit"]
    assert sorted(LIST_UNIT_FILES_FIELDS) == [
        "desc",
        "dstate",
        "global",
        "hash",
        "state",
        "target",
        "tmachine",
        "unit",
    ]
    assert sorted(LIST_MACHINES_FIELDS) == ["ip", "machine", "metadata"]
