#!/usr/bin/env bash
# Prepare this machine for kvmops.virt development, tests and the main job.
# Idempotent: installs only what is missing, starts only what is not running.
#   - system packages (apt on Debian/Ubuntu)
#   - libvirt daemons (systemd where it runs, else started directly)
#   - .venv (toolchain) and .venv-units (ansible-test units, without pytest-ansible)
#   - .venv-docs (documentation build) and .venv-importer (galaxy-importer, ansible-builder)
#   - ansible-test's pip bootstrap stand-in (its download host is not reachable offline)
#   - the test guest image (kernel + busybox initramfs from Debian packages)
#   (the lab image, tests/lab/build-image.sh, is built by the `lab` stage itself)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
find_python

# -- system packages ----------------------------------------------------------
APT_PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils dnsmasq-base ovmf cpio busybox-static
  genisoimage lvm2 e2fsprogs iproute2 iptables nftables xz-utils git
  shellcheck  # ansible-test sanity skips its shellcheck test without it
  mmdebstrap openssh-client  # tests/lab: the lab image, and SSH to the lab host
  swtpm swtpm-tools  # kvm_guest's tpm option: the emulated TPM (swtpm)
  grub-pc-bin xorriso mtools  # the bootable test ISO of kvm_guest's boot_order tests (grub-mkrescue)
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- swtpm's local CA ------------------------------------------------------------
# libvirt runs swtpm_setup as tss, which signs each new TPM's EK certificate with
# the CA in /var/lib/swtpm-localca; one swtpm_setup run as root leaves that CA
# root's, and every later TPM guest fails to start ("Need read/write rights on
# /var/lib/swtpm-localca/.lock.swtpm-localca for user tss").
if [ -d /var/lib/swtpm-localca ] && getent passwd tss >/dev/null &&
    [ -n "$(find /var/lib/swtpm-localca ! -user tss -print -quit)" ]; then
  log "giving /var/lib/swtpm-localca back to tss (swtpm_setup once ran as root)"
  chown -R tss:root /var/lib/swtpm-localca
fi

# -- /dev/kvm for the QEMU user -------------------------------------------------
# Without udev the device stays root:root 0600; libvirt's QEMU capability cache
# then flips between "KVM" and "no KVM" and re-probes QEMU on every definition
# (seconds each). The distribution's udev rule makes it root:kvm 0660.
if [ -e /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
  log "making /dev/kvm root:kvm 0660 (as udev would)"
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# -- libvirt daemons ----------------------------------------------------------
if [ -d /run/systemd/system ]; then
  systemctl enable --now virtlogd.socket libvirtd.service >/dev/null 2>&1 || systemctl start libvirtd
else
  # No systemd here: start the daemons directly, once.
  pgrep -x virtlogd >/dev/null || { log "starting virtlogd"; virtlogd -d; }
  pgrep -x libvirtd >/dev/null || { log "starting libvirtd"; libvirtd -d; }
fi
for _ in $(seq 1 30); do
  virsh -c qemu:///system version >/dev/null 2>&1 && break
  sleep 1
done
virsh -c qemu:///system version >/dev/null

# -- Python environments ------------------------------------------------------
make_venv .venv requirements-dev.txt
make_venv .venv-units requirements-units.txt
make_venv .venv-docs requirements-docs.txt          # scripts/build-docs.sh
make_venv .venv-importer requirements-importer.txt  # scripts/dist.sh: galaxy-importer, ansible-builder

# ansible-test bootstraps pip in its sanity venvs with a script it downloads
# from a host that is not reachable here; this stand-in uses ensurepip instead.
PIP_VERSION="$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" .venv/lib/python3.*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)"
if [ -n "$PIP_VERSION" ]; then
  mkdir -p "$HOME/.ansible/test/cache"
  cat > "$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py" <<'PY'
"""Offline stand-in for get-pip.py: bootstrap with ensurepip, then install the requested packages."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
PY
fi

# -- test guest image ------------------------------------------------------------
if [ -x tests/integration/image/build.sh ]; then
  bash tests/integration/image/build.sh
fi
log "setup complete"
