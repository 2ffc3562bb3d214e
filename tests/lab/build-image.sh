#!/usr/bin/env bash
# Build the lab image: a real Debian 12 host for kvmops.virt's tests (the `lab`
# stage, and later Molecule VMs and migration tests), from Debian packages only.
#
# Usage: tests/lab/build-image.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to $KVMOPS_LAB_IMAGE_DIR, else <repo>/.cache/lab-image
#   (git-ignored). The build is cached by content: OUTPUT_DIR/.stamp holds the
#   sha256 of this script (which holds both package lists); a run with a
#   matching stamp does nothing. KVMOPS_LAB_IMAGE_FORCE=1 rebuilds anyway.
#   Needs root, mmdebstrap, e2fsprogs (mkfs.ext4 -d), qemu-img, and Debian's
#   archive through the host's apt sources (about 2-4 minutes, ~1 GiB of
#   downloads on a first build).
#
# Outputs in OUTPUT_DIR (all read-only inputs: use disk.qcow2 as the backing
# file of a thin overlay, never boot it directly):
#   disk.qcow2   the root filesystem: ext4, NO partition table, for /dev/vda
#                (virtio disk; fstab mounts /dev/vda at /). 4 GiB virtual.
#   vmlinuz      the image's own kernel (Debian's linux-image-amd64)
#   initrd.img   its initramfs (initramfs-tools, generic: boots from virtio)
#   cmdline      the kernel command line: root=/dev/vda rw console=ttyS0
#   repo.txt     the packages in the image's local apt repository
#   .stamp       the cache key (see above) and what was built
#
# Boot it with direct kernel boot (kernel, initrd, cmdline above) under TCG
# (virt_type: qemu), 2 vCPUs and 2 GiB: systemd, sshd and cloud-init come up
# in about a minute. Give it a NoCloud seed (a cdrom labelled `cidata`, e.g.
# kvm_guest's `cloud_init`): cloud-init creates the users of its user-data and
# configures DHCP on the first NIC (ifupdown + isc-dhcp-client). growpart and
# resize_rootfs are off (the root is not partitioned). The QEMU guest agent
# starts when the domain has its virtio channel (kvm_guest adds it).
# The root account is locked; only cloud-init's users can log in (SSH keys).
#
# Inside, /srv/kvmops-repo is a local apt repository (`deb [trusted=yes]
# file:/srv/kvmops-repo ./`, the image's ONLY apt source; package lists are
# already fetched) holding the libvirt/QEMU stack that kvmops.virt.kvm_host
# installs on Debian 12 (REPO_PACKAGES below, with their dependencies but NOT
# their recommends: about 210 packages instead of about 500, qemu-system-x86's
# recommends being the GTK display and its libraries),
# so the role installs packages for real with no network. Recommends missing
# from the only source are skipped by apt, with or without Install-Recommends.
#
# Made for TCG speed (dpkg is most of prepare_host's time under emulation):
# dpkg runs with force-unsafe-io and drops docs, man pages and translations
# (/etc/dpkg/dpkg.cfg.d/99mmdebstrap), man-db does not rebuild its index, and
# apt keeps no downloaded copies.
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
OUT=${1:-${KVMOPS_LAB_IMAGE_DIR:-$REPO_ROOT/.cache/lab-image}}

SUITE=bookworm
# Installed in the image.
IMAGE_PACKAGES=(
  systemd-sysv openssh-server python3 cloud-init qemu-guest-agent linux-image-amd64
  ifupdown isc-dhcp-client netbase sudo iproute2 apt-utils dbus
  python3-apt
)
# Downloaded into the local repository, not installed: what kvm_host installs
# on Debian 12 (roles/kvm_host/vars/Debian-12.yml: packages, emulator, firmware,
# Python bindings). python3-apt, which Ansible's apt module needs, is in the
# image instead: the module installs it itself when it is missing, a step the
# lab need not spend emulated minutes on.
REPO_PACKAGES=(
  libvirt-daemon-system libvirt-clients qemu-utils dnsmasq-base
  qemu-system-x86 ovmf
  python3-libvirt python3-lxml
)
DISK_SIZE=4G
CMDLINE="root=/dev/vda rw console=ttyS0"

log() { printf 'lab/build-image.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

KEY=$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)
STAMP="$OUT/.stamp"
is_fresh() {
  [[ ${KVMOPS_LAB_IMAGE_FORCE:-0} != 1 ]] || return 1
  [[ -s $OUT/disk.qcow2 && -s $OUT/vmlinuz && -s $OUT/initrd.img && -f $STAMP ]] || return 1
  grep -qx "key=$KEY" "$STAMP"
}
if is_fresh; then
  log "up to date: $OUT"
  exit 0
fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if is_fresh; then
  log "up to date: $OUT (built by a concurrent run)"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap in root mode, mkfs.ext4 -d keeps owners)"
for tool in mmdebstrap mkfs.ext4 qemu-img sha256sum; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (scripts/setup.sh installs it)"
done

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/kvmops-lab-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
START=$(date +%s)

