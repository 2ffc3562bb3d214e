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
log() { printf '==> %s\n' "$*"; }

if [ "${KVMOPS_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh
fi

PYTHON="${KVMOPS_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in /root/.pyenv/versions/3.13.0/bin/python3.13 "$(command -v python3.13 || true)" \
                   /root/.pyenv/versions/3.12.1/bin/python3.12 "$(command -v python3.12 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then PYTHON="$candidate"; break; fi
  done
fi
[ -n "$PYTHON" ] || { echo "Python 3.13 or 3.12 is required" >&2; exit 1; }

# The bench venv: rebuilt only when bench/requirements.txt changes.
VENV="$REPO/.venv-bench"
stamp="$(sha256sum bench/requirements.txt | cut -c1-16)"
if [ ! -f "$VENV/.kvmops-stamp" ] || [ "$(cat "$VENV/.kvmops-stamp")" != "$stamp" ]; then
  log "creating $VENV from bench/requirements.txt"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -U pip
  "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements.txt
  echo "$stamp" > "$VENV/.kvmops-stamp"
fi

# kvmops.virt resolves from this checkout; community.libvirt from the bench venv's
# ansible package (bench/kbench.py puts .cache/collections first on the path).
mkdir -p "$REPO/.cache/collections/ansible_collections/kvmops"
ln -sfn "$REPO" "$REPO/.cache/collections/ansible_collections/kvmops/virt"

exec "$VENV/bin/python" bench/kbench.py "$@"
