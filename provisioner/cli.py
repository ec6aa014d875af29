"""The ``lab`` command: parse flags, build typed config, call one core function.

No libvirt, Vagrant or paramiko code lives here. Expected failures
(:class:`LabError`) print one line and a hint; anything else is a bug and its
traceback goes to the debug log.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from provisioner import __version__
from provisioner.config import Overrides, config_warnings, load_config
from provisioner.discovery_modes import LOCAL_PORT as DISCOVERY_PORT
from provisioner.errors import LabError

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("provisioner")


def _debug_log_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lab" / "debug.log"


def _fail(exc: LabError) -> NoReturn:
    click.secho(f"error: {exc.message}", fg="red", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    sys.exit(exc.exit_code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Map expected errors to a message and an exit code; log unexpected ones."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("interrupted; run the same command again to resume", err=True)
            sys.exit(130)
        except Exception:  # noqa: BLE001 - the one place that turns bugs into a report
            path = _debug_log_path()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as handle:
                    handle.write(traceback.format_exc())
            except OSError:
                path = Path(tempfile.gettempdir()) / "lab-debug.log"
                path.write_text(traceback.format_exc())
            click.secho(f"internal error: {sys.exc_info()[1]!r}", fg="red", err=True)
            click.echo(f"the traceback is in {path}; please report it", err=True)
            sys.exit(70)

    return wrapper


class Context:
    """Options shared by every verb."""

    def __init__(self, directory: Path, verbose: bool) -> None:
        self.directory = directory
        self.verbose = verbose


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lab")
@click.option(
    "-C",
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default="current directory",
    help="The lab directory (holds lab.yaml and .lab/).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens in detail.")
@click.pass_context
def main(ctx: click.Context, directory: Path, verbose: bool) -> None:
    """A CoreOS-style etcd + fleet + systemd cluster on local VMs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Context(directory=directory, verbose=verbose)


def _load(ctx: Context, config: Path | None, overrides: Overrides) -> Any:
    lab = load_config(ctx.directory, overrides, config)
    for warning in config_warnings(lab):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    return lab


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use this file instead of lab.yaml in the lab directory.",
)
nodes_option = click.option("--nodes", type=int, help="Number of nodes (default 3).")
discovery_option = click.option(
    "--discovery", help="local (default), public, static, or a discovery URL."
)


@main.command()
@nodes_option
@config_option
@discovery_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write here instead of the lab directory.",
)
@click.option("--force", is_flag=True, help="Overwrite files edited since the last render.")
@pass_context
@handle_errors
def render(
    ctx: Context,
    nodes: int | None,
    config_file: Path | None,
    discovery: str | None,
    out: Path | None,
    force: bool,
) -> None:
    """Render the Vagrantfile, config.rb and every node's cloud-config."""
    from provisioner.lab import render as do_render

    lab = _load(ctx, config_file, Overrides(num_instances=nodes, discovery=discovery))
    result = do_render(lab, out, force=force)
    for rel in result.files:
        click.echo(str(result.out_dir / rel))
    if result.discovery_url:
        click.echo(f"discovery: {result.discovery_url}", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def validate(files: tuple[Path, ...]) -> None:
    """Check cloud-config files the way coreos-cloudinit --validate does."""
    from provisioner.guest.cloudinit.validate import validate as check

    failed = False
    for path in files:
        try:
            text = path.read_text()
        except OSError as exc:
            raise LabError(f"{path}: cannot read: {exc.strerror}") from exc
        reports = check(text)
        for report in reports:
            prefix = f"{path}: " if len(files) > 1 else ""
            click.echo(f"{prefix}{report}")
        failed = failed or bool(reports)
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--fix/--no-fix", default=True, help="Start libvirt daemons that are not running.")
@pass_context
@handle_errors
def doctor(ctx: Context, fix: bool) -> None:
    """Check that this host can run a lab, with a fix for each problem."""
    from provisioner.doctor import run_checks

    results = run_checks(ctx.directory, fix=fix)
    width = max(len(r.name) for r in results)
    for result in results:
        mark = click.style("ok  ", fg="green") if result.ok else click.style("FAIL", fg="red")
        click.echo(f"{mark} {result.name:<{width}}  {result.detail}")
        if not result.ok and result.fix:
            click.echo(f"     {'':<{width}}  fix: {result.fix}")
    if not all(r.ok for r in results):
        sys.exit(1)


@main.group()
def discovery() -> None:
    """The etcd discovery service labs bootstrap from (works offline)."""


def _discovery_state_dir() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "lab" / "discovery"


@discovery.command("serve")
@click.option(
    "--listen",
    default=f"127.0.0.1:{DISCOVERY_PORT}",
    show_default=True,
    help="HOST:PORT to bind (':PORT' for every interface).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where tokens are kept (default: ~/.local/state/lab/discovery).",
)
@click.option("--public-url", help="Prefix of the URLs /new hands out (default: the URL asked).")
@handle_errors
def discovery_serve(listen: str, state_dir: Path | None, public_url: str | None) -> None:
    """Run the discovery service in the foreground; tokens survive restarts."""
    from provisioner.discovery import parse_listen, run_service

    run_service(parse_listen(listen), state_dir or _discovery_state_dir(), public_url)


@discovery.command("new")
@click.option("--size", type=int, default=3, show_default=True, help="Expected etcd members.")
@click.option("--server", default=f"http://127.0.0.1:{DISCOVERY_PORT}", show_default=True)
@handle_errors
def discovery_new(size: int, server: str) -> None:
    """Create a token; prints the discovery URL as the last line."""
    from provisioner.discovery import new_token

    click.echo(new_token(server, size))


@discovery.command("stop")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The state directory of the service to stop.",
)
@handle_errors
def discovery_stop(state_dir: Path | None) -> None:
    """Stop a discovery service started in the background."""
    from provisioner.discovery import stop_daemon

    directory = state_dir or _discovery_state_dir()
    if not stop_daemon(directory):
        raise LabError(f"no discovery service is running for {directory}")


@main.group()
def box() -> None:
    """Build and list the guest boxes labs boot."""


@box.command("build")
@click.argument("name", default="default")
@click.option("--force", is_flag=True, help="Rebuild even if a cached build exists.")
@handle_errors
def box_build(name: str, force: bool) -> None:
    """Build boxes/NAME from Debian packages (cached)."""
    from provisioner.box.cli import build

    build(name, force=force)


@box.command("list")
@handle_errors
def box_list() -> None:
    """Show built boxes with their sizes."""
    from provisioner.box.cli import show_list

    show_list()


if __name__ == "__main__":  # pragma: no cover
    main()
