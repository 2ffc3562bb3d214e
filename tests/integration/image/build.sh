#!/usr/bin/env bash
# Build the tiny test guest used by kvmops.virt's integration tests.
#
# Usage: tests/integration/image/build.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to $KVMOPS_TEST_IMAGE_DIR, else <repo>/.cache/test-image
#   (git-ignored). Set KVMOPS_TEST_IMAGE_FORCE=1 to rebuild even when cached.
#
# Nothing but Debian packages is downloaded:
#   - the kernel of Debian's generic `linux-image-amd64` (the versioned package
#     it depends on, fetched with `apt-get download`, unpacked with `dpkg -x`;
#     not the -cloud- flavour, which has no AHCI driver for q35's SATA cdrom);
#   - busybox from `busybox-static` (the installed /bin/busybox when it is the
#     static build, else the package is fetched with `apt-get download`; the
#     host is never changed).
#
# Outputs in OUTPUT_DIR:
#   vmlinuz      the kernel (bzImage), for direct kernel boot
#   vmlinux      the same kernel uncompressed (ELF with a PVH entry point), only
#                if the kernel has CONFIG_PVH=y. QEMU boots it via PVH and skips
#                the in-guest xz decompression, which under TCG takes ~6 s:
#                prefer it as <kernel> when present (about 65 MB on disk and in
#                each QEMU process).
#   initrd.img   busybox initramfs (newc cpio, gzip) with the modules below
#   base.qcow2   a small empty qcow2 (64 MiB virtual) to use as a backing
#                "base image" in overlay/volume tests (guests never boot from it)
#   modules.txt  the insmod order baked into the initramfs
#   .stamp       build stamp; a re-run with a matching stamp is a no-op
#
# Boot it with direct kernel boot, cmdline `console=ttyS0 quiet`, serial console
# to a file. The guest's /init prints these lines on the console:
#   KVMOPS-TEST-GUEST BOOTED
#   KVMOPS-TEST-GUEST KERNEL=<uname -r>
#   KVMOPS-TEST-GUEST INSMOD-FAILED=<module>           (only on failure)
#   KVMOPS-TEST-GUEST ACPID=<started|unavailable>
#   KVMOPS-SEED FOUND DEV=<dev>                         (NoCloud seed, label cidata)
#   KVMOPS-SEED META-DATA: <line>                       (each line of meta-data)
#   KVMOPS-SEED INSTANCE-ID=<value>
#   KVMOPS-SEED HOSTNAME=<value>                        (local-hostname / hostname)
#   KVMOPS-SEED USERDATA-LINES=<n>                      (user-data is never printed,
#   KVMOPS-SEED USERDATA-SHA256=<hex>                    it may hold passwords/keys)
#   KVMOPS-SEED NETWORK-CONFIG: <line>                  (each line of network-config)
#   KVMOPS-SEED NOT-FOUND                               (no seed after 3 s, see
#                                                        kvmops.seedwait= below)
#   KVMOPS-TEST-GUEST NIC <if> MAC=<mac> IP=<addr|none> (one per ethN)
#   KVMOPS-TEST-GUEST DHCP-LOG <if>: <line>             (udhcpc's log, only if no address)
#   KVMOPS-TEST-GUEST IP=<addr>                         (eth0's DHCP address)
#   KVMOPS-TEST-GUEST DISKS=<vda sda sr0 ...>           (block devices, space separated)
#   KVMOPS-TEST-GUEST NICS=<eth0 ...>
#   KVMOPS-TEST-GUEST UPTIME=<seconds since the kernel started>
#   KVMOPS-TEST-GUEST READY
# and afterwards, whenever the set of disks or NICs changes (hot-plug), a new
#   KVMOPS-TEST-GUEST DISKS=...  /  KVMOPS-TEST-GUEST NICS=...  line.
# On an ACPI power-button press (`virsh shutdown`, acpi mode) busybox acpid runs
# /etc/acpi/PWRF/00000080, which prints `KVMOPS-TEST-GUEST POWEROFF` and powers
# off at once (`poweroff -f`), so graceful shutdown takes about a second.
# Kernel cmdline: `kvmops.seedwait=<s>` how long to look for the seed (default 3).
# Kernel cmdline: `kvmops.heartbeat=1` prints, every 2 s after READY,
#   KVMOPS-TEST-GUEST HEARTBEAT BOOT=<kernel boot_id> N=<count from 1>
# (a guest resumed from a memory snapshot keeps its BOOT and counts on from the
# snapshot's N; a reboot prints BOOTED and a new BOOT, N from 1 again).
# Kernel cmdline: `kvmops.tpm=1` prints, before READY (waiting up to 3 s for the device),
#   KVMOPS-TEST-GUEST TPM=<present|absent> VERSION=<major|none> DRIVER=<tpm_crb|tpm_tis|none>
# Kernel cmdline: `kvmops.bootmark=<word>` prints `KVMOPS-TEST-GUEST BOOTMARK=<word>`
# (a boot loader that passes it tells which medium the guest booted from).
# Kernel cmdline: `kvmops.vdasize=1` prints, at READY and whenever it changes
#   (checked every 2 s), KVMOPS-TEST-GUEST VDA-SECTORS=<n>   (/sys/block/vda/size)
# Kernel cmdline: `kvmops.virtiofs=<tag>` mounts the virtiofs share <tag> before READY and prints
#   KVMOPS-VIRTIOFS MOUNTED TAG=<tag>                   (or MOUNT-FAILED TAG=<tag>: <error>)
#   KVMOPS-VIRTIOFS FILE: <line>                        (each line of kvmops-virtiofs.txt in the share)
# DHCP: `udhcpc` on each ethN, sending the seed's hostname (if any); it stays
# in the background to renew the lease. There is no login, ssh or guest agent.
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
OUT=${1:-${KVMOPS_TEST_IMAGE_DIR:-$REPO_ROOT/.cache/test-image}}

