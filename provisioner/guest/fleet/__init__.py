"""A fleet-compatible cluster init system for the guests: ``fleetd`` and ``fleetctl``.

Runs inside the guest on Debian's python3 with the standard library only; it
talks to etcd 3.4 through the v3 JSON gateway (see README.md in this directory
for the key layout and why v3 was chosen).
"""

from __future__ import annotations

#: The fleet release whose behaviour (CLI surface, messages, scheduling) is
#: reproduced; reported by ``fleetctl version`` and ``fleetd --version``.
VERSION = "1.0.0"
