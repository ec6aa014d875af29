"""The one wait primitive and the one file lock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provisioner.errors import BoxError, HostKeyError, LabError, NodeError, NotReady, WaitTimeout
from provisioner.locks import file_lock
from provisioner.waits import wait_for

pytestmark = pytest.mark.unit


def test_not_ready_is_retried_and_quoted_at_the_deadline() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise NotReady("etcd: 1 of 3 members started")

    with pytest.raises(
        WaitTimeout, match=r"etcd: gave up waiting for etcd; last: etcd: 1 of 3"
    ) as e:
        wait_for("etcd", "etcd", time.monotonic() + 0.05, attempt, interval=0.01, hint="see logs")
    assert len(calls) > 1
    assert e.value.hint == "see logs"


def test_a_permanent_error_ends_the_wait_at_once_with_its_hint() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise NodeError("core-01", "cannot read the serial console log", hint="run lab as root")

    with pytest.raises(NodeError) as failure:
        wait_for("core-01", "host keys", time.monotonic() + 60, attempt, interval=0.0)
    assert calls == [1]
    assert failure.value.hint == "run lab as root"


def test_transient_errors_are_retried_but_never_a_changed_host_key() -> None:
    answers: list[LabError | str] = [NodeError("core-01", "refused"), "logged in"]

    def attempt() -> str:
        answer = answers.pop(0)
        if isinstance(answer, LabError):
            raise answer
        return answer

    got = wait_for("core-01", "a login", time.monotonic() + 60, attempt, interval=0.0,
                   transient=(NodeError,))  # fmt: skip
    assert got == "logged in"

    def changed() -> None:
        raise HostKeyError("core-01: host key changed")

    with pytest.raises(HostKeyError):
        wait_for("core-01", "a login", time.monotonic() + 60, changed, interval=0.0,
                 transient=(LabError,))  # fmt: skip


def test_a_held_lock_times_out_with_the_callers_error(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "build.lock"
    held = r"the box build is locked by another lab command"
    with (
        file_lock(lock, "the box build", timeout=1),
        pytest.raises(BoxError, match=held) as e,
        file_lock(lock, "the box build", timeout=0.2, error=BoxError, hint="wait"),
    ):
        pass  # pragma: no cover - never reached
    assert e.value.hint == "wait"
    with file_lock(lock, "the box build", timeout=0.2):  # released: taken at once
        pass
