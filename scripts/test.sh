#!/usr/bin/env bash
# The stage_* functions are called by name ("stage_$stage"), which shellcheck cannot see.
# shellcheck disable=SC2317
# Set everything up and run the kvmops.virt test suite.
#   scripts/test.sh                 all stages
#   scripts/test.sh STAGE [ARGS]    one stage: changelog lint harness sanity units module_runs integration reliability molecule lab docs dist
# Integration stages use the live qemu:///system daemon on this machine.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
export ANSIBLE_NOCOLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0
export ANSIBLE_COLLECTIONS_PATH="$REPO/.cache/collections"
export KVMOPS_REPO="$REPO"
# Tests that stop or restart libvirtd run in the full suite, which runs alone.
export KVMOPS_TEST_DISRUPTIVE="${KVMOPS_TEST_DISRUPTIVE:-$([ $# -eq 0 ] && echo 1 || echo 0)}"
export KVMOPS_TEST_IMAGE_DIR="${KVMOPS_TEST_IMAGE_DIR:-$REPO/.cache/test-image}"

if [ "${KVMOPS_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh || { echo "setup failed"; exit 1; }
fi
VENV="$REPO/.venv/bin"
UNITS_VENV="$REPO/.venv-units/bin"
# Molecule and ansible-lint call ansible-config/ansible-playbook by name.
export PATH="$VENV:$PATH"

# The runtime collection path ($ANSIBLE_COLLECTIONS_PATH above) points at this checkout.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
link_collection "$REPO"

# ansible-test needs the collection at .../ansible_collections/kvmops/virt and
# only looks at its files; copy what git tracks (plus new, not ignored files).
# Each run gets its own copy so that concurrent runs do not clobber each other.
ANSIBLE_TEST_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/kvmops-virt-ansible-test.XXXXXX")"
trap 'rm -rf "$ANSIBLE_TEST_ROOT"' EXIT
ATC="$ANSIBLE_TEST_ROOT/ansible_collections/kvmops/virt"
sync_ansible_test_copy() {
  rm -rf "$ATC"
  mkdir -p "$ATC"
  git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
    | tar --null -cf - -T - | tar -xf - -C "$ATC"
}

declare -A STAGE_RESULT=()
declare -A STAGE_SECONDS=()
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
# record STAGE PASSED FAILED [SKIPPED]: the counts are tests (pytest items,
# integration tasks, sanity tests), never 1 per stage. A stage that ran no
# test at all is a failure: a filter that matches nothing, a missing script.
record() {
  local passed="$2" failed="$3" skipped="${4:-0}"
  if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    echo "stage $1 ran no test: counted as a failure"
    failed=1
  fi
  STAGE_RESULT[$1]="$passed passed, $failed failed, $skipped skipped"
  TOTAL_PASSED=$((TOTAL_PASSED + passed))
  TOTAL_FAILED=$((TOTAL_FAILED + failed))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + skipped))
}
# Counts from a pytest-style summary line ("3 failed, 12 passed, 1 skipped in 2.0s").
pytest_counts() {  # pytest_counts LOG -> "passed failed skipped", summed over every pytest summary line
  local p=0 f=0 s=0 line n
  while IFS= read -r line; do
    n="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || true)"; p=$((p + ${n:-0}))
    n="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)"; f=$((f + ${n:-0}))
    n="$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || true)"; f=$((f + ${n:-0}))
    n="$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || true)"; s=$((s + ${n:-0}))
  done < <(grep -E '^=*( .*)?[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s' "$1")
  echo "$p $f $s"
}
# Logs go to tests/output/logs (KVMOPS_LOG_DIR: elsewhere, e.g. for the harness's own tests).
LOGDIR="${KVMOPS_LOG_DIR:-$REPO/tests/output/logs}"
mkdir -p "$LOGDIR"

stage_changelog() {
  if "$VENV/antsibull-changelog" lint; then record changelog 1 0; else record changelog 0 1; fi
}

stage_lint() {
  if "$VENV/ansible-lint" --profile production --offline -q; then record ansible-lint 1 0; else record ansible-lint 0 1; fi
}

