#!/usr/bin/env bash
# Boot the test guest built by tests/integration/image/build.sh on qemu:///system and check
# that it boots, reads a NoCloud seed ISO, takes a DHCP lease on an isolated
# libvirt network and powers off on an ACPI shutdown request.
#
# Usage: tests/integration/image/boot-test.sh [MACHINE...]     (default: pc q35)
#   pc  = i440fx, seed ISO on an IDE cdrom; q35 = seed ISO on a SATA (AHCI) cdrom.
# Environment:
#   KVMOPS_TEST_IMAGE_DIR   image directory (default <repo>/.cache/test-image);
#                           build.sh is run first (a no-op when cached)
#   BOOT_TIMEOUT            seconds to wait for READY (default 90)
#   SHUTDOWN_TIMEOUT        seconds to wait for ACPI power-off (default 30)
#   BOOT_KERNELS            kernels to boot, each with every MACHINE (default
#                           "vmlinuz vmlinux"; vmlinux = uncompressed PVH kernel)
#   BOOT_CMDLINE            kernel cmdline (default "console=ttyS0 quiet")
#   KEEP_LOGS=1             keep the console logs (printed path) on exit
#
# Everything it creates is named after its PID and removed on exit:
#   domain kvmops-imgtest-<pid>, isolated network kvmops-imgtest-net-<pid>
#   (bridge kvit<pid>, no <forward>: no traffic leaves the machine), and
#   /var/lib/libvirt/images/kvmops-test/imgtest-<pid>/ (seed ISO, XML, logs).
# The domain uses <domain type='qemu'> (TCG): guest kernels hang under nested
# KVM on the development machines.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
IMAGE_DIR=${KVMOPS_TEST_IMAGE_DIR:-$REPO_ROOT/.cache/test-image}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-90}
CMDLINE=${BOOT_CMDLINE:-console=ttyS0 quiet}
SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-30}
URI=qemu:///system
MACHINES=("$@")
[[ ${#MACHINES[@]} -gt 0 ]] || MACHINES=(pc q35)

ID=$$
DOM=kvmops-imgtest-$ID
NET=kvmops-imgtest-net-$ID
BRIDGE=kvit$ID
WORK=/var/lib/libvirt/images/kvmops-test/imgtest-$ID

virsh() { command virsh -q -c "$URI" "$@"; }
log() { printf '[boot-test %s] %s\n' "$(date +%T)" "$*"; }
FAILED=0
fail() { log "FAIL: $*"; FAILED=1; }

cleanup() {
  local rc=$?
  set +e
  if virsh dominfo "$DOM" >/dev/null 2>&1; then
    virsh destroy "$DOM" >/dev/null 2>&1
    virsh undefine "$DOM" >/dev/null 2>&1
  fi
  if virsh net-info "$NET" >/dev/null 2>&1; then
    virsh net-destroy "$NET" >/dev/null 2>&1
    virsh net-undefine "$NET" >/dev/null 2>&1
  fi
  if [[ ${KEEP_LOGS:-0} == 1 && -d $WORK ]]; then
    log "logs kept in $WORK"
  else
    rm -rf "$WORK"
    rmdir /var/lib/libvirt/images/kvmops-test 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in virsh genisoimage ip; do
  command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 2; }
done
pgrep -x libvirtd >/dev/null || { log "libvirtd is not running (start virtlogd -d; libvirtd -d)"; exit 2; }

"$SCRIPT_DIR/build.sh" "$IMAGE_DIR"
INITRD=$(readlink -f "$IMAGE_DIR/initrd.img")
KERNELS=()
for k in ${BOOT_KERNELS:-vmlinuz vmlinux}; do
  if [[ -f $IMAGE_DIR/$k ]]; then KERNELS+=("$k"); else log "no $IMAGE_DIR/$k, not tested"; fi
done
[[ ${#KERNELS[@]} -gt 0 ]] || { log "no kernel to boot"; exit 2; }

mkdir -p "$WORK"
chmod 755 /var/lib/libvirt/images/kvmops-test "$WORK"

# --- isolated network on a free /24 (retry: parallel runs may race for one) ---
SUBNET=
for third in 250 251 252 253 254 249 248 247 246 245; do
  USED=$( (ip -4 -o addr show; ip -4 route show) 2>/dev/null)
  grep -q "192\.168\.$third\." <<<"$USED" && continue
  cat >"$WORK/net.xml" <<EOF
<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>$NET</name>
  <bridge name='$BRIDGE' stp='off' delay='0'/>
  <ip address='192.168.$third.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.$third.100' end='192.168.$third.199'/>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <!-- no ICMP check before offering a new address: saves ~3 s per first lease -->
    <dnsmasq:option value='no-ping'/>
  </dnsmasq:options>
</network>
EOF
  virsh net-define "$WORK/net.xml" >/dev/null
  if virsh net-start "$NET" >/dev/null 2>"$WORK/net-start.err"; then
    SUBNET=192.168.$third
    break
  fi
  log "net-start on 192.168.$third.0/24 failed, trying another: $(tr '\n' ' ' <"$WORK/net-start.err")"
  virsh net-undefine "$NET" >/dev/null
done
[[ -n $SUBNET ]] || { log "could not start an isolated network on a free 192.168.x.0/24"; exit 2; }
log "network $NET up on $BRIDGE ($SUBNET.0/24, isolated)"

# --- NoCloud seed ---------------------------------------------------------------
mkdir -p "$WORK/seed"
cat >"$WORK/seed/meta-data" <<EOF
instance-id: iid-imgtest-$ID
local-hostname: seedtest
EOF
cat >"$WORK/seed/user-data" <<'EOF'
#cloud-config
password: not-a-real-secret-0815
chpasswd: { expire: false }
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestingOnly imgtest
EOF
cat >"$WORK/seed/network-config" <<'EOF'
version: 2
ethernets:
  eth0:
    dhcp4: true
EOF
genisoimage -quiet -V cidata -J -r -o "$WORK/seed.iso" \
  "$WORK/seed/meta-data" "$WORK/seed/user-data" "$WORK/seed/network-config"
chmod 644 "$WORK/seed.iso"

boot_one() {
  local machine=$1 kernel_file=$2 bus target mac log_file start now elapsed ip state t0 tag
  local KERNEL
  KERNEL=$(readlink -f "$IMAGE_DIR/$kernel_file")
  tag="$machine/$kernel_file"
  case $machine in
    q35 | pc-q35-*) bus=sata target=sda ;;
    pc | pc-*) bus=ide target=hdc ;;
    *) fail "unknown machine type $machine"; return ;;
  esac
  log_file="$WORK/console-$machine-$kernel_file.log"
  mac=$(printf '52:54:00:%02x:%02x:%02x' $((ID >> 16 & 255)) $((ID >> 8 & 255)) $((ID & 255)))
  cat >"$WORK/dom-$machine-$kernel_file.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='$machine'>hvm</type>
    <kernel>$KERNEL</kernel>
    <initrd>$INITRD</initrd>
    <cmdline>$CMDLINE</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='$WORK/seed.iso'/>
      <target dev='$target' bus='$bus'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='$NET'/>
      <mac address='$mac'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$log_file'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='$log_file'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
  rm -f "$log_file"
  virsh define "$WORK/dom-$machine-$kernel_file.xml" >/dev/null
  start=$(date +%s.%N)
  virsh start "$DOM" >/dev/null
  log "[$tag] started $DOM (TCG, seed on $bus cdrom)"

  elapsed=
  while :; do
    now=$(date +%s.%N)
    if [[ -f $log_file ]] && grep -q '^KVMOPS-TEST-GUEST READY' "$log_file"; then
      elapsed=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
      break
    fi
    if awk -v a="$start" -v b="$now" -v t="$BOOT_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then break; fi
    if [[ $(virsh domstate "$DOM" 2>/dev/null) != running ]]; then break; fi
    sleep 0.2
  done
  if [[ -z $elapsed ]]; then
    fail "[$tag] no READY within ${BOOT_TIMEOUT}s (state: $(virsh domstate "$DOM" 2>&1))"
    [[ -f $log_file ]] && tail -n 40 "$log_file" | sed 's/^/    | /'
  else
    log "[$tag] READY after ${elapsed}s"
  fi
  [[ -f $log_file ]] && tr -d '\r' <"$log_file" | grep '^KVMOPS-' | sed 's/^/    | /'

  local clean_log
  clean_log=$(tr -d '\r' <"$log_file" 2>/dev/null || true)
  grep -qx 'KVMOPS-TEST-GUEST BOOTED' <<<"$clean_log" || fail "[$tag] no BOOTED marker"
  grep -q '^KVMOPS-TEST-GUEST INSMOD-FAILED=' <<<"$clean_log" && fail "[$tag] a module failed to load"
  grep -q '^KVMOPS-SEED FOUND' <<<"$clean_log" || fail "[$tag] seed ISO not found"
  grep -qx 'KVMOPS-SEED HOSTNAME=seedtest' <<<"$clean_log" || fail "[$tag] no SEED HOSTNAME=seedtest"
  grep -qx 'KVMOPS-SEED USERDATA-LINES=5' <<<"$clean_log" || fail "[$tag] no USERDATA-LINES=5"
  grep -q 'not-a-real-secret\|ssh-ed25519' <<<"$clean_log" && fail "[$tag] user-data secrets on the console"
  grep -qx 'KVMOPS-TEST-GUEST ACPID=started' <<<"$clean_log" || fail "[$tag] acpid not started"
  ip=$(sed -n 's/^KVMOPS-TEST-GUEST IP=\([0-9.]*\)$/\1/p' <<<"$clean_log" | tail -n1)
  if [[ -z $ip ]]; then
    fail "[$tag] no IP marker"
  elif [[ $ip != "$SUBNET".* ]]; then
    fail "[$tag] IP $ip not in $SUBNET.0/24"
  else
    local leases
    for _ in $(seq 1 25); do
      leases=$(virsh net-dhcp-leases "$NET" 2>/dev/null || true)
      grep -q "$ip/" <<<"$leases" && break
      sleep 0.2
    done
    if grep -q "$mac .*$ip/24 .*seedtest" <<<"$leases"; then
      log "[$tag] lease: $(grep "$ip/" <<<"$leases" | tr -s ' ')"
    else
      fail "[$tag] no lease for $mac $ip hostname seedtest in net-dhcp-leases: $leases"
    fi
  fi

  # graceful shutdown: ACPI power button
  if [[ $(virsh domstate "$DOM" 2>/dev/null) == running ]]; then
    t0=$(date +%s.%N)
    virsh shutdown "$DOM" --mode acpi >/dev/null
    state=
    for _ in $(seq 1 $((SHUTDOWN_TIMEOUT * 5))); do
      state=$(virsh domstate "$DOM" 2>/dev/null || true)
      [[ $state == "shut off" ]] && break
      sleep 0.2
    done
    if [[ $state == "shut off" ]]; then
      log "[$tag] ACPI shutdown: shut off after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
      grep -q '^KVMOPS-TEST-GUEST POWEROFF' "$log_file" || fail "[$tag] no POWEROFF marker"
    else
      fail "[$tag] ACPI shutdown: still '$state' after ${SHUTDOWN_TIMEOUT}s"
    fi
  fi
  virsh destroy "$DOM" >/dev/null 2>&1 || true
  virsh undefine "$DOM" >/dev/null
}

for k in "${KERNELS[@]}"; do
  for m in "${MACHINES[@]}"; do boot_one "$m" "$k"; done
done

if [[ $FAILED != 0 ]]; then
  log "FAILED"
  exit 1
fi
log "PASSED (machines: ${MACHINES[*]}; kernels: ${KERNELS[*]})"
