"""Network faults a lab injects from the host: partitions and slow or lossy links.

- :mod:`~provisioner.faults.plan`: the faults as data, the checks of a request and
  what the host must do for them (an nftables ruleset, tc commands), all pure;
- :mod:`~provisioner.faults.host`: applying a plan through a runner on the host.

:mod:`provisioner.lifecycle.faults` ties them to a lab: its nodes, libvirt's tap
devices, the record under ``.lab/`` and the lab's lock.
"""
