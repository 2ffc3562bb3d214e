#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kvm_snapshot
short_description: Create, delete and revert to internal snapshots of libvirt guests
version_added: 0.2.0
description:
  - Manages a guest's internal snapshots, kept by QEMU inside the guest's qcow2 disk files and listed by libvirt.
  - A snapshot of a guest that is shut down holds its disks. A snapshot of a running (or paused) guest is a full
    system checkpoint, its disks and its memory together (O(memory=true)); reverting to it resumes the guest where
    it was, without a reboot.
  - Every disk must be a qcow2 file (or a qcow2 volume). A guest with a raw or block disk, for example, gets an
    error that names each such disk, and nothing is created. Read-only media (cdroms, floppies), read-only disks
    and disks marked C(snapshot='no') in the guest's XML are left out of the snapshot, as libvirt does, and never
    silently (a warning names them when the snapshot is created, and RV(snapshot.left_out) lists them).
  - An existing snapshot is not taken again. A different O(description) is updated in place; O(memory) and
    O(quiesce) only matter when a snapshot is created.
  - O(state=reverted) is always a change (also in check mode, which touches nothing). The guest's disks, and with
    a memory snapshot its memory and state, go back to the snapshot; whatever the guest wrote since is lost.
author:
  - kvmops.virt maintainers (@kvmops)
options:
  guest:
    description: Name of the guest; it must exist (with O(state=absent), a missing guest is reported with a warning).
    type: str
    required: true
  name:
    description:
      - Name of the snapshot, unique per guest. Names with C(/), control characters or XML metacharacters are refused.
    type: str
    required: true
  state:
    description:
      - V(present) - the snapshot exists (created from the guest as it is now).
      - V(absent) - the snapshot is deleted (its data is removed from the qcow2 files; the guest is not touched).
      - V(reverted) - the guest is returned to the snapshot. Always reported as a change.
    type: str
    choices: [present, absent, reverted]
    default: present
  description:
    description:
      - Kept with the snapshot. A different description of an existing snapshot is updated in place; an empty
        string removes it. Only with O(state=present).
    type: str
  memory:
    description:
      - With a running or paused guest, include its memory (a full system checkpoint that a revert resumes).
      - QEMU's internal snapshot of a running guest always includes its memory, and libvirt refuses a disk-only one,
        so V(false) with a running guest is an error that says so; shut the guest down first for a disks-only
        snapshot. With a guest that is shut down there is no memory to include; V(true) then gives a warning and
        a snapshot of the disks.
    type: bool
    default: false
  quiesce:
    description:
      - Freeze the guest's filesystems through the QEMU guest agent before the snapshot and thaw them afterwards,
        so that the disks hold what the applications flushed.
      - Needs a running guest with C(qemu-guest-agent) running and its channel (C(org.qemu.guest_agent.0));
        when no agent answers, the task fails before anything is created. With a guest that is shut down it is an error.
      - The snapshot's memory holds the frozen filesystems. A revert to a memory snapshot thaws them through the agent
        when the agent's channel is connected after the revert, and warns when the agent then refuses.
    type: bool
    default: false
  keep:
    description:
      - With O(state=present), after creating a snapshot, delete this guest's oldest snapshots until this many are
        left (the new one always stays). Nothing is rotated when the snapshot exists already. At least V(1).
    type: int
extends_documentation_fragment:
  - kvmops.virt.connection
notes:
  - Internal snapshots are kept inside the qcow2 files; C(kvmops.virt.kvm_guest) with O(kvmops.virt.kvm_guest#module:state=absent)
    removes a guest that has snapshots (their metadata goes with the guest; with
    O(kvmops.virt.kvm_guest#module:remove_storage=true) the files go too).
  - Snapshots are ordered by their creation time (whole seconds), parents before children within the same second.
seealso:
  - module: kvmops.virt.kvm_guest
  - name: libvirt snapshot XML
    description: The format of the snapshot definitions this module writes.
    link: https://libvirt.org/formatsnapshot.html
"""

EXAMPLES = r"""
- name: Snapshot a guest before an upgrade (a running guest includes its memory)
  kvmops.virt.kvm_snapshot:
    guest: web1
    name: before-upgrade
    description: before the PostgreSQL 16 upgrade
    memory: true

- name: A nightly snapshot; keep the last seven
  kvmops.virt.kvm_snapshot:
    guest: web1
    name: "nightly-{{ '%Y%m%d' | strftime }}"
    memory: true
    keep: 7

- name: Roll back
  kvmops.virt.kvm_snapshot:
    guest: web1
    name: before-upgrade
    state: reverted

- name: The upgrade worked; delete the snapshot
  kvmops.virt.kvm_snapshot:
    guest: web1
    name: before-upgrade
    state: absent
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot after the task (in check mode, as it would be; C(created) is then V(null) for a new snapshot).
    - Empty when O(state=absent).
  returned: always
  type: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      sample: before-upgrade
    guest:
      description: Guest name.
      type: str
      sample: web1
    created:
      description: When the snapshot was taken, ISO 8601 in UTC.
      type: str
      sample: "2024-05-02T14:03:11+00:00"
    guest_state:
      description: The guest's state when the snapshot was taken (V(running), V(paused), V(shutdown)).
      type: str
      sample: running
    current:
      description: Whether this is the guest's current snapshot (the last one taken or reverted to).
      type: bool
      sample: true
    parent:
      description: The snapshot that was current when this one was taken, V(null) for the first.
      type: str
      sample: nightly-20240501
    memory:
      description: Whether the snapshot holds the guest's memory (a revert resumes the guest).
      type: bool
      sample: true
    left_out:
      description:
        - The targets of the guest's disks that the snapshot does not hold (cdroms, floppies, read-only disks, disks
          marked C(snapshot='no')); a revert leaves them as they are. Creating such a snapshot also gives a warning
          that names them.
      type: list
      elements: str
      sample: [sda]
snapshots:
  description: The names of the guest's snapshots after the task, oldest first (in check mode, as they would be).
  returned: always
  type: list
  elements: str
  sample: [nightly-20240501, before-upgrade]
actions:
  description: The steps the task took (in check mode, would take), in order.
  returned: always
  type: list
  elements: str
  sample: ["create snapshot 'before-upgrade' of guest 'web1' (disks and memory)"]
diff:
  description:
    - Before and after values keyed by option path (C(state), C(description), C(memory), C(snapshots), and for a
      revert C(reverted_to), C(current) and C(guest_state)).
  returned: always
  type: dict
  sample: {before: {state: absent, snapshots: []}, after: {state: present, memory: true, snapshots: [before-upgrade]}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, run_module
from ansible_collections.kvmops.virt.plugins.module_utils._snapshot import STATES, SnapshotManager


def main():
    refuse_nul_arguments()
    module = AnsibleModule(
        argument_spec=argument_spec(
            guest=dict(type="str", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=list(STATES)),
            description=dict(type="str"),
            memory=dict(type="bool", default=False),
            quiesce=dict(type="bool", default=False),
            keep=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    run_module(module, SnapshotManager)


if __name__ == "__main__":
    main()
