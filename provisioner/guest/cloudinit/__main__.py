"""``python3 -m provisioner.guest.cloudinit``: the coreos-cloudinit command."""

import sys

from provisioner.guest.cloudinit.main import main

sys.exit(main())
