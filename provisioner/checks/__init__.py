"""``lab verify``: testinfra checks run against every node over pinned SSH.

The check modules (``test_etcd.py``, ``test_fleet.py``, ``test_system.py``) ship with
the package and are run by :func:`provisioner.checks.runner.run_verify` in a pytest
subprocess, with the plugin :mod:`provisioner.checks.plugin`.
"""
