"""The verbs' output for programs: ``lab up --json``, ``lab verify --json``.

Pure functions from results to JSON-ready dicts; their shapes are the schemas in
``docs/schema/`` (``lab status --json`` is :func:`provisioner.operate.status_json`).
A key is never removed or renamed and a value never changes type; new keys may
appear, so readers should ignore keys they do not know.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from provisioner.checks.runner import VerifyResult
from provisioner.config import LabConfig
from provisioner.lifecycle.fastpath import Ready
from provisioner.lifecycle.snapshots import SnapshotResult
from provisioner.state import load_state

SCHEMA_VERSION = 1
OUTCOMES = ("passed", "failed", "error", "skipped")


def verify_json(result: VerifyResult) -> dict[str, Any]:
    """Every check on every node with its outcome and message, and the totals."""
    counts: Counter[str] = Counter(o.outcome for o in result.outcomes)
    return {
        "schema_version": SCHEMA_VERSION,
        "ok": result.ok,
        "returncode": result.returncode,
        "junit": str(result.junit) if result.junit else None,
        "checks": [
            {
                "node": o.node,
                "name": o.check,
                "outcome": o.outcome,
                "message": o.message,
                "hint": o.hint,
                "nodeid": o.nodeid,
                "duration": round(o.duration, 3),
            }
            for o in result.outcomes
        ],
        "totals": {**{k: counts.get(k, 0) for k in OUTCOMES}, "total": len(result.outcomes)},
    }


def _snapshot_json(action: str, result: SnapshotResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "action": action,
        "seconds": round(result.seconds, 3),
        "paused_seconds": round(result.paused_seconds, 3),
        "detail": result.detail,
    }


def up_json(config: LabConfig, ready: Ready) -> dict[str, Any]:
    """``lab up``'s summary: every node, the phases' seconds, what happened to the snapshot.

    After a restore nothing was booted: ``accel`` is null, and so are each node's
    ``system_state`` and ``failed_units`` (the restore checked the lab, it did not list them).
    """
    nodes: list[dict[str, Any]]
    if ready.up is not None:
        nodes = [
            {
                "name": n.name,
                "ip": n.ip,
                "role": n.role,
                "machine_id": n.machine_id,
                "system_state": n.system_state,
                "failed_units": list(n.failed_units),
            }
            for n in ready.up.nodes
        ]
    else:
        machine_ids = load_state(config.state_dir).machine_ids
        nodes = [
            {
                "name": n.name,
                "ip": n.ip,
                "role": n.role,
                "machine_id": machine_ids.get(n.name),
                "system_state": None,
                "failed_units": None,
            }
            for n in config.nodes
        ]
    snapshot = None
    if ready.restored is not None:
        snapshot = _snapshot_json("restored", ready.restored)
    elif ready.saved is not None:
        snapshot = _snapshot_json("saved", ready.saved)
    return {
        "schema_version": SCHEMA_VERSION,
        "lab": config.name,
        "directory": str(config.directory),
        "already_up": ready.up.already_up if ready.up is not None else False,
        "accel": ready.up.accel if ready.up is not None else None,
        "phase_seconds": {
            k: round(v, 3) for k, v in (ready.up.phase_seconds if ready.up else {}).items()
        },
        "nodes": nodes,
        "snapshot": snapshot,
        "verify": verify_json(ready.verified) if ready.verified is not None else None,
    }
