"""The ``lab`` command: parse flags, build typed config, call one core function.

No libvirt, Vagrant or paramiko code lives here. Expected failures
(:class:`LabError`) print one line and a hint; anything else is a bug and its
traceback goes to the debug log.

Longer than most modules on purpose: it is the whole command surface, one thin
click function per verb (about 25), each parsing flags and calling one library
function; the box and discovery verbs' work lives in their packages.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from provisioner import __version__
from provisioner.config import Overrides, config_warnings, topology_line
from provisioner.discovery_modes import LOCAL_PORT as DISCOVERY_PORT
from provisioner.errors import ConfigError, LabError

if TYPE_CHECKING:
    from provisioner.lifecycle.faults import FaultResult

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


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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
        except BrokenPipeError:
            # the reader went away (`lab exec ... | head`): stop quietly, as a shell tool does
            _silence_stdout()
            sys.exit(141)
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


def _load(ctx: Context, config: Path | None = None, overrides: Overrides | None = None) -> Any:
    """The lab as configured, plus the flags it was last rendered with."""
    from provisioner.lab import load_lab

    lab = load_lab(ctx.directory, overrides, config)
    for warning in config_warnings(lab):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    return lab


def _load_for_render(ctx: Context, config: Path | None, overrides: Overrides) -> Any:
    """Like _load, and remembers these flags for the verbs that follow."""
    from provisioner.lab import remember_flags

    lab = _load(ctx, config, overrides)
    remember_flags(lab, overrides, config)
    return lab


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use this file instead of lab.yaml in the lab directory.",
)
nodes_option = click.option("--nodes", type=int, help="Number of nodes (default 3).")
workers_option = click.option(
    "--workers",
    type=int,
    help="How many of the nodes are workers (etcd proxies, no member); default: none up to"
    " 5 nodes, beyond that all but a core of 3 (6-9 nodes) or 5 (10 or more).",
)
discovery_option = click.option(
    "--discovery", help="local (default), public, static, or a discovery URL."
)


@main.command()
@nodes_option
@workers_option
@config_option
@discovery_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write here instead of the lab directory.",
)
@click.option("--force", is_flag=True, help="Overwrite files edited since the last render.")
@click.option(
    "--external",
    is_flag=True,
    help="Only user-data, for machines lab does not boot, at the addresses lab.yaml's"
    " nodes give (needs --out, and --discovery static or a URL).",
)
@click.option(
    "--lab-key", is_flag=True, help="With --external: authorize the lab's own SSH key too."
)
@pass_context
@handle_errors
def render(
    ctx: Context,
    nodes: int | None,
    workers: int | None,
    config_file: Path | None,
    discovery: str | None,
    out: Path | None,
    force: bool,
    external: bool,
    lab_key: bool,
) -> None:
    """Render the Vagrantfile, config.rb and every node's cloud-config."""
    from provisioner.lab import render as do_render
    from provisioner.lab import render_external

    overrides = Overrides(num_instances=nodes, workers=workers, discovery=discovery)
    if external or lab_key:
        if not external:
            raise ConfigError("--lab-key goes with --external", key="--lab-key")
        if out is None:
            raise ConfigError(
                "--external writes user-data for other machines: say where with --out DIR",
                key="--out",
            )
        lab = _load(ctx, config_file, overrides)  # the lab's own flags stay as they were
        result = render_external(lab, out, force=force, lab_key=lab_key)
    else:
        lab = _load_for_render(ctx, config_file, overrides)
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


listen_option = click.option(
    "--listen",
    default=f"127.0.0.1:{DISCOVERY_PORT}",
    show_default=True,
    help="HOST:PORT of the service (':PORT' for every interface).",
)
state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The service's directory (default: ~/.local/state/lab/discovery/HOST-PORT).",
)


@discovery.command("serve")
@listen_option
@state_dir_option
@handle_errors
def discovery_serve(listen: str, state_dir: Path | None) -> None:
    """Run the discovery service (etcd, v2 API) in the foreground; tokens survive restarts."""
    from provisioner.discovery import DiscoveryServer, parse_listen, run_service

    def ready(server: DiscoveryServer) -> None:
        click.echo(
            f"discovery service at {server.url} (etcd pid {server.pid}); "
            f"data in {server.state_dir}, log in {server.log_file}",
            err=True,
        )

    run_service(parse_listen(listen), state_dir, ready)


