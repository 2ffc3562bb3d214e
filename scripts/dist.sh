#!/usr/bin/env bash
# `check && ok "..." || fail "..."`: ok and fail only print and always succeed.
# shellcheck disable=SC2015
# Build the collection artifact and check it the way users and Galaxy get it.
#   1. build_ignore: `ansible-galaxy collection build` in the working tree
#      (with its venvs, caches, test output, docs build) ships none of them
#   2. the release artifact: a clean copy of the git-tracked files, its
#      CHANGELOG.rst rendered from the fragments (scripts/changelog_preview.py),
#      `ansible-galaxy collection build`; its file list is checked
#   3. installed with `ansible-galaxy collection install --offline` into a
#      temporary collections path; a module, a role and a playbook run from
#      the installed copy (asserted with -vvv's "Using module file" path), and
#      nothing is loaded from this checkout
#   4. galaxy-importer accepts the artifact (its own venv, .venv-importer,
#      configured by tests/galaxy-importer.cfg)
#   5. execution environment: requirements.txt has `>=` bounds only, bindep.txt
#      parses, `ansible-builder introspect` finds them in the installed
#      collection, and `ansible-builder create` makes a build context from
#      docs/execution-environment.yml
#   6. the EE's Python layer for real: a venv (the EE's Python 3.12) with the introspected
#      requirements, ansible-core and ansible-runner of docs/execution-environment.yml; the
#      bindep names exist (Debian: apt-cache); check_host runs with that venv's ansible
#   7. AWX job templates: tests/awx/awx_jobs.py runs the shipped playbooks through the EE
#      venv's ansible-runner in private data directories laid out as AWX lays them out
#      (the project installing this artifact, planted secrets, the credential types of
#      docs/awx.md), and scans the artifacts for the secrets
# Usage: scripts/dist.sh   (artifacts in a temporary directory, removed at the
# end; KVMOPS_DIST_KEEP=DIR keeps the release artifact there)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="$REPO/.venv/bin"
IMPORTER="$REPO/.venv-importer/bin"
for tool in "$VENV/ansible-galaxy" "$VENV/antsibull-changelog" "$IMPORTER/ansible-builder" "$IMPORTER/python"; do
  [ -x "$tool" ] || { echo "dist: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_DEPRECATION_WARNINGS=False
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kvmops-dist.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
FAILED=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }
VERSION="$("$VENV/python" -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')"
TARBALL_NAME="kvmops-virt-$VERSION.tar.gz"

# Paths that must never be in an artifact (regular expressions on member names).
FORBIDDEN='^(\.venv[^/]*|\.cache|\.git|\.ci|tests/output|docs/_build|collections|build|bench/results)(/|$)|(^|/)__pycache__(/|$)|\.pyc$|\.tar\.gz$'
check_members() {  # check_members TARBALL LABEL
  local bad
  bad="$(tar -tzf "$1" | sed 's|^\./||' | grep -E "$FORBIDDEN" || true)"
  if [ -n "$bad" ]; then
    fail "$2 contains files it must not ship:"; head -n 20 <<<"$bad" >&2
  else
    ok "$2 ships no venvs, caches, test output, docs build or VCS files ($(tar -tzf "$1" | wc -l) members)"
  fi
}

echo "==> build from the working tree (build_ignore)"
mkdir -p "$WORK/worktree-dist"
if "$VENV/ansible-galaxy" collection build --output-path "$WORK/worktree-dist" . >"$WORK/worktree-build.log" 2>&1; then
  check_members "$WORK/worktree-dist/$TARBALL_NAME" "the working-tree artifact"
else
  fail "ansible-galaxy collection build in the working tree"; cat "$WORK/worktree-build.log" >&2
fi

echo "==> release artifact from a clean copy of the tracked files"
SRC="$WORK/src"
mkdir -p "$SRC" "$WORK/dist"
# KVMOPS_DIST_UNTRACKED=1 also takes new files that git does not ignore (to try
# an artifact before committing).
LS_FILES=(git ls-files -z)
[ "${KVMOPS_DIST_UNTRACKED:-0}" = 1 ] && LS_FILES=(git ls-files -co --exclude-standard -z)
"${LS_FILES[@]}" | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -cf - -T - | tar -xf - -C "$SRC"
(unset ANSIBLE_COLLECTIONS_PATH; PATH="$VENV:$PATH" "$VENV/python" scripts/changelog_preview.py "$SRC") || fail "CHANGELOG.rst from the fragments"
"$VENV/ansible-galaxy" collection build --output-path "$WORK/dist" "$SRC"
TARBALL="$WORK/dist/$TARBALL_NAME"
check_members "$TARBALL" "the release artifact"
MEMBERS="$(tar -tzf "$TARBALL" | sed 's|^\./||')"
before=$FAILED
for required in MANIFEST.json FILES.json README.md CHANGELOG.rst changelogs/changelog.yaml meta/runtime.yml \
                meta/execution-environment.yml requirements.txt bindep.txt \
                plugins/modules/host_capabilities.py roles/kvm_host/meta/argument_specs.yml playbooks/check_host.yml; do
  grep -qxF "$required" <<<"$MEMBERS" || fail "the release artifact lacks $required"
