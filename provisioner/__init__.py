"""lab: a CoreOS-style etcd + fleet + systemd cluster on local VMs."""

__version__ = "0.1.0"
