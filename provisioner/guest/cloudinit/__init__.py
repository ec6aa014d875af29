"""A coreos-cloudinit compatible agent and validator for the guests.

``python3 -m provisioner.guest.cloudinit`` (installed as ``/usr/bin/coreos-cloudinit``)
reads cloud-config user-data from a config drive or a file, validates it the
way ``coreos-cloudinit --validate`` does and applies it: hostname, users, SSH
keys, files, etcd/fleet/flannel/locksmith/update settings and systemd units.

The host imports :func:`provisioner.guest.cloudinit.validate.validate` too, so
this package uses only the standard library and PyYAML.
"""

#: The coreos-cloudinit release whose behaviour is reproduced (``--version``).
VERSION = "1.14.0"