done
[ "$FAILED" -eq "$before" ] && ok "the release artifact has its metadata, changelog, EE files, modules, roles and playbooks"

echo "==> install the artifact and run from the installed copy"
COLL="$WORK/collections"
INSTALLED="$COLL/ansible_collections/kvmops/virt"
# With only the new path configured: a kvmops.virt found elsewhere (the checkout
# linked into .cache/collections by test.sh) would make it skip the install.
ANSIBLE_COLLECTIONS_PATH="$COLL" "$VENV/ansible-galaxy" collection install --offline -p "$COLL" "$TARBALL" \
  >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; fail "ansible-galaxy collection install --offline"; }
if [ -f "$INSTALLED/MANIFEST.json" ] && grep -q "kvmops.virt:$VERSION was installed successfully" "$WORK/install.log"; then
  ok "installed into $COLL"
else
  cat "$WORK/install.log" >&2; fail "kvmops.virt $VERSION was not installed into $COLL"
fi
# Only the installed copy is visible: no other collection path, nothing next
# to a playbook directory, no collections in site-packages; run outside the checkout.
run_installed() {
  (cd "$WORK" && env ANSIBLE_COLLECTIONS_PATH="$COLL" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=False \
     ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False "$@")
}
if run_installed "$VENV/ansible" localhost -m kvmops.virt.host_capabilities -vvv >"$WORK/module.log" 2>&1; then
  if grep -qF "Using module file $INSTALLED/plugins/modules/host_capabilities.py" "$WORK/module.log"; then
    ok "kvmops.virt.host_capabilities ran from the installed copy ($INSTALLED)"
  else
    fail "host_capabilities did not run from $INSTALLED:"; grep -F "Using module file" "$WORK/module.log" >&2 || true
  fi
  if grep -qF "$REPO/plugins" "$WORK/module.log"; then fail "the run loaded files from the checkout $REPO"; fi
  grep -q '"virtualization": "\(hardware\|emulation\|none\)"' "$WORK/module.log" \
    && ok "host_capabilities returned a verdict" || fail "host_capabilities returned no verdict"
else
  tail -n 30 "$WORK/module.log" >&2; fail "kvmops.virt.host_capabilities from the installed copy"
fi
if run_installed "$VENV/ansible-playbook" kvmops.virt.check_host -e kvm_host_allow_emulation=true >"$WORK/playbook.log" 2>&1 \
   && grep -q "^localhost *: ok=[1-9].* failed=0" "$WORK/playbook.log"; then
  ok "playbook kvmops.virt.check_host (role kvm_host) ran from the installed copy"
else
  tail -n 30 "$WORK/playbook.log" >&2; fail "playbook kvmops.virt.check_host from the installed copy"
fi

echo "==> galaxy-importer"
export GALAXY_IMPORTER_CONFIG="$REPO/tests/galaxy-importer.cfg"
# galaxy-importer runs ansible-doc and ansible-lint from PATH: its own venv's.
if (cd "$WORK" && PATH="$IMPORTER:$PATH" "$IMPORTER/python" -m galaxy_importer.main "$TARBALL") >"$WORK/importer.log" 2>&1; then
  # It logs problems as warnings or errors and still finishes; none are accepted.
  if grep -E '^(WARNING|ERROR)' "$WORK/importer.log" >&2; then
    fail "galaxy-importer reported the problems above"
  else
    ok "galaxy-importer accepted $TARBALL_NAME ($(grep -c 'Loading ' "$WORK/importer.log" || true) contents loaded, ansible-lint clean)"
  fi
else
  cat "$WORK/importer.log" >&2; fail "galaxy-importer rejected $TARBALL_NAME"
fi