@discovery.command("new")
@click.option("--size", type=int, default=3, show_default=True, help="Expected etcd members.")
@click.option("--server", default=f"http://127.0.0.1:{DISCOVERY_PORT}", show_default=True)
@handle_errors
def discovery_new(size: int, server: str) -> None:
    """Create a token; prints the discovery URL as the last line."""
    from provisioner.discovery import new_token

    click.echo(new_token(server, size))


@discovery.command("stop")
@listen_option
@state_dir_option
@handle_errors
def discovery_stop(listen: str, state_dir: Path | None) -> None:
    """Stop a discovery service started in the background."""
    from provisioner.discovery import parse_listen, service_dir, stop_daemon

    directory = state_dir or service_dir(*parse_listen(listen))
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


# --- images ---------------------------------------------------------------------


def _registry_settings(ctx: Context) -> Any:
    """lab.yaml's ``registry`` in the lab directory (defaults anywhere else)."""
    from provisioner.config import load_config

    return load_config(ctx.directory).registry


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f} MB"


@main.group()
def registry() -> None:
    """The host's image registry the labs pull from (one per host, kept across labs)."""


@registry.command("start")
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: lab.yaml registry.port).")
@pass_context
@handle_errors
def registry_start(ctx: Context, port: int | None) -> None:
    """Start the registry (and lab.yaml's pull-through cache); put the box's busybox in it."""
    from provisioner.box.build import docker_archives
    from provisioner.config import load_config
    from provisioner.registry.host import start as do_start

    config = load_config(ctx.directory)
    info, added = do_start(
        port=port or config.registry.port,
        upstream=config.registry.upstream,
        archives=docker_archives(config.box),
    )
    click.echo(f"registry at {info.url} (pid {info.pid})")
    for image in added:
        click.echo(f"added {image}")


@registry.command("stop")
@handle_errors
def registry_stop() -> None:
    """Stop the registry and its cache; the images stay, `lab up` starts it again."""
    from provisioner.registry.host import stop as do_stop

    stopped = do_stop()
    click.echo("stopped " + " and ".join(stopped) if stopped else "the registry was not running")


@registry.command("status")
@handle_errors
def registry_status() -> None:
    """Where the registry runs, each lab's relay, and the disk its images take."""
    from provisioner.registry.host import status as get_status

    found = get_status()
    local, cache = found.local, found.cache
    click.echo(
        f"registry: {f'{local.url} (pid {local.pid})' if local else 'not running'}; "
        f"{_mb(found.disk_bytes)} in {found.root / 'local' / 'data'}"
    )
    if cache is not None or found.cache_bytes:
        where = f"{cache.url} (pid {cache.pid}) of {cache.upstream}" if cache else "not running"
        click.echo(f"cache: {where}; {_mb(found.cache_bytes)} in {found.root / 'cache' / 'data'}")
    for relay, target in found.relays:
        state = f"-> 127.0.0.1:{target}" if target else "not running"
        click.echo(f"relay: {relay.host}:{relay.port} {state}")
    if local is None:
        sys.exit(3)  # as `systemctl status` of a stopped service


@main.group()
def image() -> None:
    """Images in the lab registry: what guests pull as `docker pull NAME`."""


def _images(ctx: Context) -> Any:
    from provisioner.registry.images import Images
    from provisioner.registry.service import registry_root

    return Images(registry_root(), _registry_settings(ctx).port)


@image.command("import")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="NAME[:TAG] for an archive of one image (default: its own name).")
@pass_context
@handle_errors
def image_import(ctx: Context, archive: Path, name: str | None) -> None:
    """Import a `docker save` or OCI archive into the registry."""
    for done in _images(ctx).import_archive(archive, name):
        click.echo(f"imported {done} ({done.repository}:{done.tag})")


@image.command("push")
@click.argument("source")
@click.option("--name", help="NAME[:TAG] in the registry (default: SOURCE's name).")
@click.option(
    "--from", "engine", type=click.Choice(["docker", "podman"]), help="Default: whichever works."
)
@pass_context
@handle_errors
def image_push(ctx: Context, source: str, name: str | None, engine: str | None) -> None:
    """Copy an image of the host's docker or podman into the registry."""
    done, used = _images(ctx).push(source, name, engine)
    click.echo(f"pushed {done} from {used} ({done.repository}:{done.tag})")


