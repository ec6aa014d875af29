"""Rendering for ``lab box build`` and ``lab box list`` (rich); the work is in build.py."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime

from rich.console import Console
from rich.status import Status
from rich.table import Table

from provisioner.box.build import BuiltBox, build_box, current_key, list_boxes
from provisioner.box.buildlog import Reporter
from provisioner.box.recipe import find_recipe
from provisioner.errors import LabError
from provisioner.progress import ProgressEvent, fan_out, jsonl_from_env


def _reporter(console: Console, status: Status | None) -> Reporter:
    def report(event: ProgressEvent) -> None:
        if event.status == "running":  # a step starts
            if status is not None:
                status.update(f"[bold]{event.phase}[/]: {event.detail}")
            else:
                console.print(f"{event.phase}: {event.detail} ...")
        elif event.status == "ok":
            console.print(f"[green]✓[/] {event.detail} [dim]({event.elapsed or 0:.1f}s)[/]")
        elif event.status == "warning":
            console.print(f"[yellow]![/] {event.phase}: {event.detail}")
        elif status is not None:
            status.update(f"[bold]{event.phase}[/]: {event.detail[:100]}")

    return report


def build(name: str, *, force: bool = False) -> BuiltBox:
    """Build (or reuse) boxes/NAME and say where it is."""
    console = Console(stderr=True)
    interactive = console.is_terminal
    status = console.status(f"box {name}", spinner="dots") if interactive else None
    jsonl = jsonl_from_env()  # LAB_PROGRESS_JSONL: the events as JSON lines too
    reporter = fan_out([_reporter(console, status), *([jsonl] if jsonl else [])])
    try:
        with status or contextlib.nullcontext():
            built = build_box(name, force=force, reporter=reporter)
    finally:
        if jsonl is not None:
            jsonl.close()
    state = "cached" if built.cached else "built"
    out = Console()
    out.print(
        f"{state} [bold]{built.vagrant_name}[/] "
        f"({built.size_bytes / 1e6:.0f} MB, {built.virtual_size // 1024**3} GiB disk)"
    )
    out.print(f"  image: {built.image}")
    return built


def show_list() -> None:
    """Print the cache's boxes with their sizes; the current build of a recipe is marked."""
    boxes = list_boxes()
    console = Console()
    if not boxes:
        console.print("no boxes built yet; run `lab box build`")
        return
    current: dict[str, str | None] = {}
    for box in boxes:
        if box.recipe not in current:
            try:
                current[box.recipe] = current_key(find_recipe(box.recipe))
            except LabError:
                current[box.recipe] = None
    table = Table(box=None, header_style="bold")
    for column in ("BOX", "SIZE", "DISK", "BUILT", "VAGRANT", "CURRENT"):
        table.add_column(column)
    for box in boxes:
        built = datetime.fromisoformat(box.created).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            box.vagrant_name,
            f"{box.size_bytes / 1e6:.0f} MB",
            f"{box.virtual_size // 1024**3} GiB",
            built,
            "added" if box.added else "-",
            "yes" if current.get(box.recipe) == box.key else "",
        )
    console.print(table)
    sys.stdout.flush()
