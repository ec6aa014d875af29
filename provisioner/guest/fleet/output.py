"""fleetctl's tables: field names, ``-`` placeholders, legends, tab-padded columns.

Tables are laid out like Go's ``text/tabwriter`` configured as fleetctl does
(``Init(w, 0, 8, 1, '\\t', 0)``): every column but the last is padded with tabs
to the widest cell plus one, rounded up to a multiple of 8.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from provisioner.guest.fleet.model import MachineState, UnitState
from provisioner.guest.fleet.registry import UnitView

TAB_WIDTH = 8
PADDING = 1


def tabwrite(rows: Sequence[Sequence[str]]) -> str:
    """Lay rows out as Go's tabwriter(minwidth 0, tabwidth 8, padding 1, padchar tab)."""
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    widths: list[int] = []
    for col in range(columns - 1):
        cells = [len(row[col]) for row in rows if col < len(row) - 1]
        width = max(cells, default=0) + PADDING
        widths.append(-(-width // TAB_WIDTH) * TAB_WIDTH)
    lines: list[str] = []
    for row in rows:
        out: list[str] = []
        for col, cell in enumerate(row):
            out.append(cell)
            if col < len(row) - 1:
                pad = widths[col] - len(cell)
                out.append("\t" * -(-pad // TAB_WIDTH))
        lines.append("".join(out))
    return "\n".join(lines) + "\n"


def machine_id_legend(machine: MachineState, full: bool) -> str:
    return machine.id if full else f"{machine.short_id}..."


def machine_full_legend(machine: MachineState, full: bool) -> str:
    """``<id8>.../<ip>`` (full ID with ``full``; no ``/ip`` if the IP is unknown)."""
    legend = machine_id_legend(machine, full)
    return f"{legend}/{machine.public_ip}" if machine.public_ip else legend


def format_metadata(metadata: Mapping[str, str]) -> str:
    return ",".join(f"{key}={metadata[key]}" for key in sorted(metadata))


Machines = Mapping[str, MachineState]


def _machine_cell(machine_id: str, machines: Machines, full: bool) -> str:
    if not machine_id:
        return "-"
    machine = machines.get(machine_id) or MachineState(machine_id)
    return machine_full_legend(machine, full)


# -- list-units -------------------------------------------------------------------------
UnitStateField = Callable[[UnitState, Machines, bool], str]

LIST_UNITS_FIELDS: dict[str, UnitStateField] = {
    "active": lambda us, _m, _f: us.active_state,
    "hash": lambda us, _m, full: (us.unit_hash if full else us.unit_hash[:7]) or "-",
    "load": lambda us, _m, _f: us.load_state,
    "machine": lambda us, machines, full: _machine_cell(us.machine_id, machines, full),
    "sub": lambda us, _m, _f: us.sub_state,
    "unit": lambda us, _m, _f: us.name,
}
LIST_UNITS_DEFAULT = "unit,machine,active,sub"


# -- list-unit-files --------------------------------------------------------------------
UnitField = Callable[[UnitView, Machines, bool], str]


def _target(view: UnitView, machines: Machines, full: bool) -> str:
    if view.is_global:
        return "global"
    return _machine_cell(view.machine_id, machines, full)


def _tmachine(view: UnitView, machines: Machines, full: bool) -> str:
    if view.is_global:
        return "-"
    return _machine_cell(view.machine_id, machines, full)


LIST_UNIT_FILES_FIELDS: dict[str, UnitField] = {
    "desc": lambda v, _m, _f: v.unit.description or "-",
    "dstate": lambda v, _m, _f: v.desired_state or "-",
    "global": lambda v, _m, _f: "true" if v.is_global else "false",
    "hash": lambda v, _m, full: v.unit.hash if full else v.unit.hash[:7],
    "state": lambda v, _m, _f: "-" if v.is_global or not v.current_state else v.current_state,
    "target": _target,
    "tmachine": _tmachine,
    "unit": lambda v, _m, _f: v.name,
}
LIST_UNIT_FILES_DEFAULT = "unit,hash,dstate,state,target"


# -- list-machines ----------------------------------------------------------------------
MachineField = Callable[[MachineState, bool], str]

LIST_MACHINES_FIELDS: dict[str, MachineField] = {
    "ip": lambda m, _f: m.public_ip or "-",
    "machine": machine_id_legend,
    "metadata": lambda m, _f: format_metadata(m.metadata_dict()) or "-",
}
LIST_MACHINES_DEFAULT = "machine,ip,metadata"


class FieldError(ValueError):
    """A ``--fields`` value fleetctl rejects; the message is fleet's."""


def parse_fields(spec: str, valid: Mapping[str, object]) -> list[str]:
    if not spec:
        raise FieldError("Must define output format")
    fields = spec.split(",")
    for name in fields:
        if name not in valid:
            raise FieldError(f'Invalid key in output format: "{name}"')
    return fields


def render_table(header: list[str] | None, rows: list[list[str]]) -> str:
    all_rows = ([[h.upper() for h in header]] if header is not None else []) + rows
    return tabwrite(all_rows)


def list_units_table(
    states: list[UnitState], machines: Machines, fields: list[str], *, full: bool, legend: bool
) -> str:
    ordered = sorted(states, key=lambda s: (s.name, s.machine_id))
    rows = [[LIST_UNITS_FIELDS[f](us, machines, full) for f in fields] for us in ordered]
    return render_table(fields if legend else None, rows)


def list_unit_files_table(
    units: list[UnitView], machines: Machines, fields: list[str], *, full: bool, legend: bool
) -> str:
    ordered = sorted(units, key=lambda u: u.name)
    rows = [[LIST_UNIT_FILES_FIELDS[f](u, machines, full) for f in fields] for u in ordered]
    return render_table(fields if legend else None, rows)


def list_machines_table(
    machines: list[MachineState], fields: list[str], *, full: bool, legend: bool
) -> str:
    ordered = sorted(machines, key=lambda m: m.id)
    rows = [[LIST_MACHINES_FIELDS[f](m, full) for f in fields] for m in ordered]
    return render_table(fields if legend else None, rows)
