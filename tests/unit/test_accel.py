from __future__ import annotations

import pytest

from provisioner.accel import decide_accel
from provisioner.errors import HostError

VMX = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n"
PLAIN = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n"


def test_kvm_needs_both_the_device_and_the_cpu_flag() -> None:
    assert decide_accel(VMX, kvm_usable=True).accel == "kvm"
    assert decide_accel(VMX, kvm_usable=True).driver == "kvm"
    assert decide_accel(VMX.replace("vmx", "svm"), kvm_usable=True).accel == "kvm"


def test_a_kvm_device_without_vmx_means_tcg() -> None:
    choice = decide_accel(PLAIN, kvm_usable=True)
    assert choice.accel == "tcg"
    assert choice.driver == "qemu"
    assert choice.cpu_model == "qemu64"
    assert "no vmx/svm" in choice.reason


def test_no_device_means_tcg() -> None:
    assert decide_accel(VMX, kvm_usable=False).accel == "tcg"


def test_tcg_can_be_forced() -> None:
    assert decide_accel(VMX, kvm_usable=True, requested="tcg").accel == "tcg"


def test_asking_for_kvm_without_it_is_an_error() -> None:
    with pytest.raises(HostError, match="no vmx/svm"):
        decide_accel(PLAIN, kvm_usable=True, requested="kvm")
