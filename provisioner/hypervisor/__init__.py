"""The host's hypervisor stack: libvirt daemons, lab networks and domains, Vagrant.

- :mod:`.daemons`: virtlogd/libvirtd running, ``qemu:///system`` answering, storage pool;
- :mod:`.naming`: names of everything a lab creates (all carry the lab name);
- :mod:`.network`: the lab's isolated network as data (plan, XML, compare);
- :mod:`.libvirt`: a thin typed layer over libvirt-python (networks, domains, cleanup);
- :mod:`.vagrantfile`: the context Vagrantfile.j2 is rendered from;
- :mod:`.vagrant`: ``vagrant`` commands with deadlines and a log file.
"""
