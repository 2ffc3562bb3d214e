#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storage_pool
short_description: Manage libvirt storage pools
version_added: 0.1.0
description:
  - Defines, builds, starts, stops, updates and removes libvirt storage pools of type
    V(dir), V(fs), V(netfs), V(logical), V(disk), V(iscsi) and V(rbd).
  - The pool XML is built from structured options (O(path), O(source)); only the options
    you set are compared with the existing pool, so values libvirt fills in never count as a change.
  - When a pool is defined or started and its target does not exist yet, the module builds it
    first. For V(dir), V(fs) and V(netfs) pools that is the target directory (C(mkdir -p)); for a
    V(logical) pool it is the LVM volume group on O(source.device) (C(pvcreate), C(vgcreate)),
    which libvirt refuses to do on devices that already hold data.
    The module never formats a filesystem (V(fs)) or writes a partition table (V(disk)).
  - When the target directory of an active V(dir), V(fs) or V(netfs) pool was removed behind libvirt's back,
    the module fails with a message naming the missing path (C(missing_path) in the failed result) and does
    not create it again; O(state=absent) still removes the pool. Starting it over with an empty directory takes
    O(state=inactive) followed by O(state=active), which builds the directory and warns that it is empty.
  - "libvirt cannot change a running pool. A change of O(type), O(path) or O(source) is written to the
    persistent definition (same UUID). On an inactive pool it takes effect when the pool starts; on an
    active pool it takes effect when the pool is restarted: the module then returns RV(restart_required=true)
    and a warning, and leaves the running pool alone. Restart it with O(state=inactive) followed by O(state=active)."
  - If a step fails after a new pool was defined, the module undefines it again (and removes the
    storage it built for it), and the error message lists what was done and undone.
author:
  - kvmops.virt maintainers (@kvmops)
