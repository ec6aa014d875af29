# coreos-vagrant style settings for lab golden, rendered by `lab render`.
# The Vagrantfile beside this file reads it, so you can edit it and run plain
# `vagrant up` here: the Vagrantfile has lab prepare what Vagrant needs (the box,
# the lab network, the discovery token, config drives). `lab render` will not
# overwrite your edits without --force. A value of the wrong type, or one lab
# cannot honour, stops `vagrant` with a message naming the knob before any VM is made.

# Size of the cluster: at most the nodes rendered. To grow it, run
# `lab render --nodes N` first so every node gets its cloud-config.
$num_instances = 1

# Node names are "#{$instance_name_prefix}-01" and so on. The names are in each
# node's cloud-config, so another prefix needs instance_name_prefix in lab.yaml
# and `lab render`.
$instance_name_prefix = "core"

# coreos-vagrant's release channel. The box is built here from Debian packages
# (`lab box build`), so there are no channels: stable, beta, alpha are
# accepted and change nothing.
$update_channel = "stable"

# coreos-vagrant fetched a discovery token on every `vagrant up`. lab makes a
# fresh token for every new cluster itself (never one a running cluster used),
# from the discovery lab.yaml names, so leave this unset.
# $new_discovery_url = 'https://discovery.etcd.io/new'

# Guest resources: MiB (at least 384) and virtual CPUs.
$vm_memory = 768
$vm_cpus = 1

# Write each node's serial console to @LAB_DIR@/.lab/logs/<node>.log.
# Always on: lab pins each node's SSH host keys from its console.
$enable_serial_logging = true

# Guest port => host port, forwarded on every node (host ports get +1 per node),
# on the host's 127.0.0.1.
$forwarded_ports = {}

# Host directories in the guests, with virtio-fs (vagrant-libvirt's `virtiofs`
# synced folders; no NFS server needed): $share_home mounts your home directory at
# the same path, $shared_folders maps host path => guest path.
$share_home = false
$shared_folders = {}

# coreos-vagrant put docker's unauthenticated API on TCP and forwarded it here.
# lab does not: use docker on a node (`vagrant ssh core-01 -c 'docker ps'`), or add a
# docker-tcp.socket unit through cloud_config in lab.yaml and forward its port
# with $forwarded_ports.
# $expose_docker_tcp = 2375