# Modules the guest loads, in a working order. The real order is computed from
# each module's `depends=` at build time (dependencies first); modules that are
# built into the kernel or absent are skipped.
WANTED_MODULES=(
  virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  failover net_failover virtio_net
  virtio_blk
  scsi_common scsi_mod cdrom sr_mod sd_mod virtio_scsi
  libata ata_piix libahci ahci
  isofs
  evdev button
  tpm_tis tpm_crb  # kvm_guest's tpm option: the guest's /dev/tpm0 (kvmops.tpm=1 below)
)
# virtiofs shares (kvm_guest's filesystems option; mounted with kvmops.virtiofs=TAG)
WANTED_MODULES+=(fuse virtiofs)
BASE_QCOW2_SIZE=64M

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SCRIPT_SHA=$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)
STAMP="$OUT/.stamp"

is_fresh() {
  [[ ${KVMOPS_TEST_IMAGE_FORCE:-0} != 1 ]] || return 1
  [[ -s $OUT/vmlinuz && -s $OUT/initrd.img && -s $OUT/base.qcow2 && -f $STAMP ]] || return 1
  grep -qx "script-sha256=$SCRIPT_SHA" "$STAMP"
}

if is_fresh; then
  log "up to date: $OUT ($(grep '^kernel=' "$STAMP" || true))"
  exit 0
fi

mkdir -p "$OUT"
# Serialize concurrent builds into the same directory.
exec 9>"$OUT/.lock"
flock 9
if is_fresh; then
  log "up to date: $OUT (built by a concurrent run)"
  exit 0
fi

for tool in apt-get apt-cache dpkg dpkg-deb gzip qemu-img sha256sum; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvmops-test-image.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
chmod 755 "$WORK"
mkdir -p "$WORK/debs"
# apt-get download as root drops to _apt; let it write there (avoids a warning).
if id _apt >/dev/null 2>&1; then chown _apt "$WORK/debs" 2>/dev/null || true; fi

