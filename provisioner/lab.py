"""Core operations behind the ``lab`` verbs that don't need a VM.

Each function takes typed config and does one job; the CLI only parses flags,
calls one of these and maps :class:`LabError` to an exit code.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from provisioner import discovery_modes
from provisioner.accel import choose_accel
from provisioner.config import STATE_DIR, LabConfig, Overrides, load_config
from provisioner.errors import ConfigError
from provisioner.render import RenderInputs, load_fragments, render_lab, write_files
from provisioner.state import (
    JOINED_EXISTING,
    SPENT_DISCOVERY,
    LabState,
    ensure_ssh_key,
    keep_rendered_record,
    load_state,
    rendered_record,
    save_state,
)

log = logging.getLogger(__name__)


SAVED_FLAGS = "flags"
SCALE = "scale"  # state.json's record of `lab scale`: the lab's shape now, and lab.yaml's


@dataclass(frozen=True)
class ScaleRecord:
    """What ``lab scale`` made of the lab: ``nodes`` of which ``workers`` are workers,
    from the shape lab.yaml (and the flags of ``lab up``) gave it (``base_*``)."""

    nodes: int
    workers: int
    base_nodes: int
    base_workers: int


def scale_record(state: LabState) -> ScaleRecord | None:
    """The lab's scaled shape, if ``lab scale`` changed it (``lab destroy`` forgets it)."""
    raw = state.extra.get(SCALE)
    if not isinstance(raw, dict):
        return None
    try:
        return ScaleRecord(**{k: int(raw[k]) for k in asdict(ScaleRecord(0, 0, 0, 0))})
    except (KeyError, TypeError, ValueError):
        return None


def with_scale(state: LabState, record: ScaleRecord | None) -> LabState:
    """``state`` recording ``record``; None (the lab back at lab.yaml's shape) drops it."""
    extra = {k: v for k, v in state.extra.items() if k != SCALE}
    if record is not None and (record.nodes, record.workers) != (
        record.base_nodes,
        record.base_workers,
    ):
        extra[SCALE] = asdict(record)
    return replace(state, extra=extra)


def load_lab(
    directory: Path,
    overrides: Overrides | None = None,
    config_file: Path | None = None,
) -> LabConfig:
    """The lab's config: flags given now > the shape ``lab scale`` made > flags the lab
    was rendered with > lab.yaml.

    So after ``lab up --nodes 1``, ``lab status`` or ``lab destroy`` without flags
    still mean the one-node lab (``.vagrant`` style), and after ``lab scale`` every
    verb sees the scaled lab; ``lab destroy`` forgets both.
    """
    given = overrides or Overrides()
    state = load_state(directory / STATE_DIR)
    saved = dict(state.extra.get(SAVED_FLAGS, {}))
    scaled = scale_record(state)
    if scaled is not None and given.num_instances is None and given.workers is None:
        saved.update(num_instances=scaled.nodes, workers=scaled.workers)
    merged = Overrides(
        **{
            key: value if value is not None else saved.get(key)
            for key, value in asdict(given).items()
        }
    )
    if config_file is None and saved.get("config_file"):
        config_file = Path(saved["config_file"])
    return load_config(directory, merged, config_file)


def remember_flags(config: LabConfig, overrides: Overrides, config_file: Path | None) -> None:
    """Record the flags a render used, for later verbs (see :func:`load_lab`)."""
    state = load_state(config.state_dir)
    flags: dict[str, object] = {k: v for k, v in asdict(overrides).items() if v is not None}
    saved = dict(state.extra.get(SAVED_FLAGS, {}))
    saved.update(flags)
    if config_file is not None:
        saved["config_file"] = str(config_file.resolve())
    save_state(config.state_dir, replace(state, extra={**state.extra, SAVED_FLAGS: saved}))


@dataclass(frozen=True)
class RenderResult:
    out_dir: Path
    files: tuple[str, ...]
    discovery_url: str | None


def box_name(config: LabConfig) -> str:
    """The Vagrant box a lab boots: ``lab/<recipe>-<key>``, named by what it is built from.

    The key hashes the recipe and the guest software, so a changed box is a new
    name and a lab never boots a stale one.
    """
    from provisioner.box.build import current_key
    from provisioner.box.package import vagrant_box_name
    from provisioner.box.recipe import find_recipe

    recipe = find_recipe(config.box)
    return vagrant_box_name(recipe.name, current_key(recipe))


def lab_command() -> tuple[str, ...]:
    """How a rendered Vagrantfile runs this lab: the ``lab`` executable beside this
    Python (a virtualenv's or an installation's bin), else the one on PATH, else this
    Python with ``-m provisioner.cli``. ``LAB_COMMAND`` overrides (split on spaces)."""
    given = os.environ.get("LAB_COMMAND", "").split()
    if given:
        return tuple(given)
    beside = Path(sys.executable).parent / "lab"
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside),)
    found = shutil.which("lab")
    if found:
        return (str(Path(found).resolve()),)
    return (sys.executable, "-m", "provisioner.cli")


