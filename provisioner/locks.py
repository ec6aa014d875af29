"""The one file lock: exclusive, advisory (flock), with a deadline.

Lab commands take a lock per lab (``.lab/lock``) and one per host (beside the
box cache) around what two commands must not do at once: the box upload,
libvirt networks, a box build. The lock goes away with the process that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from provisioner.errors import LabError, NotReady
from provisioner.waits import wait_for

POLL = 0.5


@contextmanager
def file_lock(
    path: Path,
    what: str,
    timeout: float = 600.0,
    *,
    error: type[LabError] = LabError,
    hint: str = "wait for it to finish; the lock goes away with the process",
) -> Iterator[None]:
    """Hold ``path`` exclusively; ``error`` naming ``what`` if held by another past ``timeout``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise NotReady(f"{path} is held") from None
            return True

        try:
            wait_for(what, f"the lock {path}", time.monotonic() + timeout, take, interval=POLL)
        except LabError:
            raise error(f"{what} is locked by another lab command ({path})", hint=hint) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def host_lock_path() -> Path:
    """The host-wide lock: box uploads and libvirt networks, shared by every lab."""
    from provisioner.box.cache import cache_root

    return cache_root() / "host.lock"
