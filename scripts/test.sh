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

declare -A TIER_SECONDS
timed() {  # timed NAME COMMAND...: run it, remember how long it took, keep its status
  local name="$1" start=$SECONDS rc=0
  shift
  "$@" || rc=$?
  TIER_SECONDS[$name]=$((SECONDS - start))
  return "$rc"
}
report() {
  echo "==> tier times"
  for name in lint types imports unit integration vm; do
    [ -n "${TIER_SECONDS[$name]:-}" ] && printf '    %-12s %5ds\n' "$name" "${TIER_SECONDS[$name]}"
  done
  return 0
}
trap report EXIT

echo "==> ruff"
timed lint sh -c '"$1/bin/ruff" check . && "$1/bin/ruff" format --check .' ruff "$VENV"
echo "==> mypy --strict"
timed types "$VENV/bin/mypy"
echo "==> import contracts (the host never imports guest code)"
timed imports "$VENV/bin/lint-imports"

# Every tier runs even after one failed (a run says all it knows); the exit status
# is non-zero if any failed.
failed=()
for tier in unit integration vm; do
  echo "==> pytest: $tier tier"
  # the slowest tests of each tier, to keep the run inside its budget
  timed "$tier" "$VENV/bin/pytest" -m "$tier" --junitxml="$ARTIFACTS/$tier.xml" --durations=15 "$@" \
    || failed+=("$tier")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> failed tiers: ${failed[*]}"
  exit 1
fi
