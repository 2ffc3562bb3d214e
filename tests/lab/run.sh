#!/usr/bin/env bash
# The lab: kvmops.virt against a second, real host (a Debian 12 guest with
# systemd, reached over SSH with become), booted once per run.
#   tests/lab/run.sh            (scripts/test.sh lab runs it)
# Needs the environment scripts/test.sh sets (PATH with .venv/bin,
# ANSIBLE_COLLECTIONS_PATH) and root with qemu:///system on this machine.
# Prints one line per check, `lab-check: PASS <name>` or `lab-check: FAIL <name>`,
# and `lab: <seconds> s`; exits non-zero when a check failed. Everything it
# creates carries the run's prefix and is removed at the end, also on failure.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAB="$REPO/tests/lab"
START=$(date +%s)
FAILED=0

bash "$LAB/build-image.sh" || { echo "lab-check: FAIL image"; exit 1; }
echo "lab-check: PASS image"
IMAGE_DIR="${KVMOPS_LAB_IMAGE_DIR:-$REPO/.cache/lab-image}"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/kvmops-lab.XXXXXX")"
chmod 711 "$TMP"  # virtlogd writes the console log here
PREFIX="kvmops-lab-$(tr -dc a-z0-9 </dev/urandom | head -c 6)"
# A /24 that no interface of this machine uses (guests only use isolated networks).
SUBNET=""
for _ in $(seq 1 50); do
  cand="192.168.$((100 + RANDOM % 100))"
  if ! ip -4 addr | grep -q " $cand\."; then SUBNET="$cand"; break; fi
done
[ -n "$SUBNET" ] || { echo "lab: no free subnet"; exit 1; }
ssh-keygen -q -t ed25519 -N '' -C "$PREFIX" -f "$TMP/id_ed25519"
cat >"$TMP/vars.yml" <<YAML
lab_prefix: $PREFIX
lab_guest: $PREFIX-host
lab_subnet: "$SUBNET"
lab_tmp: $TMP
lab_key: $TMP/id_ed25519
lab_user: labops
lab_image_dir: $IMAGE_DIR
lab_control_memory_mb: $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
lab_uri: "qemu+ssh://labops@ADDRESS/system?keyfile=$TMP/id_ed25519&no_verify=1&no_tty=1"
YAML
# Pipelining: each task is one SSH round trip instead of four (put, chmod, run,
# remove); under TCG each round trip costs seconds. Debian's sudo has no requiretty.
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_STDOUT_CALLBACK=default \
  ANSIBLE_PIPELINING=True

cleanup() {
  ansible-playbook -e "lab_vars=$TMP/vars.yml" "$LAB/down.yml" >"$TMP/down.log" 2>&1 ||
    { echo "lab: cleanup failed:"; tail -n 30 "$TMP/down.log"; }
  # libvirt's ssh transport (no_verify=1) records the lab's host key for root.
  [ -s "$TMP/address" ] && ssh-keygen -R "$(cat "$TMP/address")" >/dev/null 2>&1
  rm -rf "$TMP"
  echo "lab: $(($(date +%s) - START)) s"
}
trap cleanup EXIT

stamp() { local l; while IFS= read -r l; do printf '%(%T)T %s\n' -1 "$l"; done; }
check() {  # check NAME COMMAND... : one line per check, the log shown on failure
  local name=$1; shift
  local t0=$SECONDS
  # Each log line carries the time it was written (where a slow lab spends it).
  if "$@" 2>&1 | stamp >"$TMP/$name.log"; then
    echo "lab-check: PASS $name ($((SECONDS - t0)) s)"
  else
    echo "lab-check: FAIL $name ($((SECONDS - t0)) s)"
    sed 's/^/    /' "$TMP/$name.log" | tail -n 60
    FAILED=$((FAILED + 1))
    return 1
  fi
}
play() { ansible-playbook -e "lab_vars=$TMP/vars.yml" "$@"; }
lab_play() { ansible-playbook -i "$TMP/inventory.yml" -e "lab_vars=$TMP/vars.yml" "$@"; }
# PLAY RECAP of the lab host: changed=0 and failed=0
recap_unchanged() { grep -E "^$PREFIX-host +:" "$1" | grep -q ' changed=0 .* failed=0 '; }

