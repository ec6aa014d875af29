#!/usr/bin/env bash
# Every test tier, as CI runs it: lint, types, unit, integration (real etcd,
# sshd, vagrant, libvirt on this host), vm (real guests under KVM or TCG).
# Installs what it needs first; safe to re-run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install.sh"
VENV="$ROOT/.venv"
ARTIFACTS="${LAB_TEST_ARTIFACTS:-$ROOT/test-artifacts}"
mkdir -p "$ARTIFACTS"

echo "==> ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "==> mypy --strict"
"$VENV/bin/mypy"
echo "==> import-linter (the host never imports guest code; contracts in pyproject.toml)"
"$VENV/bin/lint-imports"

for tier in unit integration vm; do
  echo "==> pytest: $tier tier"
  "$VENV/bin/pytest" -m "$tier" --junitxml="$ARTIFACTS/$tier.xml" "$@"
done