@image.command("ls")
@pass_context
@handle_errors
def image_ls(ctx: Context) -> None:
    """The images in the registry, as guests name them."""
    from provisioner.progress import short_id, summary_table, table_console

    images = _images(ctx)
    console = table_console()
    rows = [
        (row.name.familiar, row.name.repository, short_id(row.digest, console, 19), _mb(row.size))
        for row in images.rows()
    ]
    console.print(summary_table(("name", "stored as", "digest", "size"), rows))
    click.echo(f"{len(rows)} image(s), {_mb(images.disk_use())} on disk", err=True)


@image.command("rm")
@click.argument("names", nargs=-1, required=True)
@pass_context
@handle_errors
def image_rm(ctx: Context, names: tuple[str, ...]) -> None:
    """Remove images from the registry and free the disk only they used."""
    images = _images(ctx)
    before = images.disk_use()
    for done in images.remove(names):
        click.echo(f"removed {done}")
    click.echo(f"freed {_mb(max(0, before - images.disk_use()))}", err=True)


# --- the lab's life -----------------------------------------------------------

accel_option = click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="KVM where the host has hardware virtualisation, TCG otherwise.",
)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (docs/output.md)."
)


@main.command()
@nodes_option
@workers_option
@config_option
@discovery_option
@accel_option
@click.option(
    "--snapshot",
    metavar="NAME",
    help="Restore snapshot NAME if the lab has it; otherwise boot, verify and save it as NAME.",
)
@json_option
@pass_context
@handle_errors
def up(
    ctx: Context,
    nodes: int | None,
    workers: int | None,
    config_file: Path | None,
    discovery: str | None,
    accel: str,
    snapshot: str | None,
    as_json: bool,
) -> None:
    """Render, boot and verify the lab; resumes after an interruption.

    Progress goes to stderr; the summary (with --json, one JSON object) to stdout."""
    import json

    from provisioner.lifecycle import fastpath, snapshots
    from provisioner.lifecycle import up as do_up
    from provisioner.progress import make_progress
    from provisioner.reports import up_json

    overrides = Overrides(num_instances=nodes, workers=workers, discovery=discovery)
    lab = _load_for_render(ctx, config_file, overrides)
    if snapshot is not None:
        snapshots.check_name(snapshot)
    progress = make_progress()
    failed: fastpath.VerifyError | None = None
    try:
        if snapshot is None:
            ready = fastpath.Ready(up=do_up(lab, progress, accel=accel))
        else:
            ready = fastpath.up_from_snapshot(lab, snapshot, progress, accel=accel)
    except fastpath.VerifyError as exc:  # the summary and the report first, then the error
        failed, ready = exc, exc.ready
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(up_json(lab, ready), indent=2))
    else:
        _print_ready(lab, ready)
    if failed is not None:
        raise failed


def _print_ready(lab: Any, ready: Any) -> None:
    """``lab up``'s summary as text: the restore, or the nodes' table, verify and save."""
    from provisioner.checks.runner import render_report
    from provisioner.progress import short_id, summary_table, table_console

    if ready.restored is not None:
        result = ready.restored
        click.echo(
            f"lab {lab.name} restored from snapshot {result.name} in {result.seconds:.1f}s "
            f"(reverted in {result.paused_seconds:.1f}s): {result.detail}"
        )
        return
    console = table_console()
    up_result = ready.up
    if up_result.already_up:
        console.print(f"lab {lab.name} is already up; nothing changed")
    rows = [
        [n.name, n.ip, n.role, short_id(n.machine_id, console), n.system_state,
         ", ".join(n.failed_units) or "-"]
        for n in up_result.nodes
    ]  # fmt: skip
    console.print(
        summary_table(("node", "address", "role", "machine-id", "systemd", "failed units"), rows)
    )
    console.print(topology_line(lab))
    if lab.flannel.enabled:
        overlay = lab.flannel
        console.print(
            f"overlay: flannel {overlay.backend} on {overlay.network}, a subnet per node"
            " for its containers (`lab status` lists them)"
        )
    if up_result.phase_seconds:
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in up_result.phase_seconds.items())
        console.print(f"accel {up_result.accel}; {timing}")
    if ready.verified is not None:
        click.echo(render_report(ready.verified))
    if ready.saved is not None:
        _print_saved(ready.saved)


