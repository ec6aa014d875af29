"""Rendering: typed config in, file texts out.

``render_lab`` is pure: it takes the validated :class:`LabConfig` and the lab's
inputs (SSH public key, discovery URL) and returns ``{relative path: text}``.
Every rendered cloud-config is validated with the same validator the guest runs
(``coreos-cloudinit --validate``) before anything is written.

Output layout (relative to the output directory)::

    Vagrantfile              from Vagrantfile.j2; reads config.rb like coreos-vagrant
    config.rb                coreos-vagrant knobs ($num_instances, $vm_memory, ...)
    nodes/<node>/user-data   one cloud-config per node
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from provisioner.config import (
    ETCD_CLIENT_PORT,
    ETCD_LEGACY_PORT,
    MIN_MEMORY_MB,
    UPDATE_CHANNELS,
    LabConfig,
    NodeSpec,
)
from provisioner.errors import ConfigError, LabError, ValidationError
from provisioner.guest.cloudinit.validate import Report, validate
from provisioner.hypervisor.naming import network_name
from provisioner.hypervisor.vagrantfile import VagrantContext, VagrantNode
from provisioner.hypervisor.vagrantfile import render_vagrantfile as render_vagrantfile_context
from provisioner.resources import templates_dir, vagrantfile_template
from provisioner.state import LIBVIRT_PATHS_FILE, atomic_write

USER_DATA_TEMPLATE = "user-data.j2"
CONFIG_RB_TEMPLATE = "config.rb.j2"
FRAGMENT_KEYS = ("write_files", "coreos")
FRAGMENT_COREOS_KEYS = ("units",)

_PLAIN_SCALAR = re.compile(r"^[A-Za-z0-9_./:@+-][A-Za-z0-9_./:@+,= -]*$")


@dataclass(frozen=True)
class RenderInputs:
    """What rendering needs besides the config; kept in lab state so re-renders match."""

    ssh_public_key: str
    ssh_private_key_path: Path
    discovery_url: str | None  # None for static bootstrap
    box_name: str
    box_version: str | None
    driver: str  # "kvm" or "qemu" (TCG)
    # how the Vagrantfile's hooks run `lab` (the command that rendered it)
    lab_command: tuple[str, ...] = ("lab",)
    # user-data for machines lab does not boot: no Vagrantfile, no emulation tweaks,
    # the lab's key only when ``authorize_lab_key``
    external: bool = False
    authorize_lab_key: bool = True
    # members that join the running cluster (``lab replace``): a static initial-cluster
    # with initial-cluster-state existing, never the discovery token again
    joining: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Fragment:
    """A user's extra cloud-config: units and write_files merged into nodes."""

    path: Path
    units: tuple[dict[str, Any], ...]
    write_files: tuple[dict[str, Any], ...]


# --- Jinja filters ----------------------------------------------------------


def yaml_str(value: object) -> str:
    """A YAML scalar for ``value``: plain when unambiguous, else double-quoted."""
    text = str(value)
    if _PLAIN_SCALAR.match(text) and not text.endswith(" ") and ": " not in text:
        loaded = yaml.safe_load(text)
        if loaded == text:
            return text
    return json.dumps(text)


def ruby_str(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("#{", "\\#{")
    return f'"{text}"'


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks so rendered units stay readable."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(value: object, indent: int) -> str:
    text = yaml.dump(value, Dumper=_BlockDumper, default_flow_style=False, sort_keys=False)
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in text.rstrip("\n").split("\n"))


def _environment(searchpath: Sequence[Path]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in searchpath]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - output is YAML/Ruby, not HTML
    )
    filters: dict[str, Callable[..., str]] = {
        "yaml_str": yaml_str,
        "ruby_str": ruby_str,
        "to_yaml": to_yaml,
    }
    env.filters.update(filters)
    return env


# --- fragments --------------------------------------------------------------


def load_fragment(path: Path) -> Fragment:
    """Read and validate a user's cloud-config fragment; errors name file and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read cloud-config fragment: {exc.strerror}", path=str(path)
        ) from exc
    errors = [r for r in validate(text) if r.kind == "error"]
    if errors:
        raise ValidationError(
            f"{path}: " + "; ".join(str(r) for r in errors),
            hint="fix the fragment; `lab validate FILE` shows every entry",
        )
    data = yaml.safe_load(text) or {}
    for key in data:
        if key not in FRAGMENT_KEYS:
            raise ConfigError(
                "only coreos.units and write_files are merged from fragments",
                path=str(path),
                key=str(key),
                hint="put node settings in lab.yaml instead",
            )
    coreos = data.get("coreos") or {}
    for key in coreos:
        if key not in FRAGMENT_COREOS_KEYS:
            raise ConfigError(
                "only coreos.units is merged from fragments",
                path=str(path),
                key=f"coreos.{key}",
                hint="etcd2, fleet and flannel settings come from lab.yaml",
            )
    return Fragment(
        path=path,
        units=tuple(coreos.get("units") or ()),
        write_files=tuple(data.get("write_files") or ()),
    )


# --- rendering --------------------------------------------------------------


def initial_cluster(config: LabConfig) -> str:
    return ",".join(f"{n.name}=http://{n.ip}:2380" for n in config.members)


def gateway_endpoints(config: LabConfig) -> str:
    """Every core member's client address, as ``etcd gateway start --endpoints`` takes them."""
    return ",".join(f"{n.ip}:{ETCD_CLIENT_PORT}" for n in config.members)