check deploy play "$LAB/up.yml" || exit 1
check login lab_play "$LAB/login.yml" || exit 1
check agent_address play "$LAB/agent.yml"
sed -i "s/ADDRESS/$(cat "$TMP/address")/" "$TMP/vars.yml"
# check_host on the fresh host: no libvirt, no libvirt-python, no lxml.
check_host() {
  lab_play kvmops.virt.check_host -e kvmops_hosts=lab -e kvm_host_allow_emulation=true | tee "$TMP/check_host.out" || return 1
  local out="$TMP/check_host.out" want
  for want in "libvirt-python and lxml not installed on this host" "virtualization: emulation" \
      "CPU: .*, 2 CPUs, x86_64, extension none" "memory 19[0-9][0-9] MiB" "libvirt: not reachable" \
      "\\[FAIL\\] libvirt reachable: libvirt-python and lxml not installed"; do
    grep -q -- "$want" "$out" || { echo "check_host: no line matches '$want'"; return 1; }
  done
}
check check_host check_host
# prepare_host over SSH + become: packages from the lab's repository, systemd, objects, the libvirt group.
cat >"$TMP/prepare.yml" <<YAML
kvmops_hosts: lab
kvm_host_allow_emulation: true
# A headless host: no GTK display and friends (the lab's repository has no recommends either).
kvm_host_install_recommends: false
kvm_host_min_memory_mb: 1024
kvm_host_min_disk_mb: 512
kvm_host_libvirt_users: [labops]
kvm_host_networks:
  - {name: labnet, mode: isolated, ipv4: {address: 10.99.7.1/24, dhcp: {start: 10.99.7.10, end: 10.99.7.50}}, autostart: true}
kvm_host_pools:
  - {name: default, type: dir, path: /var/lib/libvirt/images, autostart: true}
  - {name: labpool, type: dir, path: /var/lib/libvirt/labpool, autostart: true}
YAML
prepare_host() { lab_play kvmops.virt.prepare_host -e "@$TMP/prepare.yml" && lab_play "$LAB/verify_host.yml"; }
prepare_again() {
  lab_play kvmops.virt.prepare_host -e "@$TMP/prepare.yml" | tee "$TMP/second.out" && recap_unchanged "$TMP/second.out"
}
check prepare_host prepare_host && check prepare_host_again prepare_again
check remote_capabilities play "$LAB/remote.yml" --tags caps
# The inventory plugin lists the lab host's guests through the same URI.
remote_inventory() {
  local address; address="$(cat "$TMP/address")"
  cat >"$TMP/lab.libvirt_guests.yml" <<YAML
plugin: kvmops.virt.libvirt_guests
uris: ["qemu+ssh://labops@$address/system?keyfile=$TMP/id_ed25519&no_verify=1&no_tty=1"]
states: [all]
strict: true
YAML
  ansible-inventory -i "$TMP/lab.libvirt_guests.yml" --list | python3 "$LAB/inventory_host.py" "$PREFIX-inner" >"$TMP/inner.json" ||
    return 1
  python3 - "$TMP/inner.json" "$address" <<'PY'
import json, sys
host, address = json.load(open(sys.argv[1])), sys.argv[2]
assert host["libvirt_memory_mb"] == 384 and host["libvirt_state"] == "shutdown", host
assert address in host["libvirt_uri"] and host["libvirt_tags"] == ["lab"], host
print("listed", host["libvirt_name"], "from", host["libvirt_uri"])
PY
}
check remote_guest play "$LAB/remote.yml" --tags define && check remote_inventory remote_inventory
check remote_remove play "$LAB/remote.yml" --tags remove
# Migration there and back: kvm_migrate and the drain_host playbook (tests/lab/migrate.yml), with the test guest image.
MIG_IMAGE="${KVMOPS_TEST_IMAGE_DIR:-$REPO/.cache/test-image}"
mig() { bash "$REPO/tests/integration/image/build.sh" "$MIG_IMAGE" >/dev/null && play "$LAB/migrate.yml" -e "mig_image_dir=$MIG_IMAGE" "$@"; }
check migrate_setup mig --tags setup && check migrate_preflight mig --tags preflight &&
  check migrate_timeout mig --tags timeout && check migrate mig --tags migrate && check drain_host mig --tags drain

[ "$FAILED" -eq 0 ]