apt_download() { # PACKAGE -> prints the path of the downloaded .deb
  local pkg=$1 deb
  (cd "$WORK/debs" && apt-get download -q "$pkg" >&2) ||
    die "apt-get download $pkg failed (stale package lists? run 'apt-get update')"
  deb=$(find "$WORK/debs" -maxdepth 1 -name "${pkg}_*.deb" | sed -n 1p)
  [[ -n $deb ]] || die "no .deb for $pkg after download"
  printf '%s\n' "$deb"
}

# --- kernel -----------------------------------------------------------------
KPKG=${KVMOPS_TEST_KERNEL_PKG:-}
if [[ -z $KPKG ]]; then
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '!found && $1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; found = 1 }' || true)
  [[ -n $KPKG ]] || KPKG=$(apt-cache show linux-image-amd64 2>/dev/null |
    sed -n 's/^Depends: .*\(linux-image-[0-9][^ ,]*\).*/\1/p' | sed -n 1p || true)
fi
[[ -n $KPKG ]] || die "cannot resolve the kernel package linux-image-amd64 depends on (run 'apt-get update')"
case $KPKG in *cloud*) die "$KPKG is the -cloud- flavour (no AHCI); use the generic kernel" ;; esac
log "kernel package: $KPKG"
KDEB=$(apt_download "$KPKG")
KDEB_VERSION=$(dpkg-deb -f "$KDEB" Version)
mkdir -p "$WORK/kernel"
dpkg -x "$KDEB" "$WORK/kernel"
VMLINUZ=$(find "$WORK/kernel/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sed -n 1p || true)
[[ -n $VMLINUZ ]] || die "no /boot/vmlinuz-* in $KDEB"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR="$WORK/kernel/lib/modules/$KVER"
[[ -d $MODDIR/kernel ]] || die "no modules directory for $KVER"
log "kernel version: $KVER ($KDEB_VERSION)"

# --- busybox ----------------------------------------------------------------
is_static() { [[ -x $1 ]] && ! ldd "$1" >/dev/null 2>&1; }
BUSYBOX=
for cand in /bin/busybox /usr/bin/busybox; do
  if is_static "$cand" && "$cand" --list 2>/dev/null | grep -qx udhcpc; then
    BUSYBOX=$cand
    break
  fi
done
if [[ -z $BUSYBOX ]]; then
  log "no static busybox installed; fetching busybox-static"
  BBDEB=$(apt_download busybox-static)
  mkdir -p "$WORK/bb"
  dpkg -x "$BBDEB" "$WORK/bb"
  BUSYBOX="$WORK/bb/bin/busybox"
  is_static "$BUSYBOX" || die "busybox-static did not contain a static /bin/busybox"
fi
log "busybox: $BUSYBOX"
BB_APPLETS=$("$BUSYBOX" --list)
for applet in sh mount insmod udhcpc ip hostname sleep poweroff dd sha256sum; do
  grep -qx "$applet" <<<"$BB_APPLETS" || die "busybox lacks applet: $applet"
done

# --- module dependency resolution --------------------------------------------
declare -A MOD_FILE=()   # name (underscores) -> path
while IFS= read -r -d '' f; do
  b=${f##*/}
  b=${b%%.ko*}
  MOD_FILE[${b//-/_}]=$f
done < <(find "$MODDIR/kernel" -name '*.ko*' -print0)

ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib/modules,etc/acpi/PWRF,usr/share/udhcpc,proc,sys,dev,tmp,run,var/run,mnt/seed}

mod_unpack() { # NAME -> writes $ROOT/lib/modules/NAME.ko
  local name=$1 src=${MOD_FILE[$1]} dst="$ROOT/lib/modules/$1.ko"
  case $src in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) die "unknown module format: $src" ;;
  esac
}
mod_depends() { # NAME -> dependency names, one per line
  tr '\0' '\n' <"$ROOT/lib/modules/$1.ko" | sed -n 's/^depends=//p' | head -n1 | tr ',' '\n' |
    sed '/^$/d; s/-/_/g'
}
is_builtin() { grep -q "/$1\.ko" "$MODDIR/modules.builtin" 2>/dev/null; }

declare -A MOD_STATE=()   # name -> visiting|done|skip
ORDER=()
resolve() {
  local name=$1 dep
  case ${MOD_STATE[$name]:-} in
    "done" | skip) return 0 ;;
    visiting) die "module dependency cycle at $name" ;;
  esac
  if [[ -z ${MOD_FILE[$name]:-} ]]; then
    if is_builtin "$name"; then log "module $name: built into the kernel"; else log "module $name: not in this kernel, skipped"; fi
    MOD_STATE[$name]=skip
    return 0
  fi
  MOD_STATE[$name]=visiting
  mod_unpack "$name"
  while IFS= read -r dep; do resolve "$dep"; done < <(mod_depends "$name")
  MOD_STATE[$name]="done"
  ORDER+=("$name")
}
for m in "${WANTED_MODULES[@]}"; do resolve "$m"; done
printf '%s\n' "${ORDER[@]}" >"$ROOT/etc/modules"
log "insmod order: ${ORDER[*]}"

