#!/usr/bin/env bash
# The lab: kvmops.virt against a second, real host (a Debian 12 guest with
# systemd, reached over SSH with become), booted once per run. The lab host is
# the Molecule VM of the scenario extensions/molecule/kvm_host_vm: `molecule
# create` boots it, `converge`, `idempotence` and `verify` run kvm_host on it,
# the lab's other checks use the same VM, `molecule destroy` removes it.
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
# The Molecule scenario's settings (see its molecule.yml); its ephemeral
# directory (state, instance config, console log) is in this run's $TMP.
export MOLECULE_EPHEMERAL_DIRECTORY="$TMP/molecule" MOLECULE_VM_IMAGE_DIR="$IMAGE_DIR" MOLECULE_VM_PREFIX="$PREFIX" \
  MOLECULE_VM_SUBNET="$SUBNET" MOLECULE_VM_SSH_KEY="$TMP/id_ed25519" MOLECULE_VM_USER=labops
mkdir -m 711 "$MOLECULE_EPHEMERAL_DIRECTORY"  # virtlogd writes the console log here
mol() { (cd "$REPO/extensions" && molecule "$1" -s kvm_host_vm); }
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
  mol destroy >"$TMP/destroy.log" 2>&1 || { echo "lab: molecule destroy failed:"; tail -n 30 "$TMP/destroy.log"; }
  # Anything of this run's prefix that destroy left (an aborted create).
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

# molecule create: the kvm_guests role boots the lab image on an isolated network of
# this run; the instance config has the address of the DHCP lease. The lab's own
# inventory (the guest's libvirt name, become) and address file come from it.
molecule_create() {
  mol create || return 1
  python - "$TMP" "$PREFIX-host" <<'PY' || return 1
import sys, yaml
tmp, guest = sys.argv[1:]
instance = yaml.safe_load(open(f"{tmp}/molecule/instance_config.yml"))[0]
open(f"{tmp}/address", "w").write(instance["address"])
host = {"ansible_host": instance["address"], "ansible_user": instance["user"],
        "ansible_ssh_private_key_file": instance["identity_file"],
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10",
        "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": True}
yaml.safe_dump({"all": {"hosts": {guest: host}, "children": {"lab": {"hosts": {guest: {}}}}}},
               open(f"{tmp}/inventory.yml", "w"))
print("instance", instance)
PY
  local address; address="$(cat "$TMP/address")"
  case "$address" in "$SUBNET".*) ;; *) echo "address $address is not in $SUBNET.0/24"; return 1 ;; esac
  virsh -q -c qemu:///system net-dhcp-leases "$PREFIX-net" | grep -F " $address/" || { echo "no lease for $address"; return 1; }
}
check molecule_create molecule_create || exit 1
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
# kvm_host over SSH + become (the scenario's converge): packages from the lab's
# repository, systemd, objects, the libvirt group (variables in its molecule.yml);
# idempotence runs it again and fails on any change; verify asks the lab host's
# systemd and virsh.
check molecule_converge mol converge && check molecule_idempotence mol idempotence && check molecule_verify mol verify
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
  check migrate_timeout mig --tags timeout && check migrate mig --tags migrate && check drain_host mig --tags drain &&
  check migrate_offline mig --tags offline
[ "$FAILED" -eq 0 ]
