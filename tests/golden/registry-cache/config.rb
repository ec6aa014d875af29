# coreos-vagrant style settings for lab golden, rendered by `lab render`.
# The Vagrantfile beside this file reads it, so you can edit it and run plain
# `vagrant up` here. `lab render` will not overwrite your edits without --force.

# Size of the cluster (1 nodes were rendered; to grow it, run
# `lab render --nodes N` so every node gets its cloud-config).
$num_instances = 1

# Node names are "#{$instance_name_prefix}-01" and so on.
$instance_name_prefix = "core"

# Selects the box version built by `lab box build`.
$update_channel = "stable"

# Guest resources.
$vm_memory = 768
$vm_cpus = 1

# Write each node's serial console to @LAB_DIR@/.lab/logs/<node>.log.
$enable_serial_logging = true

# Guest port => host port, forwarded on every node (host ports get +1 per node).
$forwarded_ports = {}