# --- initramfs ----------------------------------------------------------------
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 755 "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"

cat >"$ROOT/init" <<'EOF_INIT'
#!/bin/busybox sh
# kvmops.virt test guest /init (generated by tests/integration/image/build.sh)
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || { mount -t tmpfs tmpfs /dev; mdev -s; }
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
exec </dev/console >/dev/console 2>&1
echo 1 >/proc/sys/kernel/printk 2>/dev/null || true
hostname kvmops-test-guest

say() { echo "$*"; }
say "KVMOPS-TEST-GUEST BOOTED"
say "KVMOPS-TEST-GUEST KERNEL=$(uname -r)"

while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$m.ko" || say "KVMOPS-TEST-GUEST INSMOD-FAILED=$m"
done </etc/modules

# ACPI power button -> poweroff (busybox acpid reads /dev/input/event*)
if command -v acpid >/dev/null && ls /dev/input/event* >/dev/null 2>&1; then
  if acpid -c /etc/acpi -l /tmp/acpid.log; then
    say "KVMOPS-TEST-GUEST ACPID=started"
  else
    say "KVMOPS-TEST-GUEST ACPID=unavailable"
  fi
else
  say "KVMOPS-TEST-GUEST ACPID=unavailable"
fi

list_disks() {
  out=
  for d in /sys/block/*; do
    n=${d##*/}
    case $n in loop* | ram* | zram* | \*) continue ;; esac
    out="${out:+$out }$n"
  done
  echo "$out"
}
list_nics() {
  out=
  for d in /sys/class/net/*; do
    n=${d##*/}
    case $n in lo | \*) continue ;; esac
    out="${out:+$out }$n"
  done
  echo "$out"
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# --- NoCloud seed (filesystem label cidata) ---
seed_label() { # DEV -> ISO9660 volume id
  dd if="$1" bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null | tr -d ' \000'
}
# Wait up to kvmops.seedwait= (kernel cmdline, seconds, default 3) for the seed
# to appear: ATA/AHCI probing is asynchronous (it takes ~0.4 s under TCG).
SEED_WAIT=3
for arg in $(cat /proc/cmdline); do
  case $arg in kvmops.seedwait=*) SEED_WAIT=${arg#kvmops.seedwait=} ;; esac
done
case $SEED_WAIT in '' | *[!0-9]*) SEED_WAIT=3 ;; esac
HEARTBEAT=0
for arg in $(cat /proc/cmdline); do
  case $arg in kvmops.heartbeat=1) HEARTBEAT=1 ;; esac
done
VDASIZE=0
for arg in $(cat /proc/cmdline); do
  case $arg in kvmops.vdasize=1) VDASIZE=1 ;; esac
done
SEED_DEV=
i=0
while [ $i -lt $((SEED_WAIT * 5)) ] && [ -z "$SEED_DEV" ]; do
  for dev in /dev/sr* /dev/vd* /dev/sd* /dev/hd*; do
    [ -b "$dev" ] || continue
    case $(seed_label "$dev") in
      cidata | CIDATA)
        if mount -t iso9660 -o ro "$dev" /mnt/seed 2>/dev/null; then SEED_DEV=$dev; break; fi ;;
    esac
  done
  [ -n "$SEED_DEV" ] && break
  i=$((i + 1))
  sleep 0.2
