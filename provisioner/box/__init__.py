"""Building, caching and booting lab's guest box.

- :mod:`~provisioner.box.recipe`: ``boxes/NAME/recipe.yaml`` as typed data.
- :mod:`~provisioner.box.build`: ``build_box()`` / ``list_boxes()`` (cache, Vagrant).
- :mod:`~provisioner.box.rootfs`: debootstrap and the chroot configuration.
- :mod:`~provisioner.box.guest`: the project's guest software into the image.
- :mod:`~provisioner.box.image`, :mod:`~provisioner.box.disk`: raw disk, GRUB, qcow2.
- :mod:`~provisioner.box.dockerimage`, :mod:`~provisioner.box.dockerstore`: offline busybox.
- :mod:`~provisioner.box.package`: metadata.json, .box, ``vagrant box add``.
- :mod:`~provisioner.box.buildlog`: the build log, and the build's progress events.
"""
