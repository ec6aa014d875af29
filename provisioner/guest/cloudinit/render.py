"""Pure renderers: what coreos-cloudinit writes for each cloud-config section.

Each function takes typed config (and the current file text where the output
merges into an existing file) and returns text or units; the agent writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from provisioner.guest.cloudinit.config import CloudConfig, DropIn, EnvSection, Oem, Unit, Update
from provisioner.guest.cloudinit.errors import CloudInitError
from provisioner.guest.cloudinit.goformat import quote
from provisioner.guest.cloudinit.schema import Type

DROP_IN_NAME = "20-cloudinit.conf"
FLANNEL_OPTIONS = "/run/flannel/options.env"
UPDATE_CONF = "/etc/coreos/update.conf"
UPDATE_CONF_DEFAULT = "/usr/share/coreos/update.conf"
LOCKSMITH_UNIT = "locksmithd.service"
UPDATE_ENGINE_UNIT = "update-engine.service"


def service_drop_in(section: EnvSection) -> str:
    """``[Service]`` with one ``Environment="KEY=value"`` line per setting; "" when none."""
    if not section:
        return ""
    lines = "".join(f'Environment="{key}={val}"\n' for key, val in section.values)
    return "[Service]\n" + lines


def flannel_options(section: EnvSection) -> str:
    """/run/flannel/options.env: ``KEY=value`` lines joined by newlines (none at the end)."""
    return "\n".join(f"{key}={val}" for key, val in section.values)


def _runtime_drop_in_unit(name: str, section: EnvSection) -> list[Unit]:
    content = service_drop_in(section)
    if not content:
        return []
    return [Unit(name=name, runtime=True, drop_ins=(DropIn(DROP_IN_NAME, content),))]


def update_units(update: Update) -> list[Unit]:
    """locksmithd follows the reboot strategy; update-engine restarts for a new group/server."""
    units = []
    if update.reboot_strategy:
        if update.reboot_strategy == "off":
            units.append(Unit(name=LOCKSMITH_UNIT, runtime=True, mask=True, command="stop"))
        else:
            units.append(Unit(name=LOCKSMITH_UNIT, runtime=True, command="restart"))
    if update.group or update.server:
        units.append(Unit(name=UPDATE_ENGINE_UNIT, command="restart"))
    return units


def drop_in_units(config: CloudConfig) -> list[Unit]:
    """Runtime units carrying the etcd, etcd2, fleet and locksmith settings as drop-ins."""
    coreos = config.coreos
    return [
        *_runtime_drop_in_unit("etcd.service", coreos.etcd),
        *_runtime_drop_in_unit("etcd2.service", coreos.etcd2),
        *_runtime_drop_in_unit("fleet.service", coreos.fleet),
        *_runtime_drop_in_unit(LOCKSMITH_UNIT, coreos.locksmith),
    ]


def assert_valid(section: EnvSection, typ: Type) -> None:
    """Raise coreos-cloudinit's runtime error for the first setting not matching its pattern."""
    values = dict(section.values)
    for spec in typ.fields:
        val = values.get(spec.env, "")
        if spec.valid and val and re.search(spec.valid, val) is None:
            raise CloudInitError(
                f"invalid value {quote(val)} for option {quote(spec.name)} "
                f"(valid options: {quote(spec.valid)})"
            )


def update_conf(update: Update, existing: str) -> str:
    """update.conf with REBOOT_STRATEGY/GROUP/SERVER replaced or appended (sorted)."""
    pending = {key: f"{key}={val}" for key, val in update.values}
    out = []
    for line in existing.splitlines():
        for key in list(pending):
            if line.startswith(key):
                line = pending.pop(key)
                break
        out.append(line + "\n")
    out.extend(pending[key] + "\n" for key in sorted(pending))
    return "".join(out)


def etc_hosts(option: str, hostname: str) -> str:
    """/etc/hosts for ``manage_etc_hosts``; only ``localhost`` is supported."""
    if option != "localhost":
        raise CloudInitError(
            f"Invalid option to manage_etc_hosts: {quote(option)}",
            hint='the only supported value is "localhost"',
        )
    return f"127.0.0.1 {hostname}\n"


def oem_release(oem: Oem) -> str:
    """/etc/oem-release for ``coreos.oem``."""
    return (
        f"ID={oem.id}\n"
        f"VERSION_ID={oem.version_id}\n"
        f"NAME={quote(oem.name)}\n"
        f"HOME_URL={quote(oem.home_url)}\n"
        f"BUG_REPORT_URL={quote(oem.bug_report_url)}\n"
    )


_ENV_LINE = re.compile(r"^((?:([a-zA-Z0-9_]+)=)?.*?)\r?\n", re.MULTILINE)
_ENV_KEY = re.compile(r"^[a-zA-Z0-9_]+$")


def merge_env_file(existing: str, values: Mapping[str, str]) -> str:
    """Set ``KEY=value`` lines in an environment file, keeping everything else.

    Existing keys are updated in place; new keys are appended sorted.
    """
    for key in values:
        if not _ENV_KEY.match(key):
            raise CloudInitError(f"invalid environment variable name {quote(key)}")
    pending = dict(values)
    if existing and not existing.endswith("\n"):
        existing += "\n"
    out = []
    for match in _ENV_LINE.finditer(existing):
        key = match.group(2)
        if key is not None and key in pending:
            out.append(f"{key}={pending.pop(key)}\n")
        else:
            out.append(match.group(1) + "\n")
    out.extend(f"{key}={pending[key]}\n" for key in sorted(pending))
    return "".join(out)