done
HOSTNAME_FROM_SEED=
if [ -n "$SEED_DEV" ]; then
  say "KVMOPS-SEED FOUND DEV=$SEED_DEV"
  if [ -f /mnt/seed/meta-data ]; then
    while IFS= read -r line || [ -n "$line" ]; do say "KVMOPS-SEED META-DATA: $line"; done </mnt/seed/meta-data
    val() { # KEY -> value from YAML `key: value` or JSON `{"key": "value", ...}`
      if [ "$(tr -d ' \t\r\n' </mnt/seed/meta-data | cut -c1)" = "{" ]; then
        tr ',{}\r' '\n\n\n\n' </mnt/seed/meta-data
      else
        tr -d '\r' </mnt/seed/meta-data
      fi | sed -n "s/^[[:space:]]*[\"']\{0,1\}$1[\"']\{0,1\}[[:space:]]*:[[:space:]]*//p" | head -n1 |
        sed "s/[[:space:]]*\$//; s/^\"\(.*\)\"\$/\1/; s/^'\(.*\)'\$/\1/"
    }
    IID=$(val instance-id)
    [ -n "$IID" ] && say "KVMOPS-SEED INSTANCE-ID=$IID"
    HOSTNAME_FROM_SEED=$(val local-hostname)
    [ -n "$HOSTNAME_FROM_SEED" ] || HOSTNAME_FROM_SEED=$(val hostname)
  fi
  if [ -f /mnt/seed/user-data ]; then
    say "KVMOPS-SEED USERDATA-LINES=$(wc -l </mnt/seed/user-data)"
    say "KVMOPS-SEED USERDATA-SHA256=$(sha256sum </mnt/seed/user-data | cut -d' ' -f1)"
  fi
  if [ -f /mnt/seed/network-config ]; then
    while IFS= read -r line || [ -n "$line" ]; do say "KVMOPS-SEED NETWORK-CONFIG: $line"; done </mnt/seed/network-config
  fi
else
  say "KVMOPS-SEED NOT-FOUND"
fi
if [ -n "$HOSTNAME_FROM_SEED" ]; then
  hostname "$HOSTNAME_FROM_SEED"
  say "KVMOPS-SEED HOSTNAME=$HOSTNAME_FROM_SEED"
fi

