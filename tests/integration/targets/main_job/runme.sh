#!/usr/bin/env bash
set -euo pipefail
# The playbooks run by their collection names, from the collection under test.
# scripts/test.sh writes the suite's settings next to the inventory.
config="$(dirname "$INVENTORY_PATH")/integration_config.yml"
KVMOPS_TEST_IMAGE_DIR="$(sed -n 's/^kvmops_test_image_dir: *"\(.*\)"$/\1/p' "$config")"
export KVMOPS_TEST_IMAGE_DIR
[ -f "$KVMOPS_TEST_IMAGE_DIR/vmlinuz" ] || { echo "no test image in '$KVMOPS_TEST_IMAGE_DIR' (from $config)" >&2; exit 1; }
export ANSIBLE_NOCOLOR=1
run() { ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$(command -v python)" "$@"; }
recap_changed() { sed -n 's/.*localhost *: .*changed=\([0-9]*\).*/\1/p' "$1" | tail -n1; }

cleanup() { run kvmops.virt.demo_cleanup >/dev/null 2>&1 || true; }
trap cleanup EXIT

first="$(mktemp)"; second="$(mktemp)"
run kvmops.virt.demo | tee "$first"
grep -q '"guest: kvmops-demo-1, state: running, address: 192.168.213.[0-9]*"' "$first"
grep -q '"console: KVMOPS-TEST-GUEST BOOTED"' "$first"
grep -q '"seed: KVMOPS-SEED HOSTNAME=kvmops-demo-1"' "$first"
[ "$(recap_changed "$first")" -gt 0 ]

run kvmops.virt.demo | tee "$second"
changed="$(recap_changed "$second")"
[ "$changed" -eq 0 ] || { echo "second run of the main job changed $changed things" >&2; exit 1; }

run kvmops.virt.demo_cleanup
if virsh -c qemu:///system dominfo kvmops-demo-1 >/dev/null 2>&1; then echo "the guest is still defined" >&2; exit 1; fi
if virsh -c qemu:///system net-info kvmops-demo >/dev/null 2>&1; then echo "the network is still defined" >&2; exit 1; fi
if virsh -c qemu:///system pool-info kvmops-demo >/dev/null 2>&1; then echo "the pool is still defined" >&2; exit 1; fi
[ ! -e /var/lib/libvirt/images/kvmops-demo ]
trap - EXIT
rm -f "$first" "$second"
echo "main job: first run deployed the guest, second run changed nothing, cleanup removed everything"