def etcdctl_api_files(config: LabConfig) -> list[dict[str, str]]:
    """``etcdctl_api`` on a guest: ETCDCTL_API for every SSH session (pam_env reads
    ``/etc/environment`` for sshd's sessions, with or without a command: ``lab ssh``,
    ``lab exec``, ``vagrant ssh``), for login shells (``/etc/profile.d``, also on the
    console) and, through systemd's ``DefaultEnvironment=``, for every unit (read at
    boot and on the daemon-reload cloud-config does after writing its units)."""
    api = config.etcdctl_api
    return [
        {
            "path": "/etc/environment",
            "permissions": "0644",
            "content": f"ETCDCTL_API={api}\n",
        },
        {
            "path": "/etc/profile.d/etcdctl-api.sh",
            "permissions": "0644",
            "content": f"# lab.yaml etcdctl_api: the API etcdctl speaks by default\n"
            f"export ETCDCTL_API={api}\n",
        },
        {
            "path": "/etc/systemd/system.conf.d/10-etcdctl-api.conf",
            "permissions": "0644",
            "content": f"# lab.yaml etcdctl_api, for every unit (etcdctl in ExecStart= lines)\n"
            f"[Manager]\nDefaultEnvironment=ETCDCTL_API={api}\n",
        },
    ]


DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"


def registry_mirrors(config: LabConfig) -> list[str]:
    """The lab registry at the gateway, then (with an upstream) its pull-through cache:
    docker tries the mirrors in order for Docker Hub names, then Docker Hub itself."""
    if not config.registry.enabled:
        return []
    mirrors = [config.registry_address]
    if config.registry.upstream:
        mirrors.append(f"{config.gateway}:{config.registry.cache_port}")
    return mirrors


def docker_daemon_files(config: LabConfig) -> list[dict[str, str]]:
    """docker's ``daemon.json`` on a guest: the lab registry as Docker Hub's mirror (so
    ``docker pull mongo:7`` is answered from ``library/mongo:7`` there) and as an
    insecure (plain http) registry, so ``GATEWAY:PORT/NAME`` works too. Written before
    docker first starts (docker.socket starts it on first use)."""
    mirrors = registry_mirrors(config)
    if not mirrors:
        return []
    daemon = {
        "registry-mirrors": [f"http://{address}" for address in mirrors],
        "insecure-registries": mirrors,
    }
    return [
        {
            "path": DOCKER_DAEMON_JSON,
            "permissions": "0644",
            "content": json.dumps(daemon, indent=2) + "\n",
        }
    ]


def render_user_data(
    config: LabConfig,
    node: NodeSpec,
    inputs: RenderInputs,
    fragments: Mapping[Path, Fragment],
    env: jinja2.Environment | None = None,
) -> str:
    env = env or _environment([templates_dir()])
    chosen = [fragments[p] for p in (*config.cloud_config, *node.cloud_config)]
    slow = inputs.driver == "qemu" and not inputs.external
    context = {
        "lab": config,
        "node": node,
        "external": inputs.external,
        "authorized_keys": authorized_keys(config, inputs),
        "discovery_url": inputs.discovery_url,
        "joins_existing": node.name in inputs.joining,
        "initial_cluster": initial_cluster(config),
        # every node talks to etcd at 127.0.0.1: a core node's member, a worker's gateway
        "fleet_etcd_servers": f"http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "gateway_endpoints": gateway_endpoints(config),
        "v2_proxy_port": ETCD_LEGACY_PORT,
        "flannel_config": json.dumps(
            {"Network": config.flannel.network, "Backend": {"Type": config.flannel.backend}},
            separators=(",", ":"),
        ),
        # under software emulation etcd's default 100 ms heartbeat starves; relax it
        "etcd_heartbeat_interval": 500 if slow else None,
        "etcd_election_timeout": 5000 if slow else None,
        # and a commit can take longer than fleet's default 1 s request timeout
        "fleet_etcd_request_timeout": 5.0 if slow else None,
        "extra_units": [unit for f in chosen for unit in f.units],
        "write_files": [
            *etcdctl_api_files(config),
            # the lab registry lives at the lab's gateway, which an external machine lacks
            *([] if inputs.external else docker_daemon_files(config)),
            *(e for f in chosen for e in f.write_files),
        ],
    }
    return env.get_template(USER_DATA_TEMPLATE).render(context)