def _print_saved(result: Any) -> None:
    click.echo(
        f"snapshot {result.name} of {len(result.nodes)} nodes saved in {result.seconds:.1f}s "
        f"(the nodes stood still for {result.paused_seconds:.1f}s)"
    )


def _save(lab: Any, name: str) -> None:
    from provisioner.lifecycle import snapshots
    from provisioner.progress import make_progress

    progress = make_progress()
    try:
        result = snapshots.save(lab, name, progress)
    finally:
        progress.close()
    _print_saved(result)


def _restore(lab: Any, name: str) -> None:
    from provisioner.lifecycle import fastpath, snapshots
    from provisioner.progress import make_progress

    progress = make_progress()
    try:
        result = snapshots.restore(lab, name, progress)
    finally:
        progress.close()
    _print_ready(lab, fastpath.Ready(snapshot=name, restored=result))


@main.group()
def snapshot() -> None:
    """Save the whole lab (every node's disk and memory at one moment) and bring it back."""


@snapshot.command("save")
@click.argument("name")
@pass_context
@handle_errors
def snapshot_save(ctx: Context, name: str) -> None:
    """Pause every node, snapshot each, let them run again."""
    _save(_load(ctx), name)


@snapshot.command("restore")
@click.argument("name")
@pass_context
@handle_errors
def snapshot_restore(ctx: Context, name: str) -> None:
    """Every node back to snapshot NAME at once, clocks stepped, readiness checked."""
    _restore(_load(ctx), name)


@snapshot.command("list")
@json_option
@pass_context
@handle_errors
def snapshot_list(ctx: Context, as_json: bool) -> None:
    """The lab's snapshots, oldest first."""
    import datetime
    import json

    from provisioner.lifecycle import snapshots
    from provisioner.progress import summary_table, table_console

    found = snapshots.listed(_load(ctx))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(s) for s in found], indent=2))
        return
    if not found:
        click.echo("no snapshots (`lab snapshot save NAME` takes one)")
        return
    rows = [
        [
            s.name,
            datetime.datetime.fromtimestamp(s.created).isoformat(sep=" ", timespec="seconds"),
            ", ".join(s.nodes),
            ", ".join(s.missing) or "-",
        ]
        for s in found
    ]
    table_console().print(summary_table(("snapshot", "taken", "nodes", "missing"), rows))


@snapshot.command("rm")
@click.argument("name")
@pass_context
@handle_errors
def snapshot_rm(ctx: Context, name: str) -> None:
    """Delete snapshot NAME from every node."""
    from provisioner.lifecycle import snapshots

    removed = snapshots.remove(_load(ctx), name)
    click.echo(f"snapshot {name} removed from {', '.join(removed)}")


@main.command()
@json_option
@pass_context
@handle_errors
def status(ctx: Context, as_json: bool) -> None:
    """Per node: domain state, address, etcd health and leader, fleet view, failed units.

    Not on a terminal, the table is as wide as it needs: no address or ID is cut."""
    import json

    from provisioner.operate import status as node_status
    from provisioner.operate import status_json
    from provisioner.progress import short_id, summary_table, table_console

    lab = _load(ctx)
    statuses = node_status(lab)
    if as_json:
        click.echo(json.dumps(status_json(lab, statuses), indent=2))
        return
    console = table_console()
    rows = []
    for s in statuses:
        etcd = (
            "-" if not s.etcd_member
            else "unknown" if s.etcd_healthy is None  # no node could tell
            else "healthy" if s.etcd_healthy
            else "UNHEALTHY"
        )  # fmt: skip
        if s.etcd_leader:
            etcd += " (leader)"
        meta = ",".join(f"{k}={v}" for k, v in sorted(s.metadata.items())) or "-"
        rows.append(
            [s.name, s.state, s.ip, s.role, etcd, short_id(s.machine_id, console), meta,
             s.flannel_subnet or "-", ", ".join(s.failed_units) or "-"]
        )  # fmt: skip
    headers = (
        "node", "state", "address", "role", "etcd", "machine-id", "metadata", "subnet", "failed"
    )  # fmt: skip
    console.print(summary_table(headers, rows))
    scaled = _scaled_line(lab)
    if scaled:
        click.echo(scaled)