# --- network: DHCP on every ethN ---
ip link set lo up
HOSTOPT=
[ -n "$HOSTNAME_FROM_SEED" ] && HOSTOPT="-x hostname:$HOSTNAME_FROM_SEED"
for d in /sys/class/net/eth*; do
  [ -e "$d" ] || continue
  ifc=${d##*/}
  ip link set "$ifc" up
  # -b: go to background after the lease (or after the retries); keeps renewing
  udhcpc -i "$ifc" -s /usr/share/udhcpc/default.script -b -t 8 -T 2 -A 3 -p "/run/udhcpc.$ifc.pid" $HOSTOPT >/tmp/udhcpc.$ifc.log 2>&1
done
for d in /sys/class/net/eth*; do
  [ -e "$d" ] || continue
  ifc=${d##*/}
  addr=$(ip -4 -o addr show dev "$ifc" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n1)
  say "KVMOPS-TEST-GUEST NIC $ifc MAC=$(cat "$d/address") IP=${addr:-none}"
  if [ -z "$addr" ]; then
    while IFS= read -r line; do say "KVMOPS-TEST-GUEST DHCP-LOG $ifc: $line"; done <"/tmp/udhcpc.$ifc.log"
  fi
  [ "$ifc" = eth0 ] && [ -n "$addr" ] && say "KVMOPS-TEST-GUEST IP=$addr"
done

# --- virtiofs share (opt-in: kvmops.virtiofs=TAG) ---
VIRTIOFS_TAG=
for arg in $(cat /proc/cmdline); do
  case $arg in kvmops.virtiofs=*) VIRTIOFS_TAG=${arg#kvmops.virtiofs=} ;; esac
done
if [ -n "$VIRTIOFS_TAG" ]; then
  mkdir -p /mnt/virtiofs
  if mount -t virtiofs "$VIRTIOFS_TAG" /mnt/virtiofs 2>/tmp/virtiofs.err; then
    say "KVMOPS-VIRTIOFS MOUNTED TAG=$VIRTIOFS_TAG"
    if [ -f /mnt/virtiofs/kvmops-virtiofs.txt ]; then
      while IFS= read -r line || [ -n "$line" ]; do say "KVMOPS-VIRTIOFS FILE: $line"; done </mnt/virtiofs/kvmops-virtiofs.txt
    fi
  else
    say "KVMOPS-VIRTIOFS MOUNT-FAILED TAG=$VIRTIOFS_TAG: $(cat /tmp/virtiofs.err)"
  fi
fi

DISKS=$(list_disks)
NICS=$(list_nics)
say "KVMOPS-TEST-GUEST DISKS=$DISKS"
say "KVMOPS-TEST-GUEST NICS=$NICS"
say "KVMOPS-TEST-GUEST UPTIME=$(uptime_s)"
# opt-in: kvmops.tpm=1 (kvm_guest's tpm option), kvmops.bootmark=<word> (boot_order)
for arg in $(cat /proc/cmdline); do
  case $arg in
    kvmops.bootmark=*) say "KVMOPS-TEST-GUEST BOOTMARK=${arg#kvmops.bootmark=}" ;;
    kvmops.tpm=1)
      i=0
      while [ $i -lt 15 ] && [ ! -e /dev/tpm0 ]; do i=$((i + 1)); sleep 0.2; done
      if [ -e /dev/tpm0 ]; then
        ver=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)
        drv=$(readlink /sys/class/tpm/tpm0/device/driver 2>/dev/null)
        say "KVMOPS-TEST-GUEST TPM=present VERSION=${ver:-none} DRIVER=${drv##*/}"
      else
        say "KVMOPS-TEST-GUEST TPM=absent VERSION=none DRIVER=none"
      fi ;;
  esac
done
say "KVMOPS-TEST-GUEST READY"

# PID 1 must not exit. Report hot-plugged disks/NICs.
BOOT_ID=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
BEAT=0
VDA_SECTORS=
if [ "$VDASIZE" = 1 ]; then
  VDA_SECTORS=$(cat /sys/block/vda/size 2>/dev/null || echo none)
  say "KVMOPS-TEST-GUEST VDA-SECTORS=$VDA_SECTORS"
fi
while true; do
  sleep 2
  if [ "$HEARTBEAT" = 1 ]; then
    BEAT=$((BEAT + 1))
    say "KVMOPS-TEST-GUEST HEARTBEAT BOOT=$BOOT_ID N=$BEAT"
  fi
  d=$(list_disks)
  [ "$d" != "$DISKS" ] && DISKS=$d && say "KVMOPS-TEST-GUEST DISKS=$DISKS"
  n=$(list_nics)
  [ "$n" != "$NICS" ] && NICS=$n && say "KVMOPS-TEST-GUEST NICS=$NICS"
  if [ "$VDASIZE" = 1 ]; then
    s=$(cat /sys/block/vda/size 2>/dev/null || echo none)
    [ "$s" != "$VDA_SECTORS" ] && VDA_SECTORS=$s && say "KVMOPS-TEST-GUEST VDA-SECTORS=$VDA_SECTORS"
  fi
done
EOF_INIT
chmod 755 "$ROOT/init"

cat >"$ROOT/usr/share/udhcpc/default.script" <<'EOF_DHCP'
#!/bin/sh
# udhcpc hook: configure the leased address (busybox udhcpc env variables)
exec >>"/tmp/udhcpc.$interface.log" 2>&1
echo "udhcpc script: $1 ip=$ip mask=$mask router=$router"
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface" 2>/dev/null
    ip link set "$interface" up
    ;;
  bound | renew)
    ip -4 addr flush dev "$interface" 2>/dev/null
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
      for r in $router; do ip route replace default via "$r" dev "$interface" && break; done
    fi
    : >/etc/resolv.conf
    for s in $dns; do echo "nameserver $s" >>/etc/resolv.conf; done
    ;;
