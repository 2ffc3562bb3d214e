#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kvm_migrate
short_description: Move a KVM guest to another hypervisor, live
version_added: 0.1.0
description:
  - Migrates the guest O(name) from the hypervisor at O(uri) to the one at O(destination_uri).
    A running guest moves live, without stopping (O(live=true)); a shut-off guest's definition moves with O(live=false).
  - Before anything moves, and in check mode too, the module checks that the destination answers and is another host,
    that the guest's CPU runs there (C(compareHypervisorCPU), or the source host's CPU for C(host-passthrough)),
    that the networks the guest's interfaces use exist and are active there, and that each disk is on storage the
    destination sees (O(copy_storage=none)) or that a pool with the disk's directory exists there to receive the copy
    (O(copy_storage=all)). A failed check names the option and changes nothing on either host.
  - Idempotent. A guest already running on the destination (live) or defined there (offline) and gone from the
    source is reported unchanged.
  - Past O(timeout) the migration is cancelled and the guest keeps running on the source; a failed migration also
    leaves it running where it was.
author:
  - kvmops.virt maintainers (@kvmops)
options:
  name:
    description: Name of the guest.
    type: str
    required: true
  destination_uri:
    description:
      - libvirt URI of the destination hypervisor, for example V(qemu+ssh://root@kvm2.example.com/system).
      - The module opens it for its checks. With O(peer_to_peer=true) the source host's libvirt daemon opens it
        too, so it must work from the source host (its SSH keys and C(known_hosts)).
    type: str
    required: true
  live:
    description:
      - V(true) moves a running guest without stopping it.
      - V(false) moves a shut-off guest's definition (needs O(persistent=true)), and with O(copy_storage=all) its
        disks first.
    type: bool
    default: true
  copy_storage:
    description:
      - V(none), the disks are on storage both hosts see (the same path through a shared pool).
      - V(all), copy the guest's writable disks to the destination during the migration. libvirt creates each copy
        in the destination's storage pool whose path is the disk's directory, so such a pool must exist there.
      - With O(live=false), libvirt moves the definition only, so the module copies the disks itself before the move.
        It creates each volume in that pool on the destination (same name, format, size and backing file; an overlay's
        base image must already be there, in a pool, at the same path) and streams the file through the two libvirt
        connections. It never overwrites a volume that exists on the destination, and deletes its copies again when
        the move fails. The source keeps its files, as after a live copy.
      - Cdroms, readonly and shareable disks are never copied; like a direct kernel boot's files they must exist on the
        destination at the same path.
    type: str
    choices: [none, all]
    default: none
  persistent:
    description: Define the guest on the destination (otherwise it runs there as a transient guest).
    type: bool
    default: true
  undefine_source:
    description: Remove the guest's definition from the source once it runs on the destination.
    type: bool
    default: true
  timeout:
    description: Seconds the migration may take; past them it is cancelled and the guest keeps running on the source.
    type: int
    default: 600
  bandwidth:
    description: Bandwidth cap of the migration in MiB/s.
    type: int
  peer_to_peer:
    description:
      - V(true), the source host's libvirt daemon connects to O(destination_uri) and drives the migration.
      - V(false), the module drives it over its two connections (client managed); use it when the source host cannot
        reach the destination's libvirt daemon, only its QEMU (see O(migration_uri)).
    type: bool
    default: true
  migration_uri:
    description:
      - Where the source QEMU sends the guest's memory and disks, for example V(tcp://192.0.2.10), with an optional
        port. By default libvirt uses the destination's host name, which the source host must resolve.
    type: str
  listen_address:
    description: The address the destination QEMU listens on for the incoming migration.
    type: str
extends_documentation_fragment:
  - kvmops.virt.connection
notes:
  - In check mode the module opens both hypervisors, runs every check and reports the migration in RV(actions)
    and RV(diff), without moving anything.
  - Guests using C(bridge) or C(direct) interfaces need the same bridge or device on the destination; the module
    cannot check those through libvirt.
seealso:
  - name: libvirt migration
    description: Transports, flags and the network ports a migration uses.
    link: https://libvirt.org/migration.html
  - name: The drain_host playbook
    description: Moves every running guest off a hypervisor with this module.
    link: https://github.com/kvmops/kvmops.virt/blob/main/docs/day2.md
"""

EXAMPLES = r"""
- name: Move web1 live to kvm2, copying its disks
  kvmops.virt.kvm_migrate:
    name: web1
    destination_uri: qemu+ssh://root@kvm2.example.com/system
    copy_storage: all
    bandwidth: 200
    timeout: 900

- name: Move db1 between hosts that share its storage, and keep its definition on the source
  kvmops.virt.kvm_migrate:
    name: db1
    uri: qemu+ssh://root@kvm1.example.com/system
    destination_uri: qemu+ssh://root@kvm2.example.com/system
    undefine_source: false

- name: Client-managed migration when kvm1 cannot reach kvm2's libvirt daemon
  kvmops.virt.kvm_migrate:
    name: web1
    uri: qemu+ssh://root@kvm1.example.com/system
    destination_uri: qemu+ssh://root@kvm2.example.com/system
    peer_to_peer: false
    migration_uri: tcp://192.0.2.12
    copy_storage: all
"""

RETURN = r"""
migration:
  description: The migration (in check mode, the one that would run).
  returned: success
  type: dict
  contains:
    source:
      description: URI of the source hypervisor.
      type: str
      sample: qemu:///system
    destination:
      description: URI of the destination hypervisor.
      type: str
      sample: qemu+ssh://root@kvm2.example.com/system
    seconds:
      description: How long the migration took; V(null) when nothing moved (check mode, or already moved).
      type: float
      sample: 12.4
    live:
      description: Whether the guest moved running.
      type: bool
      sample: true
    copied_storage:
      description: Bytes of disk copied with O(copy_storage=all), V(null) otherwise.
      type: int
      sample: 134217728
actions:
  description: The steps the task took (in check mode, would take).
  returned: always
  type: list
  elements: str
  sample:
    - "migrate running guest 'web1' from uri 'qemu:///system' to uri 'qemu+ssh://root@kvm2/system'
      (live, peer to peer, persistent, undefine source, timeout 600 s)"
diff:
  description: The guest's hypervisor, before and after (key C(uri)).
  returned: always
  type: dict
  sample: {before: {uri: "qemu:///system"}, after: {uri: "qemu+ssh://root@kvm2.example.com/system"}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._migrate import COPY_STORAGE, MigrationManager
from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, run_module


def main():
    refuse_nul_arguments()
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            destination_uri=dict(type="str", required=True),
            live=dict(type="bool", default=True),
            copy_storage=dict(type="str", default="none", choices=list(COPY_STORAGE)),
            persistent=dict(type="bool", default=True),
            undefine_source=dict(type="bool", default=True),
            timeout=dict(type="int", default=600),
            bandwidth=dict(type="int"),
            peer_to_peer=dict(type="bool", default=True),
            migration_uri=dict(type="str"),
            listen_address=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, MigrationManager)


if __name__ == "__main__":
    main()
