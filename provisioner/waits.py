"""The one wait: call an attempt until it answers, with a deadline and a reason.

An attempt says "not ready yet" by returning None or raising :class:`NotReady`
(or one of the error types the caller names as transient, such as a refused SSH
connection while a guest boots). Anything else it raises is permanent and ends
the wait at once with its own message and hint: an unreadable console log or a
changed host key does not get better by waiting, and its hint is what the user
needs. At the deadline :class:`WaitTimeout` names what was awaited and quotes
the last "not yet" reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from provisioner.errors import HostKeyError, LabError, NotReady, WaitTimeout

T = TypeVar("T")

__all__ = ["NotReady", "wait_for"]


def wait_for(
    subject: str,
    what: str,
    deadline: float,
    attempt: Callable[[], T | None],
    *,
    interval: float,
    transient: tuple[type[LabError], ...] = (),
    cancelled: Callable[[], bool] | None = None,
    hint: str | None = None,
) -> T:
    """``attempt()`` until it returns a value; WaitTimeout naming ``what`` at ``deadline``.

    ``deadline`` is a ``time.monotonic()`` instant. ``transient`` lists LabError
    types retried like NotReady (a HostKeyError never is). ``cancelled`` returning
    True ends the wait early with a LabError (what is awaited failed elsewhere).
    ``hint`` goes with the timeout.
    """
    last = "no answer yet"
    while True:
        if cancelled is not None and cancelled():
            raise LabError(f"{subject}: stopped waiting for {what}: the lab's boot failed")
        try:
            result = attempt()
        except NotReady as exc:
            last, result = exc.message, None
        except LabError as exc:
            if isinstance(exc, HostKeyError) or not isinstance(exc, transient):
                raise
            last, result = exc.message, None
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeout(subject, f"gave up waiting for {what}; last: {last}", hint=hint)
        time.sleep(interval)