options:
  name:
    description:
      - Name of the pool. XML metacharacters and quotes (C(<), C(>), C(&), C('), C(")), C(/) and
        control characters are refused.
    type: str
    required: true
  state:
    description:
      - V(present) - the pool is defined; whether it runs is left as it is (a new pool is not started).
      - V(active) - the pool is defined and started.
      - V(inactive) - the pool is defined and stopped.
      - V(absent) - the pool is stopped and undefined. A pool that still holds volumes is refused
        unless O(force=true); an inactive pool, whose volumes libvirt cannot list, also needs O(force=true).
        The storage itself (directory, volume group, ...) is left untouched unless O(delete_storage=true).
    type: str
    choices: [present, active, inactive, absent]
    default: active
  type:
    description:
      - Pool type. When not set, V(dir) for a new pool; an existing pool keeps its type.
      - V(dir) - a directory of image files; needs O(path).
      - V(fs) - a block device with a filesystem, mounted on O(path); needs O(source.device), optional O(source.format).
      - V(netfs) - a network filesystem mounted on O(path); needs O(source.host) and O(source.dir), optional O(source.format).
      - V(logical) - an LVM volume group named O(source.name) (default the pool name) on O(source.device);
        O(path) defaults to C(/dev/<volume group>).
      - V(disk) - a whole disk O(source.device) whose partitions are the volumes; O(source.format) is the partition
        table type; O(path) defaults to C(/dev).
      - V(iscsi) - an iSCSI target IQN O(source.device) on O(source.host); O(path) defaults to C(/dev/disk/by-path).
      - V(rbd) - a Ceph RBD pool O(source.name) with monitor O(source.host); no O(path).
    type: str
    choices: [dir, fs, netfs, logical, disk, iscsi, rbd]
  path:
    description:
      - Target path of the pool, an absolute path (see O(type) for what it means per type).
      - Required for new V(dir), V(fs) and V(netfs) pools.
    type: path
  source:
    description:
      - Where the storage comes from, with the keys the pool type needs (see O(type)).
        A key a type does not use is refused.
    type: dict
    suboptions:
      device:
        description:
          - Device path(s) (V(fs), V(disk), V(logical)) or the target IQN (V(iscsi)).
            V(logical) pools take a list of physical volumes, the others exactly one.
        type: list
        elements: str
      host:
        description: Server host name or address (V(netfs), V(iscsi), V(rbd)).
        type: str
      port:
        description: Server port (V(netfs), V(iscsi), V(rbd)).
        type: int
      dir:
        description: Exported directory on O(source.host) (V(netfs)).
        type: str
      name:
        description: Volume group name (V(logical), default the pool name) or Ceph pool name (V(rbd)).
        type: str
      format:
        description:
          - Filesystem type for V(fs) (V(auto), V(ext4), V(xfs), ...), V(nfs), V(glusterfs), V(cifs) or V(auto) for V(netfs),
            V(lvm2) for V(logical), partition table type for V(disk) (V(gpt), V(dos), ...).
        type: str
      initiator:
        description: Initiator IQN to log in with (V(iscsi)).
        type: str
      auth:
        description: Authentication with a libvirt secret (CHAP for V(iscsi), cephx for V(rbd)).
        type: dict
        suboptions:
          type:
            description: V(chap) for V(iscsi), V(ceph) for V(rbd).
            type: str
            choices: [chap, ceph]
            required: true
          username:
            description: User name.
            type: str
            required: true
          secret_uuid:
            description: UUID of the libvirt secret holding the password or key.
            type: str
          secret_usage:
            description: Usage name of the libvirt secret holding the password or key.
            type: str
  autostart:
    description: Start the pool when libvirtd starts. Left as it is when not set (a new pool does not autostart).
    type: bool
  force:
    description:
      - With O(state=absent), remove a pool that still holds volumes, or an inactive pool whose volumes
        cannot be listed. Without O(delete_storage) the volumes stay on the storage.
    type: bool
    default: false
  delete_storage:
    description:
      - With O(state=absent), also remove the underlying storage through libvirt's pool delete
        (with O(force=true), the pool's volumes first). That is the directory of a V(dir) pool, the mount
        directory of V(fs) and V(netfs) pools (the device and the export are not touched), and the volume
        group of a V(logical) pool (C(vgremove), C(pvremove)).
      - Refused for V(disk), V(iscsi) and V(rbd) pools, whose storage libvirt cannot remove.
      - Without it, the storage is left untouched.
    type: bool
    default: false
extends_documentation_fragment:
  - kvmops.virt.connection
notes:
  - The module looks at the local filesystem to decide whether a V(dir), V(fs) or V(netfs) target
    directory must be built; on a remote O(uri) it builds it (C(mkdir -p), harmless when it exists) whenever
    the pool is defined.
seealso:
  - module: kvmops.virt.storage_volume
  - name: libvirt storage pool XML
    description: The format of the pool definitions this module writes.
    link: https://libvirt.org/formatstorage.html
"""

EXAMPLES = r"""
- name: A directory pool for guest disks, started and autostarted
  kvmops.virt.storage_pool:
    name: images
    path: /var/lib/libvirt/images/lab
    autostart: true

- name: A pool on an ext4 filesystem of a block device, mounted on /srv/vm
  kvmops.virt.storage_pool:
    name: fastdisk
    type: fs
    path: /srv/vm
    source:
      device: /dev/nvme1n1p1
      format: ext4

- name: An LVM volume group (created on /dev/sdb when it does not exist)
  kvmops.virt.storage_pool:
    name: vg_guests
    type: logical
    source:
      name: vg_guests
      device: [/dev/sdb]

- name: An NFS export
  kvmops.virt.storage_pool:
    name: nfs-images
    type: netfs
    path: /var/lib/libvirt/nfs-images
    source:
      host: nfs.example.com
      dir: /exports/images
      format: nfs

- name: An iSCSI target
  kvmops.virt.storage_pool:
    name: san
    type: iscsi
    source:
      host: san.example.com
      device: iqn.2024-01.com.example:storage.lun1

- name: A Ceph RBD pool with a cephx secret defined in libvirt
  kvmops.virt.storage_pool:
    name: ceph
    type: rbd
    source:
      host: mon1.example.com
      port: 6789
      name: rbd
      auth:
        type: ceph
        username: libvirt
        secret_uuid: 2ec115d7-3a88-3ceb-bc12-0ac909a6fd87

- name: Define a pool without starting it
  kvmops.virt.storage_pool:
    name: spare
    path: /srv/spare
    state: inactive

- name: Remove a pool, keep its directory and files
  kvmops.virt.storage_pool:
    name: images
    state: absent

- name: Remove a pool with everything in it, and its directory
  kvmops.virt.storage_pool:
    name: scratch
    state: absent
    force: true
    delete_storage: true
"""

RETURN = r"""
pool:
  description:
    - The pool after the task (in check mode, as it would be). Empty when O(state=absent).
    - C(capacity), C(allocation), C(available) and C(volumes) are V(null) while the pool is inactive
      (and in check mode for a pool that does not run yet).
  returned: always
  type: dict
  contains:
    name:
      description: Pool name.
      type: str
      sample: images
    uuid:
      description: Pool UUID (V(null) in check mode for a new pool).
      type: str
      sample: 1c5f3a26-5bd6-4c87-9a2e-8bd8ebf1e6a9
    type:
      description: Pool type.
      type: str
      sample: dir
    path:
      description: Target path of the running definition.
      type: str
      sample: /var/lib/libvirt/images/lab
    active:
      description: Whether the pool is started.
      type: bool
    autostart:
      description: Whether the pool starts with libvirtd.
      type: bool
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
    capacity:
      description: Size of the storage in bytes.
      type: int
      sample: 107374182400
    allocation:
      description: Bytes allocated to volumes.
      type: int
    available:
      description: Free bytes.
      type: int
    volumes:
      description: Names of the volumes in the pool.
      type: list
      elements: str
      sample: [base.qcow2, web1.qcow2]
restart_required:
  description:
    - V(true) when the pool is active and its persistent definition differs from the running one
      (a change of O(type), O(path) or O(source) waiting for a restart of the pool).
  returned: always
  type: bool
  sample: false
actions:
  description: The steps the task took (in check mode, would take), in order.
  returned: always
  type: list
  elements: str
  sample: ["define storage pool 'images' (dir)", "build storage pool 'images' (create directory /var/lib/libvirt/images/lab)", "start storage pool 'images'"]
diff:
  description: Before and after values keyed by option path (C(state), C(type), C(path), C(source.device), C(autostart), C(volumes)...).
  returned: always
  type: dict
  sample: {before: {state: absent, path: null}, after: {state: active, path: /var/lib/libvirt/images/lab}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, run_module
from ansible_collections.kvmops.virt.plugins.module_utils._pool import POOL_TYPES, PoolManager


def main():
    refuse_nul_arguments()
    auth = dict(
        type="dict",
        options=dict(
            type=dict(type="str", required=True, choices=["chap", "ceph"]),
            username=dict(type="str", required=True),
            secret_uuid=dict(type="str", no_log=False),  # a reference to a libvirt secret, not the secret
            secret_usage=dict(type="str", no_log=False),
        ),
        mutually_exclusive=[("secret_uuid", "secret_usage")],
        required_one_of=[("secret_uuid", "secret_usage")],
    )
    source = dict(
        type="dict",
        options=dict(
            device=dict(type="list", elements="str"),
            host=dict(type="str"),
            port=dict(type="int"),
            dir=dict(type="str"),
            name=dict(type="str"),
            format=dict(type="str"),
            initiator=dict(type="str"),
            auth=auth,
        ),
    )
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            state=dict(type="str", default="active", choices=["present", "active", "inactive", "absent"]),
            type=dict(type="str", choices=list(POOL_TYPES)),
            path=dict(type="path"),
            source=source,
            autostart=dict(type="bool"),
            force=dict(type="bool", default=False),
            delete_storage=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, PoolManager)


if __name__ == "__main__":
    main()