def _scaled_line(lab: Any) -> str | None:
    """``lab status``'s note that ``lab scale`` changed the lab's shape, if it did."""
    from provisioner.lab import scale_record
    from provisioner.state import load_state

    record = scale_record(load_state(lab.state_dir))
    if record is None:
        return None
    return (
        f"scaled by `lab scale` to {record.nodes - record.workers} core + {record.workers} "
        f"workers from lab.yaml's {record.base_nodes - record.base_workers} core + "
        f"{record.base_workers} workers (`lab destroy` forgets it)"
    )


def _print_outcome(name: str | None, outcome: object) -> int:
    from provisioner.remote.runner import CommandResult

    prefix = f"[{name}] " if name else ""
    if isinstance(outcome, CommandResult):
        for line in outcome.stdout.splitlines():
            click.echo(f"{prefix}{line}")
        for line in outcome.stderr.splitlines():
            click.echo(f"{prefix}{line}", err=True)
        return outcome.rc
    click.secho(f"{prefix}error: {outcome}", fg="red", err=True)
    return 255


# After the node, every word is the command's: flags and a later "--" included.
_COMMAND_AFTER_NODE = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@main.command(name="exec", context_settings=_COMMAND_AFTER_NODE)
@click.option("--all", "all_nodes", is_flag=True, help="Run on every node.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
@pass_context
@handle_errors
def exec_(ctx: Context, all_nodes: bool, args: tuple[str, ...]) -> None:
    """Run a command: lab exec NODE -- CMD..., or lab exec --all -- CMD...

    Each argument stays one argument on the node (as kubectl exec and docker exec
    do): `lab exec core-01 -- sh -c 'a | b'` runs sh with two arguments."""
    from provisioner.operate import exec_on
    from provisioner.remote.login import command_words

    lab = _load(ctx)
    if all_nodes:
        names, argv = [n.name for n in lab.nodes], command_words(args)
    else:
        names, argv = [args[0]], command_words(args[1:])
    outcomes = exec_on(lab, names, argv)
    if not all_nodes:
        sys.exit(_print_outcome(None, outcomes[names[0]]))
    codes = {name: _print_outcome(name, outcome) for name, outcome in outcomes.items()}
    failed = [f"{name} ({code})" for name, code in codes.items() if code != 0]
    click.echo(
        f"{len(codes) - len(failed)} of {len(codes)} nodes succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        err=True,
    )
    sys.exit(1 if failed else 0)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
@handle_errors
def etcdctl(ctx: Context, args: tuple[str, ...]) -> None:
    """etcdctl on a healthy member, against every member (lab.yaml etcdctl_api: 2 or 3)."""
    from provisioner.operate import etcdctl as run_etcdctl

    sys.exit(_print_outcome(None, run_etcdctl(_load(ctx), args)))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
@handle_errors
def fleetctl(ctx: Context, args: tuple[str, ...]) -> None:
    """fleetctl on a healthy node; local unit files named in ARGS are uploaded first.

    It runs in a `lab ssh` session (the lab's key in a forwarded agent), so that
    status, journal and ssh reach units on the other nodes."""
    from provisioner.operate import fleetctl_argv

    argv = fleetctl_argv(_load(ctx), args)
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process with ssh, as intended


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
@handle_errors
def systemctl(ctx: Context, node: str, args: tuple[str, ...]) -> None:
    """systemctl on NODE (as root)."""
    from provisioner.operate import systemctl as run_systemctl

    sys.exit(_print_outcome(None, run_systemctl(_load(ctx), node, args)))


@main.command(context_settings=_COMMAND_AFTER_NODE)
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_context
@handle_errors
def ssh(ctx: Context, node: str, command: tuple[str, ...]) -> None:
    """Open a shell on NODE, or run CMD there: lab ssh NODE [--] [CMD...]

    OpenSSH with the lab's key and pinned host keys, forwarding an agent that holds
    the lab's key (fleetctl on the node uses it). CMD's words are joined with spaces
    and run by the node's shell, as `ssh host 'a | b'` does."""
    from provisioner.operate import ssh_argv

    argv = ssh_argv(_load(ctx), node, command)
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process with ssh, as intended


@main.command(name="ssh-config")
@pass_context
@handle_errors
def ssh_config(ctx: Context) -> None:
    """Print an ssh_config for the lab (use with ssh -F)."""
    from provisioner.nodes import ssh_config_text

    click.echo(ssh_config_text(_load(ctx)), nl=False)


@main.command()
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML.")
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(["etcd", "fleet", "system"]),
    help="Run only these shipped check groups.",
)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@json_option
@pass_context
@handle_errors
def verify(
    ctx: Context,
    junit: Path | None,
    only: tuple[str, ...],
    paths: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Run the shipped testinfra checks and your own against every node."""
    import json

    from provisioner.checks.runner import render_report
    from provisioner.operate import verify as run
    from provisioner.reports import verify_json

    result = run(_load(ctx), junit=junit, extra=paths, only=only or None)
    if as_json:
        click.echo(json.dumps(verify_json(result), indent=2))
    else:
        click.echo(render_report(result))
    result.raise_for_failures()


@main.command()
@click.argument("nodes", nargs=-1)
@click.option("--leader", is_flag=True, help="The member that leads etcd now.")
@click.option("--quorum", is_flag=True, help="A majority of etcd's members, the leader among them.")
@pass_context
@handle_errors
def kill(ctx: Context, nodes: tuple[str, ...], leader: bool, quorum: bool) -> None:
    """Hard power-off (a node dying): NODES, or etcd's leader, or a quorum."""
    from provisioner import lifecycle

    if sum((bool(nodes), leader, quorum)) != 1:
        raise ConfigError("name NODES, or give --leader or --quorum (one of them)", key="lab kill")
    config = _load(ctx)
    if leader:
        killed = lifecycle.kill_leader(config)
    elif quorum:
        killed = lifecycle.kill_quorum(config)
    else:
        killed = lifecycle.kill(config, nodes)
    for name in killed:
        click.echo(f"{name}: powered off")


def _report_faults(result: FaultResult) -> None:
    faults = result.faults
    for node in sorted(faults.isolated):
        click.echo(f"{node}: cut off the lab network")
    for a, b in sorted(faults.pairs):
        click.echo(f"{a} <-> {b}: cut")
    for node, setting in sorted(faults.netem.items()):
        click.echo(f"{node}: {setting.describe()} on what it sends (tc on the {setting.on.value})")
    if faults.empty:
        click.echo("no network faults")
    for node in result.not_running:
        click.echo(f"{node}: not running; its faults apply when lab next changes faults")
    for node in result.unreached:
        click.echo(f"{node}: not reached over SSH; its netem in the guest ends when it restarts")
    if result.host_cannot:
        click.echo(f"netem is in the guest: the host cannot carry it ({result.host_cannot})")


@main.command()
@click.argument("nodes", nargs=-1, required=True)
@click.option(
    "--from",
    "peers",
    multiple=True,
    metavar="PEER",
    help="Cut NODES off from PEER only (repeat it); without it, from every node and the host.",
)
@click.option(
    "--allow-quorum-loss",
    is_flag=True,
    help="Allow a partition that leaves no majority of etcd's members together.",
)
@pass_context
@handle_errors
def partition(
    ctx: Context, nodes: tuple[str, ...], peers: tuple[str, ...], allow_quorum_loss: bool
) -> None:
    """Cut NODES off the lab network from the host (nftables on the lab's bridge)."""
    from provisioner.lifecycle.faults import partition as do_partition

    result = do_partition(_load(ctx), nodes, peers, allow_quorum_loss=allow_quorum_loss)
    _report_faults(result)


@main.command()
@click.argument("nodes", nargs=-1)
@pass_context
@handle_errors
def heal(ctx: Context, nodes: tuple[str, ...]) -> None:
    """Take partitions and netem off NODES (none named: off every node)."""
    from provisioner.lifecycle.faults import heal as do_heal

    _report_faults(do_heal(_load(ctx), nodes))


@main.command()
@click.argument("node")
@click.option("--delay", help="Added to every packet the node sends, e.g. 200ms.")
@click.option("--jitter", help="Random variation of the delay, e.g. 20ms.")
@click.option("--loss", help="Share of the node's packets dropped, e.g. 5%.")
@click.option(
    "--on",
    "lever",
    type=click.Choice(["auto", "host", "guest"]),
    default="auto",
    show_default=True,
    help="Where the netem qdisc goes: the host (out of the guest's reach), the guest "
    "(tc over SSH), or the host when its kernel can carry it, else the guest.",
)
@pass_context
@handle_errors
def netem(
    ctx: Context, node: str, delay: str | None, jitter: str | None, loss: str | None, lever: str
) -> None:
    """Slow or lossy lab link for NODE (tc netem on what the node sends, on the host
    or in the guest)."""
    from provisioner.faults.plan import Lever, netem_request
    from provisioner.lifecycle.faults import netem as do_netem

    setting = netem_request(delay, jitter, loss)  # bad values fail before anything else
    on = None if lever == "auto" else Lever(lever)
    _report_faults(do_netem(_load(ctx), node, setting, on=on))


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every scenario's figures and rules to FILE.",
)
@click.option(
    "--keys",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Acknowledged writes before each fault, and again after recovery.",
)
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds each fault lasts at least.",
)
@click.option("--no-fleet", is_flag=True, help="Launch and count no fleet unit.")
@pass_context
@handle_errors
def drill(
    ctx: Context,
    scenarios: tuple[str, ...],
    json_file: Path | None,
    keys: int,
    hold: float,
    no_fleet: bool,
) -> None:
    """Run etcd functional-tester faults on the lab and check nothing acknowledged is lost.

    SCENARIOS (all when none is named): follower-killed, leader-killed, quorum-killed,
    follower-partitioned, leader-partitioned, quorum-partitioned, follower-delayed,
    leader-delayed; etcd's case names (SIGTERM_LEADER, ...) work too.
    """
    import json

    from provisioner.drill.engine import Settings
    from provisioner.drill.plan import select_scenarios
    from provisioner.drill.report import drill_json, render_scenario, render_summary
    from provisioner.lifecycle.drill import drill as run
    from provisioner.progress import make_progress

    chosen = select_scenarios(scenarios)  # unknown names fail before anything changes
    config = _load(ctx)
    progress = make_progress()
    try:
        results = run(
            config,
            chosen,
            Settings(keys=keys, hold=hold),
            progress,
            fleet=not no_fleet,
            report=lambda result: click.echo(render_scenario(result) + "\n"),
        )
    finally:
        progress.close()
    if json_file is not None:
        json_file.write_text(json.dumps(drill_json(results), indent=2) + "\n")
    click.echo(render_summary(results))
    broken = [r.scenario.name for r in results if not r.ok]
    if broken:
        raise LabError(f"drill: {', '.join(broken)} broke a rule", hint="the table says which")


