#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kvm_guests
short_description: Converge a list of KVM/libvirt guests in one task
version_added: 0.1.0
description:
  - Converges every guest of O(guests) in one module run, over one libvirt connection. Each guest gets exactly
    the semantics of M(kvmops.virt.kvm_guest) from the same code (the same options, validation, check mode,
    structured diff, C(reboot_required), cloud-init seeds, C(remove_storage)).
  - Every item is validated first, against M(kvmops.virt.kvm_guest)'s options and checks; bad input in any item
    fails the task before anything changes, naming the item (C(guests[3] (web3))) and the option.
  - A guest that fails while it is applied does not stop the others. Every guest converges that can, then the
    task fails, naming each failed guest with its message in RV(msg), and returns the results of all guests.
  - Guests are defined and started first; then the task waits for the addresses of all the guests that wait
    (O(wait_for_ip)) together, in one polling loop bounded by one O(wait_timeout).
author:
  - kvmops.virt maintainers (@kvmops)
options:
  guests:
    description:
      - The guests. Each item takes the options of M(kvmops.virt.kvm_guest) except O(uri), for example C(name)
        (required, unique in the list), C(state), C(memory), C(vcpus), C(disks), C(interfaces), C(cloud_init),
        C(graphics), C(tags), C(remove_storage). O(defaults) is merged under every item.
      - C(graphics.password) and C(cloud_init.user_data) of the items are secrets, as in M(kvmops.virt.kvm_guest), so
        they never appear in logs, results or diffs.
      - An item's C(wait_for_ip=true) makes the task wait for that guest, as O(wait_for_ip) does for all of them;
        C(wait_timeout) of an item is its timeout for a graceful shutdown.
    type: list
    elements: dict
    required: true
  defaults:
    description:
      - Options of M(kvmops.virt.kvm_guest) applied to every item of O(guests) that does not set them itself
        (a shallow merge, item over defaults).
    type: dict
    default: {}
  wait_for_ip:
    description:
      - Wait until every guest whose C(state) is V(running) has an IP address, looking at the DHCP leases of
        libvirt networks, the QEMU guest agent and the host's ARP table, as M(kvmops.virt.kvm_guest) does.
      - All guests are started before the wait, and are waited for together.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for the addresses of all the guests together (one timeout for the whole list).
    type: int
    default: 300
extends_documentation_fragment:
  - kvmops.virt.connection
attributes:
  check_mode:
    description: Check mode runs the same planning per guest as the real run, and returns the same diff and actions.
    support: full
  diff_mode:
    description: The diff is keyed by guest name; only guests that change appear, with kvm_guest's option paths.
    support: full
  platform:
    description: Runs on the managed host; libvirt may be local or remote (O(uri)).
    platforms: posix
    support: full
notes:
  - The number of module runs does not grow with the number of guests, so a list of 50 guests costs about
    one task instead of 50; see C(docs/benchmarks.md).
seealso:
  - module: kvmops.virt.kvm_guest
  - name: The kvm_guests role
    description: Deploys guests from base images with this module.
    link: https://github.com/kvmops/kvmops.virt/tree/main/roles/kvm_guests
"""

EXAMPLES = r"""
- name: Guests defined (not started) in one task, sharing their defaults
  kvmops.virt.kvm_guests:
    defaults:
      state: present
      memory: 1GiB
      vcpus: 1
      interfaces:
        - network: lab
    guests:
      - name: node01
      - name: node02
        memory: 2GiB
      - name: node03
        state: absent

- name: Three web servers started from overlays, waiting for all their addresses together
  kvmops.virt.kvm_guests:
    defaults:
      memory: 2GiB
      vcpus: 2
      interfaces:
        - network: default
    guests:
      - name: web1
        disks: [{pool: default, volume: web1-root.qcow2, size: 20GiB, backing_volume: debian-12.qcow2}]
        cloud_init:
          user_data:
            users: [{name: admin, ssh_authorized_keys: ["ssh-ed25519 AAAA... admin"]}]
      - name: web2
        disks: [{pool: default, volume: web2-root.qcow2, size: 20GiB, backing_volume: debian-12.qcow2}]
      - name: old-web
        state: absent
        remove_storage: true
    wait_for_ip: true
    wait_timeout: 600
  register: web

- name: Show the addresses
  ansible.builtin.debug:
    msg: "{{ web.guests | selectattr('guest.interfaces', 'defined') | map(attribute='guest.interfaces') | flatten | map(attribute='ip') | list }}"
"""

RETURN = r"""
guests:
  description:
    - One entry per item of O(guests), in order, with the return values of M(kvmops.virt.kvm_guest) for that
      guest (C(guest), C(reboot_required), C(actions)) and C(name), C(changed), C(failed).
    - A failed guest has C(failed=true) and C(msg); a guest that did not get an address in time keeps the
      rest of its result.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
      sample: web1
    changed:
      description: Whether this guest changed (or would change in check mode).
      type: bool
    failed:
      description: Whether this guest failed.
      type: bool
    msg:
      description: Why this guest failed.
      type: str
      returned: when the guest failed
    console_tail:
      description:
        - As RV(kvmops.virt.kvm_guest#module:console_tail), for a guest that did not get an address within its
          C(wait_timeout) (empty without its C(console_log)).
      type: list
      elements: str
      returned: when the guest failed waiting for its address
    guest:
      description: The guest after the task, as RV(kvmops.virt.kvm_guest#module:guest) describes it.
      type: dict
      returned: when the guest did not fail before its result
    reboot_required:
      description: As RV(kvmops.virt.kvm_guest#module:reboot_required).
      type: bool
      returned: when the guest did not fail before its result
    actions:
      description: What the task did to this guest (or would do in check mode), in order.
      type: list
      elements: str
      sample: ["define guest 'web1'", "start guest 'web1'"]
failed_guests:
  description: Names of the guests that failed.
  returned: always
  type: list
  elements: str
  sample: [web3]
reboot_required:
  description: Whether any guest needs a power cycle for its changes.
  returned: always
  type: bool
msg:
  description:
    - When some guests failed, C(<n> of <m> guests failed) and, for each, C(guests[<i>] (<name>)) and its message.
  returned: failure
  type: str
  sample: "1 of 3 guests failed: guests[2] (web3): defining guest 'web3' failed: ..."
"""

from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments
from ansible_collections.kvmops.virt.plugins.module_utils._guest_fleet import FleetModule, fleet_options, run_fleet


def main():
    refuse_nul_arguments()
    module = FleetModule(argument_spec=argument_spec(**fleet_options()), supports_check_mode=True)
    run_fleet(module)


if __name__ == "__main__":
    main()