stage_sanity() {
  sync_ansible_test_copy
  local log="$LOGDIR/sanity.log"
  (cd "$ATC" && "$VENV/ansible-test" sanity --venv --python 3.13 "$@") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local run fail
  run="$(grep -cE '^Running sanity test' "$log")"
  fail="$(grep -cE '^ERROR: Found [0-9]+ .* issue' "$log")"
  [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
  record sanity "$((run - fail))" "$fail"
}

stage_units() {
  sync_ansible_test_copy
  local log="$LOGDIR/units.log"
  (cd "$ATC" && "$UNITS_VENV/ansible-test" units --python 3.13 "$@") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  read -r p f s < <(pytest_counts "$log")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record units "$p" "$f" "$s"
}

stage_integration() {
  sync_ansible_test_copy
  # ansible-test passes no environment to the targets; they get the suite's
  # settings as variables from this file (runme.sh targets read it too).
  cat > "$ATC/tests/integration/integration_config.yml" <<YAML
kvmops_repo: "$REPO"
kvmops_test_image_dir: "$KVMOPS_TEST_IMAGE_DIR"
kvmops_test_disruptive: $([ "$KVMOPS_TEST_DISRUPTIVE" = 1 ] && echo true || echo false)
YAML
  local log="$LOGDIR/integration.log"
  # -vvv --diff reach every target's ansible-playbook: the reliability stage's
  # secret scan reads this log for the secrets the targets plant.
  # --continue-on-error: a failed target does not stop the others; each is reported.
  (cd "$ATC" && "$VENV/ansible-test" integration --allow-destructive --continue-on-error --python 3.13 -vvv --diff "$@") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # The tests of a target are its tasks (ok/failed/skipped of each PLAY RECAP).
  local counts p f s
  counts="$("$VENV/python" scripts/count_integration.py "$log")"
  grep '^target ' <<<"$counts"
  read -r p f s < <(tail -n 1 <<<"$counts")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record integration "$p" "$f" "$s"
}

# pytest on DIR with DIR/pytest.ini, output in $LOGDIR/NAME.log; leaves the counts in p f s
# (a non-zero exit with no failure counted is one failure).
pytest_stage() {  # pytest_stage NAME DIR [PYTEST ARGS]
  local name="$1" dir="$2" rc
  shift 2
  "$VENV/pytest" -p no:cacheprovider -c "$dir/pytest.ini" "$dir" "$@" 2>&1 | tee "$LOGDIR/$name.log"
  rc=${PIPESTATUS[0]}
  read -r p f s < <(pytest_counts "$LOGDIR/$name.log")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  return 0
}

stage_harness() {
  # The test harness itself tells the truth: it counts tests, fails on a misspelt stage or one that runs nothing.
  pytest_stage harness tests/harness "$@"
  record harness "$p" "$f" "$s"
}

stage_module_runs() {
  # Modules run through Ansible's own executor (pytest-ansible) against this host.
  pytest_stage module_runs tests/module_runs "$@"
  record module_runs "$p" "$f" "$s"
}

stage_reliability() {
  # Bad input, faults, concurrency, secrets, no data lost; see docs/reliability.md.
  mkdir -p tests/output/reliability/logs  # a partial run (-k) writes there before any test has
  pytest_stage reliability tests/reliability "$@"
  record reliability "$p" "$f" "$s"
}

stage_molecule() {
  [ -d extensions/molecule ] || { echo "extensions/molecule is missing"; record molecule 0 1; return; }
  local passed=0 failed=0 scenario scenario_dir
  for scenario_dir in extensions/molecule/*/; do
    scenario="$(basename "$scenario_dir")"
    [ -f "$scenario_dir/molecule.yml" ] || continue
    # Scenarios on throwaway VMs (*_vm) boot the lab image: the lab stage runs them
    # on its one VM (tests/lab/run.sh); here only their playbooks' syntax.
    local action=test
    case "$scenario" in *_vm) action=syntax ;; esac
    if (cd extensions && "$VENV/molecule" "$action" -s "$scenario"); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  record molecule "$passed" "$failed"
}

stage_lab() {
  # A second, real host: a Debian 12 guest with systemd reached over SSH (tests/lab/run.sh).
  # One record per check ("lab-check: PASS|FAIL <name>"), so each can fail alone.
  local log="$LOGDIR/lab.log" t0=$SECONDS
  bash tests/lab/run.sh "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} name result n=0
  while read -r result name; do
    n=$((n + 1))
    if [ "$result" = PASS ]; then record "lab:$name" 1 0; else record "lab:$name" 0 1; fi
  done < <(sed -n 's/^lab-check: \(PASS\|FAIL\) \([a-z_]*\).*/\1 \2/p' "$log")
  [ "$rc" -ne 0 ] && ! grep -q '^lab-check: FAIL' "$log" && record lab 0 1
  [ "$n" -eq 0 ] && [ "$rc" -eq 0 ] && record lab 0 1
  echo "lab stage: $((SECONDS - t0)) s"
}

stage_docs() {
  # The docs and the roles' metadata say what the code does (every error message has its
  # troubleshooting row, secret role options are no_log), and the site builds.
  [ -x scripts/build-docs.sh ] || { echo "scripts/build-docs.sh is missing"; record docs 0 1; return; }
  pytest_stage docs tests/docs "$@"
  if bash scripts/build-docs.sh; then p=$((p + 1)); else f=$((f + 1)); fi
  record docs "$p" "$f" "$s"
}

stage_dist() {
  [ -x scripts/dist.sh ] || { echo "scripts/dist.sh is missing"; record dist 0 1; return; }
  local log="$LOGDIR/dist.log"
  bash scripts/dist.sh 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} p f
  p="$(grep -c '^ok:' "$log")"
  f="$(grep -c '^FAIL:' "$log")"
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record dist "$p" "$f"
}

main() {
  ALL_STAGES=(changelog lint harness sanity units module_runs integration reliability molecule lab docs dist)
  if [ $# -gt 0 ]; then
    stage="$1"; shift
    if declare -F "stage_$stage" >/dev/null; then
      "stage_$stage" "$@"
    else
      echo "unknown stage '$stage' (stages: ${ALL_STAGES[*]})"
      record "$stage" 0 1
    fi
  else
    local t0
    for stage in "${ALL_STAGES[@]}"; do
      echo "######## stage: $stage"
      t0=$SECONDS
      "stage_$stage"
      STAGE_SECONDS[$stage]=$((SECONDS - t0))
      echo "######## stage $stage took ${STAGE_SECONDS[$stage]} s"
    done
  fi

  echo
  echo "######## summary"
  for stage in "${!STAGE_RESULT[@]}"; do printf '%-14s %s\n' "$stage" "${STAGE_RESULT[$stage]}"; done | sort
  if [ "${#STAGE_SECONDS[@]}" -gt 0 ]; then
    echo "time per stage: $(for stage in "${ALL_STAGES[@]}"; do printf '%s %ss, ' "$stage" "${STAGE_SECONDS[$stage]:-0}"; done)total ${SECONDS} s"
  fi
  if [ "$TOTAL_SKIPPED" -gt 0 ]; then
    echo "total: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
  else
    echo "total: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
  fi
  [ "$TOTAL_FAILED" -eq 0 ]
}

# Bash reads a script while running it; with everything inside main, editing
# this file cannot derail a suite that is already running.
main "$@"
exit $?