@main.command()
@click.argument("nodes", nargs=-1, required=True)
@pass_context
@handle_errors
def stop(ctx: Context, nodes: tuple[str, ...]) -> None:
    """Clean shutdown of NODES."""
    from provisioner.lifecycle import stop as do_stop

    for name in do_stop(_load(ctx), nodes):
        click.echo(f"{name}: shut down")


@main.command()
@click.argument("nodes", nargs=-1, required=True)
@pass_context
@handle_errors
def start(ctx: Context, nodes: tuple[str, ...]) -> None:
    """Boot NODES and wait until they answer with their pinned host keys."""
    from provisioner.lifecycle import start as do_start
    from provisioner.progress import make_progress

    progress = make_progress()
    try:
        started = do_start(_load(ctx), nodes, progress)
    finally:
        progress.close()
    for name in started:
        click.echo(f"{name}: running")


@main.command()
@click.option(
    "--workers",
    type=int,
    required=True,
    help="The number of workers the running lab should have (the core stays).",
)
@click.option(
    "--nodes",
    type=int,
    help="Optional: the total it makes; must be the core plus --workers (the core stays).",
)
@accel_option
@pass_context
@handle_errors
def scale(ctx: Context, workers: int, nodes: int | None, accel: str) -> None:
    """Grow or shrink the running lab's worker pool to WORKERS workers.

    New workers are rendered, booted, waited for and checked in fleet; removed ones
    (the highest-numbered) are drained of fleet units first. lab.yaml is not
    rewritten: the lab's state records the new shape. Run again to finish an
    interrupted scale."""
    from provisioner.lifecycle.scale import scale as do_scale
    from provisioner.progress import make_progress

    progress = make_progress()
    try:
        result = do_scale(_load(ctx), workers, progress, nodes=nodes, accel=accel)
    finally:
        progress.close()
    for name in result.added:
        click.echo(f"{name}: added")
    for name in result.removed:
        click.echo(f"{name}: removed")
    base_nodes, base_workers = result.base
    click.echo(
        f"{result.nodes - result.workers} core + {result.workers} workers ({result.detail})"
        + (
            f"; scaled from lab.yaml's {base_nodes - base_workers} core + {base_workers} workers"
            if (result.nodes, result.workers) != result.base
            else "; lab.yaml's shape again"
        )
    )


