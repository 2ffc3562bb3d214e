#!/usr/bin/env bash
# Build a bootable El Torito ISO (BIOS, GRUB) from the test image's kernel and initramfs.
#
# Usage: build-boot-iso.sh IMAGE_DIR OUTPUT_FILE BOOTMARK
#   IMAGE_DIR    the test image (tests/integration/image/build.sh): vmlinuz, initrd.img
#   OUTPUT_FILE  the ISO to write
#   BOOTMARK     a word the boot loader passes as kvmops.bootmark=<word>; the test
#                guest prints `KVMOPS-TEST-GUEST BOOTMARK=<word>` on its serial console
#
# grub-mkrescue (Debian packages grub-pc-bin, xorriso, mtools) makes a hybrid image:
# it boots as a cdrom and, written to a disk, as a hard disk (its MBR), so the same
# tool gives the "installer ISO" and the "installed disk" of the boot_order tests.
# The staging directory is a private mktemp -d directory, removed on exit.
set -euo pipefail
IMAGE_DIR=$1
OUT=$2
MARK=$3
case $MARK in '' | *[!a-z0-9]*) echo "BOOTMARK must be lowercase letters and digits" >&2; exit 2 ;; esac
for tool in grub-mkrescue xorriso mformat; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install grub-pc-bin xorriso mtools)" >&2; exit 1; }
done
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/kvmops-boot-iso.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/root/boot/grub"
cp "$IMAGE_DIR/vmlinuz" "$IMAGE_DIR/initrd.img" "$STAGE/root/boot/"
cat >"$STAGE/root/boot/grub/grub.cfg" <<EOF_CFG
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set default=0
menuentry "kvmops test guest ($MARK)" {
  linux /boot/vmlinuz console=ttyS0 quiet kvmops.bootmark=$MARK
  initrd /boot/initrd.img
}
EOF_CFG
grub-mkrescue --directory=/usr/lib/grub/i386-pc -o "$STAGE/out.iso" "$STAGE/root" -- -volid "KVMOPS_${MARK^^}" >"$STAGE/log" 2>&1 ||
  { cat "$STAGE/log" >&2; exit 1; }
mv -f "$STAGE/out.iso" "$OUT"
chmod 644 "$OUT"