def render_inputs(
    config: LabConfig, state: LabState, accel: str = "auto"
) -> tuple[RenderInputs, LabState]:
    """Collect the key, discovery URL and driver; returns the updated state."""
    key_path, public_key = ensure_ssh_key(config.state_dir)
    previous = state.discovery
    if previous is not None and state.extra.get(SPENT_DISCOVERY) == previous.url:
        previous = None  # its cluster is gone (`vagrant destroy`): a new one, a new token
    record = discovery_modes.resolve(config, previous)
    state = replace(state, name=config.name, discovery=record)
    inputs = RenderInputs(
        ssh_public_key=public_key,
        ssh_private_key_path=key_path,
        discovery_url=record.url if record else None,
        box_name=box_name(config),
        box_version=None,
        driver=choose_accel(accel).driver,
        lab_command=lab_command(),
        joining=joined_existing(state),
    )
    return inputs, state


def joined_existing(state: LabState) -> frozenset[str]:
    """The members ``lab replace`` joined to the running cluster."""
    raw = state.extra.get(JOINED_EXISTING, [])
    return frozenset(str(name) for name in raw) if isinstance(raw, list) else frozenset()


def with_joined(state: LabState, name: str) -> LabState:
    """``state`` recording that member ``name`` joins the running cluster."""
    joined = sorted(joined_existing(state) | {name})
    return replace(state, extra={**state.extra, JOINED_EXISTING: joined})


def render(
    config: LabConfig, out_dir: Path | None = None, *, force: bool = False, accel: str = "auto"
) -> RenderResult:
    """Render and validate every file, then write them; nothing is written on error."""
    out = (out_dir or config.directory).resolve()
    fragments = load_fragments(config)  # the user's files are checked before anything is made
    state = load_state(config.state_dir)
    inputs, state = render_inputs(config, state, accel)
    files = render_lab(config, inputs, fragments)
    rendered = write_files(out, files, rendered_record(config.state_dir, state), force=force)
    save_state(config.state_dir, replace(state, rendered=rendered).with_phase("render"))
    log.info("rendered %d files into %s", len(files), out)
    return RenderResult(out_dir=out, files=tuple(files), discovery_url=inputs.discovery_url)


EXTERNAL_MODES = ("static", "public")


def render_external(
    config: LabConfig,
    out_dir: Path,
    *,
    force: bool = False,
    lab_key: bool = False,
) -> RenderResult:
    """User-data for machines lab does not boot: one ``nodes/<node>/user-data`` per node
    at the addresses lab.yaml gives, validated, into ``out_dir``.

    No lab gateway (``local`` discovery is refused), no Vagrantfile, no emulation
    tweaks; the user's ``ssh_authorized_keys``, and the lab's own key only with
    ``lab_key``. The lab's state is left alone: the record of what was written (so
    edits there are not overwritten) is kept in ``out_dir/.lab/``."""
    mode = config.discovery
    if mode == "local":
        raise ConfigError(
            "local discovery is the lab host's own service on a lab network; "
            "machines lab does not boot cannot reach it",
            key="discovery",
            hint="use --discovery static (initial-cluster from the nodes' addresses), or a "
            "discovery URL (--discovery public says how to get one from discovery.etcd.io)",
        )
    if mode == "public":
        raise discovery_modes.public_token_needed(len(config.members))
    if not config.ssh_authorized_keys and not lab_key:
        raise ConfigError(
            "no SSH key would be authorized on the machines",
            key="ssh_authorized_keys",
            hint="list your public keys under ssh_authorized_keys in lab.yaml, "
            "or pass --lab-key to authorize the lab's own key",
        )
    out = out_dir.resolve()
    fragments = load_fragments(config)
    public_key = ensure_ssh_key(config.state_dir)[1] if lab_key else ""
    inputs = RenderInputs(
        ssh_public_key=public_key,
        ssh_private_key_path=config.state_dir / "ssh" / "id_ed25519",
        discovery_url=None if mode == "static" else mode,
        box_name="",  # no Vagrantfile
        box_version=None,
        driver="kvm",
        external=True,
        authorize_lab_key=lab_key,
    )
    files = render_lab(config, inputs, fragments)
    record_dir = out / STATE_DIR
    previous = rendered_record(record_dir, LabState())
    written = write_files(out, files, previous, force=force)
    keep_rendered_record(record_dir, {**previous, **written})
    log.info("rendered %d files for external machines into %s", len(files), out)
    return RenderResult(out_dir=out, files=tuple(files), discovery_url=inputs.discovery_url)