# The package lists stay (mmdebstrap removes them by default), as on an
# installed system: without them apt finds nothing until an `apt-get update`,
# which kvm_host skips when the lists directory looks fresh (cache_valid_time).
# The customize hook runs inside the finished system (mmdebstrap mounts /dev,
# /proc and /sys for it): download the stack, index it, make it the only source.
HOOK=$(cat <<EOF
set -e
chroot "\$1" apt-get -q -y -o APT::Install-Recommends=false install --download-only ${REPO_PACKAGES[*]} >/dev/null
mkdir -p "\$1/srv/kvmops-repo"
mv "\$1"/var/cache/apt/archives/*.deb "\$1/srv/kvmops-repo/"
chroot "\$1" sh -c 'cd /srv/kvmops-repo && apt-ftparchive packages . > Packages'
rm -f "\$1/etc/apt/sources.list" "\$1"/etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:/srv/kvmops-repo ./' > "\$1/etc/apt/sources.list.d/kvmops-lab.list"
rm -rf "\$1"/var/lib/apt/lists/*
echo "man-db man-db/auto-update boolean false" | chroot "\$1" debconf-set-selections
rm -f "\$1/var/lib/man-db/auto-update"
echo 'Binary::apt::APT::Keep-Downloaded-Packages "false";' > "\$1/etc/apt/apt.conf.d/90kvmops-lab"
chroot "\$1" apt-get -q update >/dev/null
EOF
)

log "mmdebstrap $SUITE (image: ${IMAGE_PACKAGES[*]}; repository: ${REPO_PACKAGES[*]})"
# The host's own apt sources (Debian's archive as this machine reaches it).
mmdebstrap --variant=apt --mode=root --format=directory \
  --dpkgopt=force-unsafe-io --skip=cleanup/apt/lists \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --include="$(IFS=,; echo "${IMAGE_PACKAGES[*]}")" \
  --customize-hook="$HOOK" \
  "$SUITE" "$ROOT" - </etc/apt/sources.list.d/debian.sources >&2 2>"$WORK/mmdebstrap.log" ||
  { tail -n 40 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

log "configuring the image"
echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$ROOT/etc/fstab"
echo lab >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 lab\n' >"$ROOT/etc/hosts"
: >"$ROOT/etc/machine-id"   # a new machine id on first boot
rm -f "$ROOT"/etc/ssh/ssh_host_*  # cloud-init makes this host's keys
printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' >"$ROOT/etc/network/interfaces"
echo LANG=C.UTF-8 >"$ROOT/etc/default/locale"
mkdir -p "$ROOT/etc/cloud/cloud.cfg.d"
cat >"$ROOT/etc/cloud/cloud.cfg.d/90-kvmops-lab.cfg" <<'EOF'
# kvmops.virt lab image: NoCloud seed only; the root has no partition table.
datasource_list: [NoCloud, None]
# The image has no `locales` package: keep the C.UTF-8 of /etc/default/locale
# (cloud-init's default en_US.UTF-8 would fail to generate).
locale: C.UTF-8
growpart:
  mode: "off"
resize_rootfs: false
EOF
# What slows a TCG boot and that a lab host never needs.
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer \
  e2scrub_reap.service systemd-timesyncd.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
sed -i 's/^#\?GRUB_TIMEOUT=.*//' "$ROOT/etc/default/grub" 2>/dev/null || true

KVER=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
[[ -n $KVER && -s $ROOT/boot/initrd.img-$KVER ]] || die "no kernel/initramfs in the image's /boot"
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"
find "$ROOT/srv/kvmops-repo" -maxdepth 1 -name '*.deb' -printf '%f\n' | sed 's/_.*//' | sort >"$WORK/repo.txt"
[[ -s $WORK/repo.txt ]] || die "the local repository is empty"
for p in "${REPO_PACKAGES[@]}"; do grep -qx "$p" "$WORK/repo.txt" || die "$p is not in the local repository"; done

log "mkfs.ext4 -d ($DISK_SIZE) and qemu-img convert"
truncate -s "$DISK_SIZE" "$WORK/disk.raw"
mkfs.ext4 -q -F -L lab-root -d "$ROOT" "$WORK/disk.raw"
rm -rf "$ROOT"
qemu-img convert -O qcow2 "$WORK/disk.raw" "$WORK/disk.qcow2"
rm -f "$WORK/disk.raw"
echo "$CMDLINE" >"$WORK/cmdline"

rm -f "$STAMP"
for f in disk.qcow2 vmlinuz initrd.img cmdline repo.txt; do
  chmod 644 "$WORK/$f"
  mv -f "$WORK/$f" "$OUT/$f"
done
{
  echo "key=$KEY"
  echo "suite=$SUITE"
  echo "kernel=$KVER"
  echo "repo-packages=$(wc -l <"$OUT/repo.txt")"
  echo "built=$(date -u +%FT%TZ) in $(($(date +%s) - START)) s"
} >"$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
log "built $OUT in $(($(date +%s) - START)) s (kernel $KVER, $(wc -l <"$OUT/repo.txt") packages in the local repository, $(du -h "$OUT/disk.qcow2" | cut -f1) qcow2)"
