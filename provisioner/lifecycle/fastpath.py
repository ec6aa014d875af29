"""``lab up --snapshot NAME``, the CI fast path, as one library call.

If the lab has a complete snapshot ``NAME``, it is restored (reverted, clocks
stepped, ``lab up``'s readiness checks run); otherwise the lab is brought up,
``lab verify`` runs, and ``NAME`` is saved only if every check passed, so the
next run (or a test that broke the cluster) gets a verified lab back in the time
of a restore. The ``lab`` command and the pytest plugin both call :func:`up_from_snapshot`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from provisioner.checks.runner import VerifyResult
from provisioner.config import LabConfig
from provisioner.errors import LabError
from provisioner.lifecycle import snapshots
from provisioner.lifecycle.backends import Backends
from provisioner.lifecycle.snapshots import SnapshotResult
from provisioner.lifecycle.steps import UpResult, up
from provisioner.progress import LAB, Progress

Verifier = Callable[[LabConfig], VerifyResult]

_NAMED_FAILURES = 10


@dataclass(frozen=True)
class Ready:
    """What bringing the lab up did: restored a snapshot, or booted, verified and saved one."""

    snapshot: str | None = None
    restored: SnapshotResult | None = None
    up: UpResult | None = None
    verified: VerifyResult | None = None
    saved: SnapshotResult | None = None


class VerifyError(LabError):
    """``lab verify`` found failures; names them, and carries what was done so far."""

    def __init__(self, ready: Ready, result: VerifyResult) -> None:
        failures = result.failures
        named = [f"{o.node or 'collection'} {o.check} ({o.outcome})" for o in failures]
        more = len(named) - _NAMED_FAILURES
        listed = ", ".join(named[:_NAMED_FAILURES]) + (f" and {more} more" if more > 0 else "")
        super().__init__(
            f"lab verify: {len(failures)} of {len(result.outcomes)} checks failed: {listed}",
            hint="`lab verify` shows what each check found; `lab logs` saves the journals",
        )
        self.ready = ready
        self.result = result


def run_verify(config: LabConfig) -> VerifyResult:
    """``lab verify`` with the shipped checks only."""
    from provisioner.operate import verify

    result: VerifyResult = verify(config, junit=None, extra=())
    return result


def has_snapshot(config: LabConfig, name: str, backends: Backends | None = None) -> bool:
    """Whether the lab has a snapshot ``name`` on every node (no lab yet: no)."""
    with contextlib.suppress(LabError):  # no lab yet (no network, no VMs): nothing to restore
        found = snapshots.find(config, name, backends)
        return found is not None and found.complete
    return False


def up_from_snapshot(
    config: LabConfig,
    name: str,
    progress: Progress,
    *,
    accel: str = "auto",
    verify_restored: bool = False,
    verifier: Verifier | None = None,
    backends: Backends | None = None,
) -> Ready:
    """Restore snapshot ``name``, or boot, verify and save it (see the module's docstring).

    ``verify_restored`` also runs ``lab verify`` after a restore (the pytest plugin
    hands out only verified labs); ``verifier`` replaces ``lab verify`` (default
    :func:`run_verify`). Failing checks raise :class:`VerifyError`.
    """
    snapshots.check_name(name)
    verifier = verifier or run_verify
    if has_snapshot(config, name, backends):
        restored = snapshots.restore(config, name, progress, backends)
        ready = Ready(snapshot=name, restored=restored)
        if verify_restored:
            ready = _verified(config, ready, progress, verifier)
        return ready
    booted = up(config, progress, accel=accel, backends=backends)
    ready = _verified(config, Ready(snapshot=name, up=booted), progress, verifier)
    saved = snapshots.save(config, name, progress, backends)
    return Ready(snapshot=name, up=booted, verified=ready.verified, saved=saved)


def _verified(config: LabConfig, ready: Ready, progress: Progress, verifier: Verifier) -> Ready:
    progress.update(LAB, "verify", "running", "the shipped checks on every node")
    result = verifier(config)
    ready = Ready(ready.snapshot, ready.restored, ready.up, result, ready.saved)
    passed = sum(1 for o in result.outcomes if o.ok)
    if not result.ok:
        progress.update(LAB, "verify", "failed", f"{passed}/{len(result.outcomes)} passed")
        raise VerifyError(ready, result)
    progress.update(LAB, "verify", "ok", f"{passed}/{len(result.outcomes)} passed")
    return ready


__all__ = ["Ready", "VerifyError", "has_snapshot", "run_verify", "up_from_snapshot"]