echo "==> execution environment"
bad_req="$(grep -vE '^\s*(#|$)' requirements.txt | grep -vE '^[A-Za-z0-9_.-]+>=[0-9][0-9.]*$' || true)"
[ -z "$bad_req" ] && ok "requirements.txt has lower bounds (>=) only" || fail "requirements.txt entries must be NAME>=VERSION: $bad_req"
"$IMPORTER/python" - "$INSTALLED/bindep.txt" <<'PY' && ok "bindep.txt parses; profiles: $("$IMPORTER/python" -c 'import sys; from bindep.depends import Depends; print(" ".join(sorted(Depends(open(sys.argv[1]).read()).profiles())))' bindep.txt)" || fail "bindep.txt does not parse"
import sys
from bindep.depends import Depends
Depends(open(sys.argv[1]).read())
PY
"$IMPORTER/ansible-builder" introspect --sanitize "$COLL" >"$WORK/introspect.log" 2>&1 || true
before=$FAILED
for dep in 'libvirt-python>=' 'lxml>=' 'libvirt-devel \[platform:rpm compile\]' 'libvirt0 \[platform:dpkg\]'; do
  grep -q -- "$dep" "$WORK/introspect.log" || fail "ansible-builder introspect did not find '$dep' in the installed collection"
done
[ "$FAILED" -eq "$before" ] && ok "ansible-builder introspect reads the Python and system dependencies from the installed collection"
if "$IMPORTER/ansible-builder" create -f docs/execution-environment.yml -c "$WORK/ee" --output-filename Containerfile \
     >"$WORK/builder.log" 2>&1; then
  CF="$WORK/ee/Containerfile"
  if [ -f "$CF" ] && grep -q 'ansible-galaxy collection install .*-r requirements.yml' "$CF" \
     && grep -q 'introspect' "$CF" && grep -q 'install-from-bindep' "$CF" \
     && grep -q 'name: kvmops.virt' "$WORK/ee/_build/requirements.yml"; then
    ok "ansible-builder create made a build context: Containerfile installs kvmops.virt from _build/requirements.yml and its introspected requirements"
  else
    fail "the build context from docs/execution-environment.yml lacks the collection or its requirements"
  fi
else
  cat "$WORK/builder.log" >&2; fail "ansible-builder create -f docs/execution-environment.yml"
fi

echo "==> execution environment: its Python layer built for real, a playbook run with it"
# What ansible-builder's build does inside the image, without a container engine: the
# collection's introspected requirements plus docs/execution-environment.yml's
# ansible_core and ansible_runner, pip-installed into a fresh venv of the EE's Python
# (3.12, as the sample's CentOS Stream 10 image; KVMOPS_EE_PYTHON overrides).
EE_PYTHON=""
for cand in "${KVMOPS_EE_PYTHON:-}" /root/.pyenv/versions/3.12.*/bin/python3.12 "$(command -v python3.12 || true)"; do
  if [ -n "$cand" ] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12) or "KVMOPS_EE_PYTHON" in __import__("os").environ' 2>/dev/null; then
    EE_PYTHON="$cand"; break
  fi
done
# Without a Python 3.12, the toolchain's own interpreter.
[ -n "$EE_PYTHON" ] || EE_PYTHON="$("$VENV/python" -c 'import sys; print(sys._base_executable)')"
EE="$WORK/ee-venv"
t0=$SECONDS
"$IMPORTER/ansible-builder" introspect --sanitize --write-pip "$WORK/ee-requirements.txt" --write-bindep "$WORK/ee-bindep.txt" \
  "$COLL" >"$WORK/ee-introspect.log" 2>&1 || { cat "$WORK/ee-introspect.log" >&2; fail "ansible-builder introspect --write-pip --write-bindep"; }
