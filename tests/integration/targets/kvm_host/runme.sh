#!/usr/bin/env bash
# The kvm_host role on this host, for real:
#   1. without kvm_host_allow_emulation it fails with a readable list when the
#      host has no hardware virtualization, and a libvirt that does not answer
#      fails it after a bounded wait, naming the URI;
#   2. a check-mode run predicts the changes of the first real run, which
#      converges (packages, daemons, an isolated network and a dir pool);
#   3. a second run and a check-mode run report no change;
#   4. verify.yml checks the real state (virsh, running daemons);
#   5. without systemd, a daemon that is not running is started, and only once;
#   6. cleanup removes what the test created (always).
set -euxo pipefail

LOG_DIR="$(mktemp -d)"
WORK_DIR="$(mktemp -d)"  # the test pool's directory lives here, never at a predictable path
PLAYBOOK_ARGS=(-i "${INVENTORY_PATH:-../../inventory}" -e "kvm_host_test_id=$$" -e "kvm_host_test_workdir=$WORK_DIR" "$@")
cleanup() {
  ansible-playbook cleanup.yml "${PLAYBOOK_ARGS[@]}" || true
  rm -rf "$LOG_DIR" "$WORK_DIR"
}
trap cleanup EXIT

# "changed=N" of the play recap of a log.
changed_count() {
  grep -E '^testhost +:' "$1" | sed -E 's/.* changed=([0-9]+) .*/\1/'
}

# Fails unless the play recap of a log shows no change and no failure.
assert_no_change() {
  grep -E '^testhost +:' "$1"
  grep -qE '^testhost +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$1"
}

ansible-playbook refused.yml "${PLAYBOOK_ARGS[@]}"

ansible-playbook converge.yml --check --diff "${PLAYBOOK_ARGS[@]}" | tee "$LOG_DIR/check-first.log"
ansible-playbook converge.yml --diff "${PLAYBOOK_ARGS[@]}" | tee "$LOG_DIR/first.log"
[ "$(changed_count "$LOG_DIR/first.log")" -gt 0 ]
[ "$(changed_count "$LOG_DIR/check-first.log")" = "$(changed_count "$LOG_DIR/first.log")" ]
ansible-playbook converge.yml "${PLAYBOOK_ARGS[@]}" | tee "$LOG_DIR/second.log"
assert_no_change "$LOG_DIR/second.log"
ansible-playbook converge.yml --check --diff "${PLAYBOOK_ARGS[@]}" | tee "$LOG_DIR/check.log"
assert_no_change "$LOG_DIR/check.log"

ansible-playbook verify.yml "${PLAYBOOK_ARGS[@]}"
ansible-playbook direct_start.yml "${PLAYBOOK_ARGS[@]}"
