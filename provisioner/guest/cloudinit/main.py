"""The ``coreos-cloudinit`` command line.

Flags follow coreos-cloudinit's: ``--from-file FILE``, ``--from-configdrive
PATH`` (a mounted config drive directory, or its block device such as
``/dev/disk/by-label/config-2``), ``--validate``, ``--ignore-failure``,
``--ssh-key-name``, ``--workspace`` and ``--version``; Go's single-dash
spelling (``-from-file=FILE``) works too. ``--root DIR`` applies the config
under DIR instead of ``/`` (offline: nothing is started) and
``--source-timeout`` bounds the wait for a source (300 s like the original).

Exit status: 0 on success; 1 when fetching, parsing or applying fails (0 with
``--ignore-failure``) or, with ``--validate``, when the validator reports any
entry; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.guest.cloudinit import VERSION
from provisioner.guest.cloudinit.apply import (
    DEFAULT_WORKSPACE,
    Machine,
    apply_cloud_config,
    run_script,
    with_metadata,
)
from provisioner.guest.cloudinit.config import CloudConfig, parse_cloud_config
from provisioner.guest.cloudinit.datasource import (
    ConfigDrive,
    Datasource,
    Fetched,
    LocalFile,
    Metadata,
    wait_for_datasource,
)
from provisioner.guest.cloudinit.errors import CloudInitError
from provisioner.guest.cloudinit.sshkeys import DEFAULT_SSH_KEY_NAME
from provisioner.guest.cloudinit.system import (
    KernelHost,
    SystemctlSystemd,
    SystemUsers,
    local_ipv4_addresses,
)
from provisioner.guest.cloudinit.userdata import (
    Format,
    decode,
    detect,
    resolve_addresses,
    substitute,
)
from provisioner.guest.cloudinit.validate import validate

log = logging.getLogger(__name__)

SOURCE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Options:
    """The parsed command line."""

    from_file: str | None = None
    from_configdrive: str | None = None
    validate: bool = False
    ignore_failure: bool = False
    ssh_key_name: str = DEFAULT_SSH_KEY_NAME
    workspace: str = DEFAULT_WORKSPACE
    root: str = "/"
    source_timeout: float = SOURCE_TIMEOUT
    version: bool = False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (long options also accepted with one dash, as Go's flag does)."""
    parser = argparse.ArgumentParser(
        prog="coreos-cloudinit",
        description="Apply or validate coreos-cloudinit style cloud-config user-data.",
    )

    def option(name: str, **kwargs: object) -> None:
        parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]

    option("from-file", metavar="FILE", help="read user-data from FILE")
    option(
        "from-configdrive",
        metavar="PATH",
        help="read user-data from a config drive: its mount directory or its block device",
    )
    option("validate", action="store_true", help="validate the user-data, print problems and exit")
    option(
        "ignore-failure",
        action="store_true",
        help="exit 0 when the user-data cannot be fetched or applied",
    )
    option(
        "ssh-key-name",
        default=DEFAULT_SSH_KEY_NAME,
        help="name of the key set written for SSH keys",
    )
    option("workspace", default=DEFAULT_WORKSPACE, help="where scripts from user-data are kept")
    option("root", default="/", help="apply under this directory instead of / (nothing is started)")
    option(
        "source-timeout", type=float, default=SOURCE_TIMEOUT, help="seconds to wait for a source"
    )
    option("version", action="store_true", help="print the version and exit")
    return parser


def parse_args(argv: Sequence[str]) -> Options:
    """Parse the command line into :class:`Options` (exits 2 on usage errors)."""
    namespace = build_parser().parse_args(list(argv))
    return Options(**vars(namespace))


def configure_logging() -> None:
    """Log like Go's ``log`` package: ``YYYY/MM/DD HH:MM:SS message`` lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y/%m/%d %H:%M:%S"))
    package = logging.getLogger("provisioner.guest.cloudinit")
    package.handlers[:] = [handler]
    package.setLevel(logging.INFO)


def first_local_ipv4() -> str:
    """The machine's first non-loopback IPv4 address, or ""."""
    addresses = local_ipv4_addresses()
    return addresses[0] if addresses else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python3 -m provisioner.guest.cloudinit`` and /usr/bin/coreos-cloudinit."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    root = Path(options.root)
    machine = Machine(root, SystemctlSystemd(root), SystemUsers(root), KernelHost(root))
    return run(options, machine, environ=os.environ, local_ipv4=first_local_ipv4)


def _sources(options: Options) -> list[Datasource]:
    sources: list[Datasource] = []
    if options.from_file:
        sources.append(LocalFile(Path(options.from_file)))
    if options.from_configdrive:
        sources.append(ConfigDrive(Path(options.from_configdrive)))
    return sources


def run(
    options: Options,
    machine: Machine,
    *,
    environ: Mapping[str, str],
    local_ipv4: Callable[[], str],
) -> int:
    """Fetch, validate and apply user-data as ``options`` say; returns the exit status."""
    if options.version:
        print(f"coreos-cloudinit {VERSION}")
        return 0
    sources = _sources(options)
    if not sources:
        print("Provide at least one of --from-file or --from-configdrive", file=sys.stderr)
        build_parser().print_usage(sys.stderr)
        return 2
    failure = 0 if options.ignore_failure else 1
    try:
        fetched = _fetch(sources, options.source_timeout)
        text = decode(fetched.userdata)
    except CloudInitError as exc:
        _log_error("Failed fetching user-data from datasource", exc)
        return failure

    reports = validate(text)
    for report in reports:
        log.info("%s", report)
    if options.validate:
        return 1 if reports else 0
    try:
        _apply(text, fetched.metadata, machine, options, environ, local_ipv4)
    except CloudInitError as exc:
        _log_error("Failed to apply cloud-config", exc)
        return failure
    return 0


def _fetch(sources: Sequence[Datasource], timeout: float) -> Fetched:
    source = wait_for_datasource(sources, timeout)
    log.info("Fetching user-data from datasource of type %s", source.name)
    return source.fetch()


def _apply(
    text: str,
    metadata: Metadata,
    machine: Machine,
    options: Options,
    environ: Mapping[str, str],
    local_ipv4: Callable[[], str],
) -> None:
    kind = detect(text)
    if kind is Format.IGNITION:
        log.info("Detected an Ignition config. Exiting...")
        return
    if kind is Format.UNKNOWN:
        raise CloudInitError("Unrecognized user-data format")
    if kind is Format.EMPTY and metadata == Metadata():
        log.info("No user-data or metadata provided by the datasource.")
        return
    addresses = resolve_addresses(metadata.addresses, environ, local_ipv4())
    substituted = substitute(text, addresses.substitutions())
    config = CloudConfig()
    if kind is Format.CLOUD_CONFIG:
        config = parse_cloud_config(substituted)
    changed = apply_cloud_config(
        with_metadata(config, metadata), machine, addresses, ssh_key_name=options.ssh_key_name
    )
    log.info("Applied cloud-config (%d paths changed)", len(changed))
    if kind is Format.SCRIPT:
        run_script(substituted, machine, options.workspace)


def _log_error(what: str, exc: CloudInitError) -> None:
    log.error("%s: %s", what, exc)
    if exc.hint:
        log.error("hint: %s", exc.hint)