mapfile -t EE_SPECS < <("$VENV/python" -c '
import yaml
deps = yaml.safe_load(open("docs/execution-environment.yml"))["dependencies"]
print(deps["ansible_core"]["package_pip"]); print(deps["ansible_runner"]["package_pip"])')
if "$EE_PYTHON" -m venv "$EE" && "$EE/bin/pip" install -q --disable-pip-version-check -U pip >"$WORK/ee-pip.log" 2>&1 \
   && "$EE/bin/pip" install --disable-pip-version-check -r "$WORK/ee-requirements.txt" "${EE_SPECS[@]}" >>"$WORK/ee-pip.log" 2>&1 \
   && "$EE/bin/pip" check >>"$WORK/ee-pip.log" 2>&1 \
   && "$EE/bin/python" -c 'import libvirt, lxml.etree, ansible_runner' >>"$WORK/ee-pip.log" 2>&1; then
  ok "EE venv ($("$EE/bin/python" -c 'import platform; print("Python", platform.python_version())')) from $(grep -cvE '^\s*(#|$)' "$WORK/ee-requirements.txt") introspected requirements and ${EE_SPECS[*]}: $("$EE/bin/pip" list --format=freeze 2>/dev/null | grep -iE '^(ansible-core|ansible-runner|libvirt-python|lxml)==' | tr '\n' ' ')(pip check clean, $((SECONDS - t0)) s)"
else
  { grep -v 'is ignored' "$WORK/ee-pip.log" || true; } | tail -n 30 >&2; fail "building the EE's Python layer in $EE"
fi
# bindep: the Debian names exist in this machine's apt sources and the run-time ones are
# installed (the venv's libvirt-python links against libvirt0); the RPM names are shown
# as bindep resolves them for RHEL/UBI (no RPM repository to ask here).
bindep_names() {  # bindep_names PROFILE... : the packages of ee-bindep.txt for these profiles
  "$IMPORTER/python" - "$WORK/ee-bindep.txt" "$@" <<'PY'
import sys
from bindep.depends import Depends
deps = Depends(open(sys.argv[1]).read())
print(" ".join(sorted({rule[0] for rule in deps.active_rules(sys.argv[2:])})))
PY
}
before=$FAILED
deb_run="$(bindep_names platform:dpkg platform:debian)"
deb_all="$(bindep_names platform:dpkg platform:debian compile)"
rpm_run="$(bindep_names platform:rpm platform:redhat)"
rpm_all="$(bindep_names platform:rpm platform:redhat compile)"
for pkg in $deb_all; do
  apt-cache show "$pkg" >/dev/null 2>&1 || fail "bindep.txt names $pkg for Debian, which apt-cache does not know"
done
for pkg in $deb_run; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || fail "bindep.txt's run-time package $pkg is not installed here"
done
[ "$(wc -w <<<"$deb_run")" -ge 2 ] && [ "$(wc -w <<<"$rpm_run")" -ge 2 ] || fail "bindep.txt resolves to too few packages: dpkg '$deb_run', rpm '$rpm_run'"
[ "$FAILED" -eq "$before" ] && ok "bindep.txt: Debian packages exist (apt-cache) and run-time ones are installed: $deb_all; RPM names (RHEL/UBI): $rpm_all"
# A playbook with the EE's own ansible-playbook and Python, from the installed artifact.
if run_installed "$EE/bin/ansible-playbook" kvmops.virt.check_host -e kvm_host_allow_emulation=true -vvv >"$WORK/ee-playbook.log" 2>&1 \
   && grep -q "^localhost *: ok=[1-9].* failed=0" "$WORK/ee-playbook.log"; then
  if grep -qF "$EE/bin/python" "$WORK/ee-playbook.log" && grep -qF "Using module file $INSTALLED/plugins/modules/host_capabilities.py" "$WORK/ee-playbook.log" \
     && grep -q 'libvirt [0-9][0-9.]*, QEMU .* at qemu:///system' "$WORK/ee-playbook.log" && ! grep -q 'libvirt-python and lxml not installed' "$WORK/ee-playbook.log"; then
    ok "kvmops.virt.check_host ran with the EE venv's ansible-playbook and Python (libvirt-python from the EE) from the installed copy"
  else
    fail "check_host with the EE venv did not use the EE's Python, the installed copy or libvirt-python"
  fi
else
  tail -n 30 "$WORK/ee-playbook.log" >&2; fail "kvmops.virt.check_host with the EE venv's ansible-playbook"
fi

echo "==> AWX job templates through ansible-runner (the EE venv's)"
t0=$SECONDS
if (cd "$WORK" && env -u ANSIBLE_COLLECTIONS_PATH "$EE/bin/python" "$REPO/tests/awx/awx_jobs.py" --repo "$REPO" --tarball "$TARBALL" \
      --image-dir "${KVMOPS_TEST_IMAGE_DIR:-$REPO/.cache/test-image}" --work "$WORK/awx"); then
  echo "awx jobs: $((SECONDS - t0)) s"
else
  echo "awx jobs: $((SECONDS - t0)) s"; fail "tests/awx/awx_jobs.py"
fi

if [ -n "${KVMOPS_DIST_KEEP:-}" ]; then
  mkdir -p "$KVMOPS_DIST_KEEP" && cp "$TARBALL" "$KVMOPS_DIST_KEEP/" && echo "kept $KVMOPS_DIST_KEEP/$TARBALL_NAME"
fi
echo "dist: $FAILED failed check(s) in ${SECONDS}s"
[ "$FAILED" -eq 0 ]