esac
exit 0
EOF_DHCP
chmod 755 "$ROOT/usr/share/udhcpc/default.script"
# Debian's busybox looks for /etc/udhcpc/default.script (upstream: /usr/share/udhcpc/)
mkdir -p "$ROOT/etc/udhcpc"
ln -s ../../usr/share/udhcpc/default.script "$ROOT/etc/udhcpc/default.script"

cat >"$ROOT/etc/acpi/PWRF/00000080" <<'EOF_ACPI'
#!/bin/sh
echo "KVMOPS-TEST-GUEST POWEROFF" >/dev/console
sync
poweroff -f
EOF_ACPI
chmod 755 "$ROOT/etc/acpi/PWRF/00000080"
echo kvmops-test-guest >"$ROOT/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"

if command -v cpio >/dev/null; then
  CPIO=(cpio --quiet -o -H newc -R 0:0)
else
  CPIO=("$BUSYBOX" cpio -o -H newc -R 0:0)
fi
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | "${CPIO[@]}") | gzip -9n >"$WORK/initrd.img"

# --- base image -----------------------------------------------------------------
qemu-img create -q -f qcow2 "$WORK/base.qcow2" "$BASE_QCOW2_SIZE"

# --- uncompressed PVH kernel ---------------------------------------------------
# The bzImage payload is xz (Debian) or zstd/gzip compressed; find its magic.
extract_vmlinux() { # BZIMAGE OUTPUT
  local img=$1 out=$2 magic tool off
  for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
    tool=${magic%%:*}
    command -v "$tool" >/dev/null || continue
    for off in $(LC_ALL=C grep -obUaP "${magic#*:}" "$img" 2>/dev/null | cut -d: -f1 | head -n 5 || true); do
      case $tool in
        xz) tail -c +$((off + 1)) "$img" | xz -dc --single-stream >"$out" 2>/dev/null || true ;;
        zstd) tail -c +$((off + 1)) "$img" | zstd -qdc >"$out" 2>/dev/null || true ;;
        gzip) tail -c +$((off + 1)) "$img" | gzip -dc >"$out" 2>/dev/null || true ;;
      esac
      [[ -s $out && $(head -c 4 "$out" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] && return 0
    done
  done
  rm -f "$out"
  return 1
}
INSTALL=(vmlinuz initrd.img base.qcow2 modules.txt)
if grep -qx 'CONFIG_PVH=y' "$WORK/kernel/boot/config-$KVER" 2>/dev/null; then
  if extract_vmlinux "$VMLINUZ" "$WORK/vmlinux"; then
    INSTALL+=(vmlinux)
  else
    log "could not extract an uncompressed vmlinux; only vmlinuz is built"
  fi
else
  log "kernel has no CONFIG_PVH=y: no vmlinux (boot vmlinuz)"
fi

# --- install ------------------------------------------------------------------
cp "$VMLINUZ" "$WORK/vmlinuz"
printf '%s\n' "${ORDER[@]}" >"$WORK/modules.txt"
rm -f "$STAMP"
[[ " ${INSTALL[*]} " == *" vmlinux "* ]] || rm -f "$OUT/vmlinux"
for f in "${INSTALL[@]}"; do
  chmod 644 "$WORK/$f"
  mv -f "$WORK/$f" "$OUT/$f"
done
{
  echo "script-sha256=$SCRIPT_SHA"
  echo "kernel=$KVER"
  echo "kernel-package=$KPKG=$KDEB_VERSION"
  echo "busybox=$("$BUSYBOX" 2>&1 | sed -n 1p || true)"
  echo "modules=${ORDER[*]}"
} >"$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
log "built $OUT: ${INSTALL[*]} (kernel $KVER)"
