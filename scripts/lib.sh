# shellcheck shell=bash
# Shared by scripts/setup.sh, scripts/main.sh, scripts/test.sh and bench/run.sh
# (sourced, after `cd "$REPO"`).

log() { printf '==> %s\n' "$*"; }

# PYTHON: the interpreter for the venvs ($KVMOPS_PYTHON, else Python 3.13, else 3.12).
find_python() {
  PYTHON="${KVMOPS_PYTHON:-}"
  if [ -z "$PYTHON" ]; then
    local candidate
    for candidate in /root/.pyenv/versions/3.13.0/bin/python3.13 "$(command -v python3.13 || true)" \
                     /root/.pyenv/versions/3.12.1/bin/python3.12 "$(command -v python3.12 || true)"; do
      if [ -n "$candidate" ] && [ -x "$candidate" ]; then PYTHON="$candidate"; break; fi
    done
  fi
  [ -n "$PYTHON" ] || { echo "Python 3.13 or 3.12 is required" >&2; exit 1; }
}

# A venv rebuilt only when its requirements file changes.
make_venv() {  # make_venv DIR REQUIREMENTS
  local dir="$1" req="$2" stamp
  [ -n "${PYTHON:-}" ] || find_python
  stamp="$(sha256sum "$req" | cut -c1-16)"
  if [ -f "$dir/.kvmops-stamp" ] && [ "$(cat "$dir/.kvmops-stamp")" = "$stamp" ]; then return 0; fi
  log "creating $dir from $req"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -U pip
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$stamp" > "$dir/.kvmops-stamp"
}

# The runtime collection path .cache/collections resolves kvmops.virt to this checkout.
link_collection() {  # link_collection REPO
  mkdir -p "$1/.cache/collections/ansible_collections/kvmops"
  ln -sfn "$1" "$1/.cache/collections/ansible_collections/kvmops/virt"
}
