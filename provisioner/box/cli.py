"""Rendering for ``lab box build`` and ``lab box list`` (rich); the work is in build.py."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime

from rich.console import Console
from rich.status import Status
from rich.table import Table

from provisioner.box.build import BuiltBox, build_box, current_key, list_boxes
from provisioner.box.progress import BuildEvent, Reporter
from provisioner.box.recipe import find_recipe
from provisioner.errors import LabError


def _reporter(console: Console, status: Status | None) -> Reporter:
    def report(event: BuildEvent) -> None:
        if event.kind == "start":
            if status is not None:
                status.update(f"[bold]{event.step}[/]: {event.message}")
            else:
                console.print(f"{event.step}: {event.message} ...")
        elif event.kind == "done":
            console.print(f"[green]✓[/] {event.message} [dim]({event.elapsed or 0:.1f}s)[/]")
        elif event.kind == "warning":
            console.print(f"[yellow]![/] {event.step}: {event.message}")
        elif status is not None:
            status.update(f"[bold]{event.step}[/]: {event.message[:100]}")

    return report


def build(name: str, *, force: bool = False) -> BuiltBox:
    """Build (or reuse) boxes/NAME and say where it is."""
    console = Console(stderr=True)
    interactive = console.is_terminal
    status = console.status(f"box {name}", spinner="dots") if interactive else None
    with status or contextlib.nullcontext():
        built = build_box(name, force=force, reporter=_reporter(console, status))
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
