"""Reading what a domain's XML says about its console log and disks."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.hypervisor.libvirt import (
    DomainState,
    parse_console_log_path,
    parse_disk_paths,
    parse_used_files,
    qemu_unreachable_dir,
)

pytestmark = pytest.mark.unit

# Shaped like what vagrant-libvirt 0.11.2 defines (domain.xml.erb) and libvirt returns.
DOMAIN = """<domain type='qemu'>
  <name>lab-demo_core-01</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/lab-demo_core-01.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/lab/config-drive/core-01.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/vg/extra'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='pty'><target port='0'/></serial>
    <serial type='file'>
      <source path='/srv/lab/console/core-01.log'/>
      <target port='1'/>
    </serial>
  </devices>
</domain>"""


def test_console_log_is_the_first_file_serial() -> None:
    assert parse_console_log_path(DOMAIN) == Path("/srv/lab/console/core-01.log")


def test_no_file_serial_means_no_console_log() -> None:
    xml = "<domain><devices><serial type='pty'/></devices></domain>"
    assert parse_console_log_path(xml) is None


def test_disk_paths_skip_cdroms() -> None:
    assert parse_disk_paths(DOMAIN) == (
        Path("/var/lib/libvirt/images/lab-demo_core-01.img"),
        Path("/dev/vg/extra"),
    )


def test_domain_state_activity() -> None:
    assert DomainState(1) is DomainState.RUNNING
    assert DomainState.PAUSED.is_active
    assert not DomainState.SHUTOFF.is_active


def test_first_unsearchable_directory_is_found(tmp_path: Path) -> None:
    top = tmp_path / "open"
    private = top / "private"
    target = private / "deep" / "drive.iso"
    target.parent.mkdir(parents=True)
    target.write_text("x")
    for directory in (tmp_path, top, private / "deep"):
        directory.chmod(0o755)
    private.chmod(0o700)
    # tmp_path's own parents may be private too (pytest makes them 0700); only
    # directories from tmp_path down are under the test's control.
    assert qemu_unreachable_dir(target) == private
    private.chmod(0o711)
    assert qemu_unreachable_dir(target) in (None, *tmp_path.parents)


# A running domain lists its disks' backing chain; a pool volume names its backing file.
RUNNING = """<domain type='qemu'><name>lab-demo_core-01</name><devices>
  <disk type='file' device='disk'>
    <source file='/var/lib/libvirt/images/lab-demo_core-01.img' index='2'/>
    <backingStore type='file' index='3'>
      <format type='qcow2'/>
      <source file='/var/lib/libvirt/images/lab-VAGRANTSLASH-d-abc_vagrant_box_image_0_1_box.img'/>
      <backingStore/>
    </backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
</devices></domain>"""
OVERLAY = """<volume type='file'><name>lab-demo_core-01.img</name>
  <target><path>/var/lib/libvirt/images/lab-demo_core-01.img</path></target>
  <backingStore>
    <path>/var/lib/libvirt/images/lab-VAGRANTSLASH-d-abc_vagrant_box_image_0_1_box.img</path>
    <format type='qcow2'/>
  </backingStore>
</volume>"""
BOX = """<volume type='file'><name>lab-VAGRANTSLASH-d-abc_vagrant_box_image_0_1_box.img</name>
  <target><path>/var/lib/libvirt/images/lab-VAGRANTSLASH-d-abc_vagrant_box_image_0_1_box.img</path></target>
</volume>"""


def test_used_files_are_disks_and_backing_files_not_a_volume_itself() -> None:
    images = "/var/lib/libvirt/images"
    box = f"{images}/lab-VAGRANTSLASH-d-abc_vagrant_box_image_0_1_box.img"
    assert parse_used_files(RUNNING) == {f"{images}/lab-demo_core-01.img", box}
    assert parse_used_files(OVERLAY) == {box}
    assert parse_used_files(BOX) == set()
