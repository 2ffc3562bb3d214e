#!/usr/bin/env bash
# kvmops.virt benchmark harness: one command (docs/benchmarks.md).
#   bash bench/run.sh [--reps R] [--quick] [--only 1,2,3,4] [--help]
# Sets up what it needs (scripts/setup.sh unless KVMOPS_SKIP_SETUP=1, and the
# bench venv .venv-bench from bench/requirements.txt), then runs bench/kbench.py
# against the live qemu:///system daemon. Prints a table; writes
# bench/results/kbench-<time>.json.
# For figures worth keeping, run it alone (no other job on the daemon or the CPUs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

if [ "${KVMOPS_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh
fi

# The bench venv: rebuilt only when bench/requirements.txt changes.
VENV="$REPO/.venv-bench"
make_venv "$VENV" bench/requirements.txt

# kvmops.virt resolves from this checkout; community.libvirt from the bench venv's
# ansible package (bench/kbench.py puts .cache/collections first on the path).
link_collection "$REPO"

exec "$VENV/bin/python" bench/kbench.py "$@"
