"""Software installed into the guest box.

Everything below this package runs inside the guest on Debian 12's
``/usr/bin/python3`` with only the standard library and PyYAML, so nothing here
may import the host-side modules of :mod:`provisioner` (the host may import
from here, e.g. the cloud-config validator).
"""
