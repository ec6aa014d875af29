"""Fan a command out to many hosts, collect every outcome, then report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from provisioner.errors import LabError, RemoteError
from provisioner.remote.runner import CommandResult, Runner, describe_failure

Outcome = CommandResult | Exception


def run_all(
    runners: Sequence[Runner],
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    max_workers: int | None = None,
    stdin: str | None = None,
) -> dict[str, Outcome]:
    """Run ``argv`` on every runner at once; each host's result or exception by name.

    Never raises for one host's failure: every host gets its turn and its outcome
    is kept, so the caller can report all of them together (see :func:`raise_for_failures`).
    """
    names = [runner.name for runner in runners]
    if len(set(names)) != len(names):
        raise ValueError(f"runner names must be unique: {names}")
    if not runners:
        return {}

    def one(runner: Runner) -> Outcome:
        try:
            return runner.run(argv, timeout=timeout, stdin=stdin)
        except Exception as exc:  # noqa: BLE001 - kept as this host's outcome
            return exc

    with ThreadPoolExecutor(max_workers=max_workers or len(runners)) as pool:
        outcomes = list(pool.map(one, runners))
    return dict(zip(names, outcomes, strict=True))


def raise_for_failures(
    argv: Sequence[str], outcomes: Mapping[str, Outcome]
) -> dict[str, CommandResult]:
    """Return the results if every host succeeded; else one RemoteError naming each failure."""
    problems: list[str] = []
    results: dict[str, CommandResult] = {}
    for name, outcome in outcomes.items():
        if isinstance(outcome, CommandResult):
            results[name] = outcome
            if outcome.failed:
                problems.append(describe_failure(name, argv, outcome))
        elif isinstance(outcome, LabError):
            problems.append(str(outcome) if str(outcome).startswith(name) else f"{name}: {outcome}")
        else:
            problems.append(f"{name}: {type(outcome).__name__}: {outcome}")
    if problems:
        raise RemoteError(
            f"{len(problems)} of {len(outcomes)} hosts failed:\n" + "\n".join(problems)
        )
    return results