@main.command()
@click.argument("node")
@accel_option
@pass_context
@handle_errors
def replace(ctx: Context, node: str, accel: str) -> None:
    """Throw NODE's disk and identity away and join a fresh node of the same name.

    An etcd member is removed with `etcdctl member remove` through another member
    (refused unless the others keep a quorum), its domain and disk destroyed, added
    back with `etcdctl member add` and booted fresh from the box with
    initial-cluster-state existing; a worker the same without etcd. New host keys
    are pinned from its console. Run again to finish an interrupted replace."""
    from provisioner.lifecycle.replace import replace_node
    from provisioner.progress import make_progress

    progress = make_progress()
    try:
        done = replace_node(_load(ctx), node, progress, accel=accel)
    finally:
        progress.close()
    if done.member:
        click.echo(f"{done.node}: etcd member {done.old_member_id or '-'} -> {done.new_member_id}")
    click.echo(f"{done.node}: machine-id {done.old_machine_id or '-'} -> {done.new_machine_id}")
    click.echo(f"{done.node}: replaced ({done.detail})")


@main.command()
@click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also copy the journals and consoles into this directory.",
)
@pass_context
@handle_errors
def logs(ctx: Context, into: Path | None) -> None:
    """Save every node's journal beside its serial console log and print where."""
    from provisioner.lifecycle import collect_logs

    click.echo(f"journals and consoles saved in {collect_logs(_load(ctx), into)}")


