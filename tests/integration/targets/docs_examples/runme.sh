#!/usr/bin/env bash
set -euo pipefail
# scripts/test.sh writes the suite's settings next to the inventory.
config="$(dirname "$INVENTORY_PATH")/integration_config.yml"
image_dir="$(sed -n 's/^kvmops_test_image_dir: *"\(.*\)"$/\1/p' "$config")"
# The collection under test: this target sits in tests/integration/targets/.
root="$(cd ../../../.. && pwd)"
[ -f "$root/galaxy.yml" ] || root="$(sed -n 's/^kvmops_repo: *"\(.*\)"$/\1/p' "$config")"
export ANSIBLE_NOCOLOR=1
exec python run_examples.py --root "$root" --image-dir "$image_dir"