def authorized_keys(config: LabConfig, inputs: RenderInputs) -> list[str]:
    """The keys a node authorizes for core: the lab's (unless left out), then the user's."""
    keys = [inputs.ssh_public_key] if inputs.authorize_lab_key else []
    return keys + [key for key in config.ssh_authorized_keys if key not in keys]


def render_config_rb(config: LabConfig, env: jinja2.Environment | None = None) -> str:
    env = env or _environment([templates_dir()])
    return env.get_template(CONFIG_RB_TEMPLATE).render(
        lab=config,
        serial_log_dir=config.state_dir / "logs",
        update_channels=UPDATE_CHANNELS,
        min_memory=MIN_MEMORY_MB,
    )


def vagrant_context(config: LabConfig, inputs: RenderInputs) -> VagrantContext:
    drives = config.state_dir / "config-drives"
    return VagrantContext(
        lab_name=config.name,
        box_name=inputs.box_name,
        box_version=inputs.box_version,
        driver="kvm" if inputs.driver == "kvm" else "qemu",
        cpu_model="host-passthrough" if inputs.driver == "kvm" else "qemu64",
        network_name=network_name(config.name),
        network_address=config.subnet,
        ssh_private_key_path=inputs.ssh_private_key_path,
        serial_log_dir=config.state_dir / "logs",
        libvirt_paths_file=config.state_dir / LIBVIRT_PATHS_FILE,
        libvirt_uri=config.libvirt_uri,
        instance_name_prefix=config.instance_name_prefix,
        lab_dir=config.directory,
        state_dir=config.state_dir,
        lab_command=inputs.lab_command,
        update_channels=UPDATE_CHANNELS,
        min_memory=MIN_MEMORY_MB,
        nodes=tuple(
            VagrantNode(
                name=node.name,
                ip=node.ip,
                mac=node.mac,
                memory=config.vm_memory,
                cpus=config.vm_cpus,
                config_drive_path=drives / f"{node.name}.iso",
                user_data_path=Path("nodes") / node.name / "user-data",
            )
            for node in config.nodes
        ),
    )


def render_vagrantfile(config: LabConfig, inputs: RenderInputs) -> str:
    template = vagrantfile_template()
    env = _environment([template.parent])
    return render_vagrantfile_context(vagrant_context(config, inputs), env)


def load_fragments(config: LabConfig) -> dict[Path, Fragment]:
    """Every cloud-config fragment the lab names, validated."""
    paths = {*config.cloud_config, *(p for n in config.nodes for p in n.cloud_config)}
    return {path: load_fragment(path) for path in sorted(paths)}


def render_lab(
    config: LabConfig, inputs: RenderInputs, fragments: Mapping[Path, Fragment] | None = None
) -> dict[str, str]:
    """Every file of the lab, validated. Pure apart from reading templates and fragments."""
    if fragments is None:
        fragments = load_fragments(config)
    env = _environment([templates_dir()])
    files: dict[str, str] = {}
    if not inputs.external:
        files["Vagrantfile"] = render_vagrantfile(config, inputs)
        files["config.rb"] = render_config_rb(config, env)
    problems: list[str] = []
    for node in config.nodes:
        path = f"nodes/{node.name}/user-data"
        text = render_user_data(config, node, inputs, fragments, env)
        reports = [r for r in validate(text) if r.kind == "error" or _is_ours(r)]
        problems.extend(f"{path}: {r}" for r in reports)
        files[path] = text
    if problems:
        raise ValidationError(
            "rendered cloud-config is invalid:\n  " + "\n  ".join(problems),
            hint="check the cloud-config fragments named in lab.yaml",
        )
    return files


def _is_ours(report: Report) -> bool:
    """Warnings other than coreos-cloudinit's deprecation notes for etcd2/fleet."""
    return report.kind == "warning" and "deprecated key" not in report.message


# --- writing ----------------------------------------------------------------


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_overwrites(
    out_dir: Path, files: Mapping[str, str], previous: Mapping[str, str]
) -> list[str]:
    """Files the user changed since lab last wrote them (they would be lost)."""
    edited = []
    for rel in files:
        target = out_dir / rel
        if not target.exists():
            continue
        current = sha256_text(target.read_text())
        if current != previous.get(rel) and current != sha256_text(files[rel]):
            edited.append(rel)
    return edited


def write_files(
    out_dir: Path,
    files: Mapping[str, str],
    previous: Mapping[str, str],
    *,
    force: bool = False,
) -> dict[str, str]:
    """Write the rendered files; refuse to clobber edits unless ``force``.

    Returns the new ``{path: sha256}`` record for lab state.
    """
    edited = [] if force else check_overwrites(out_dir, files, previous)
    if edited:
        raise LabError(
            f"{out_dir}: these files were edited since lab rendered them: {', '.join(edited)}",
            hint="keep a copy and re-run with --force to overwrite, or render with --out DIR",
        )
    for rel, text in files.items():
        atomic_write(out_dir / rel, text.encode())
    return {rel: sha256_text(text) for rel, text in files.items()}
