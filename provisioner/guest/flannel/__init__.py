"""A flannel-compatible overlay network for the guests: ``flanneld``.

Runs inside the guest on Debian's python3 with the standard library only; it
keeps its subnet leases in etcd 3.4 through the v3 JSON gateway (the client of
:mod:`provisioner.guest.fleet.etcd`) and programs the kernel with iproute2's
``ip`` and ``bridge`` commands. See README.md in this directory.
"""

from __future__ import annotations

#: The flannel release whose command line, etcd layout and files are reproduced;
#: printed by ``flanneld --version``.
VERSION = "v0.18.0"
