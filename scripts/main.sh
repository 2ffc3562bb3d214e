#!/usr/bin/env bash
# Set everything up and run the main job on this machine:
# prepare this host for KVM/libvirt and deploy a demo guest on the local libvirt.
#   scripts/main.sh            run it (re-running changes nothing)
#   scripts/main.sh cleanup    remove what the main job created
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
bash scripts/setup.sh
export ANSIBLE_COLLECTIONS_PATH="$REPO/.cache/collections"
link_collection "$REPO"
export KVMOPS_TEST_IMAGE_DIR="${KVMOPS_TEST_IMAGE_DIR:-$REPO/.cache/test-image}"
export ANSIBLE_PYTHON_INTERPRETER="$REPO/.venv/bin/python"

if [ "${1:-}" = cleanup ]; then
  exec "$REPO/.venv/bin/ansible-playbook" -i localhost, -c local playbooks/demo_cleanup.yml
fi
if [ -f playbooks/demo.yml ]; then
  exec "$REPO/.venv/bin/ansible-playbook" -i localhost, -c local playbooks/demo.yml
fi
exec "$REPO/.venv/bin/ansible-playbook" -i localhost, -c local kvmops.virt.check_host
