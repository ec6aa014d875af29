"""Names of everything a lab creates in libvirt, all derived from the lab's name.

Every object carries the lab name so it can be found without the state file:

- network ``lab-<lab>``, bridge ``lab-<10 hex>`` (Linux allows 15 characters);
- domains ``lab-<lab>_<node>`` (vagrant-libvirt's ``default_prefix`` + machine name);
- volumes ``lab-<lab>_<node>.img`` (vagrant-libvirt names them after the domain).

Lab names may hold ``-`` but never ``_``, so the prefix of lab ``a`` never
matches the objects of lab ``a-b``.
"""

from __future__ import annotations

import hashlib
import re

from provisioner.errors import ConfigError

# The same rule as lab.yaml's `name` (provisioner.config); no "_", see above.
_LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
_NODE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_BRIDGE_NAME = 15  # IFNAMSIZ - 1


def check_lab_name(lab: str) -> str:
    """Return ``lab`` if it can name libvirt objects, else raise ConfigError."""
    if not _LAB_NAME.fullmatch(lab):
        raise ConfigError(
            f"invalid lab name {lab!r}",
            key="name",
            hint="start with a letter; use up to 31 lower-case letters, digits and dashes",
        )
    return lab


def check_node_name(node: str) -> str:
    """Return ``node`` if it is a valid host name label, else raise ConfigError."""
    if not _NODE_NAME.fullmatch(node):
        raise ConfigError(
            f"invalid node name {node!r}",
            key="nodes",
            hint="use lower-case letters, digits and inner dashes, e.g. `core-01`",
        )
    return node


def network_name(lab: str) -> str:
    """The libvirt network of ``lab``."""
    return f"lab-{check_lab_name(lab)}"


def bridge_name(lab: str) -> str:
    """A short, stable bridge device name for ``lab`` (14 characters)."""
    digest = hashlib.sha256(check_lab_name(lab).encode()).hexdigest()[:10]
    return f"lab-{digest}"


def object_prefix(lab: str) -> str:
    """The prefix of every domain and volume of ``lab`` (vagrant-libvirt ``default_prefix``)."""
    return f"lab-{check_lab_name(lab)}_"


def domain_name(lab: str, node: str) -> str:
    """The libvirt domain vagrant-libvirt creates for ``node`` of ``lab``."""
    return object_prefix(lab) + check_node_name(node)