@main.command()
@pass_context
@handle_errors
def halt(ctx: Context) -> None:
    """Shut every node down cleanly; `lab up` boots them again."""
    from provisioner.lifecycle import halt as do_halt

    for name in do_halt(_load(ctx)):
        click.echo(f"{name}: shut down")


@main.command()
@pass_context
@handle_errors
def destroy(ctx: Context) -> None:
    """Remove the lab's VMs, volumes, network, discovery token and state (not the box)."""
    from provisioner.lifecycle import destroy as do_destroy

    result = do_destroy(_load(ctx))
    click.echo(
        f"removed {len(result.domains)} domains, {len(result.volumes)} volumes, "
        f"{len(result.networks)} networks"
        + ("; discovery token deleted" if result.token_deleted else "")
    )


# --- plain Vagrant ----------------------------------------------------------------


@main.group(name="vagrant-hook", hidden=True)
def vagrant_hook() -> None:
    """What a rendered Vagrantfile has lab do when plain vagrant runs (not for people)."""


@vagrant_hook.command("prepare")
@click.option("--nodes", "count", type=int, required=True, help="config.rb's $num_instances.")
@pass_context
@handle_errors
def vagrant_hook_prepare(ctx: Context, count: int) -> None:
    """Before `vagrant up`: host, box, network, discovery token, config drives."""
    from provisioner.lifecycle.vagranthook import prepare
    from provisioner.progress import make_progress

    lab = _load(ctx)
    progress = make_progress()
    try:
        click.echo(prepare(lab, count, progress), err=True)
    finally:
        progress.close()


@vagrant_hook.command("pin")
@click.argument("node")
@pass_context
@handle_errors
def vagrant_hook_pin(ctx: Context, node: str) -> None:
    """Pin NODE's host keys from its serial console."""
    from provisioner.lifecycle.vagranthook import pin

    click.echo(", ".join(pin(_load(ctx), node)), err=True)


@vagrant_hook.command("booted")
@click.argument("node")
@pass_context
@handle_errors
def vagrant_hook_booted(ctx: Context, node: str) -> None:
    """After `vagrant up` of NODE: pins, login, machine-id, known hosts."""
    from provisioner.lifecycle.vagranthook import booted

    click.echo(booted(_load(ctx), node))


@vagrant_hook.command("destroyed")
@click.argument("node")
@pass_context
@handle_errors
def vagrant_hook_destroyed(ctx: Context, node: str) -> None:
    """After `vagrant destroy` of NODE: forget it; the last one releases the token."""
    from provisioner.lifecycle.vagranthook import destroyed

    click.echo(destroyed(_load(ctx), node))


if __name__ == "__main__":  # pragma: no cover
    main()
