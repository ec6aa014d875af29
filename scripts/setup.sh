#!/usr/bin/env bash
# One command from a fresh Debian 12 host to a verified 3-node lab:
# installs everything, builds the box, brings the lab up in ./demo-lab and verifies it.
# Safe to re-run: every step finds what the previous run made.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_DIR="${LAB_DIR:-/srv/lab/demo}"
"$ROOT/scripts/install.sh"
LAB="$ROOT/.venv/bin/lab"

mkdir -p "$LAB_DIR"
echo "==> building the box (cached after the first time)"
"$LAB" box build
echo "==> bringing up a 3-node lab in $LAB_DIR"
"$LAB" -C "$LAB_DIR" up --nodes 3
echo "==> verifying it"
"$LAB" -C "$LAB_DIR" verify
"$LAB" -C "$LAB_DIR" status
echo "==> done: cd $LAB_DIR && lab status   (lab is $ROOT/.venv/bin/lab)"
