#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storage_volume
short_description: Manage volumes in libvirt storage pools
version_added: 0.1.0
description:
  - Creates, grows and deletes volumes (disk images) in an active libvirt storage pool.
  - A new volume is an empty image of O(capacity), a thin copy-on-write overlay on a base image
    (O(backing_volume)), or a copy of a file from the managed host (O(source)).
  - An overlay is created in constant time by libvirt (C(qemu-img create -b)). Nothing is copied;
    the overlay stores only the blocks the guest changes.
  - An import streams the file through the libvirt storage API (C(virStorageVolUpload)) in 1 MiB chunks,
    so it works over remote URIs (the file is read on the host the task runs on) with bounded memory.
    The bytes are copied as they are; a qcow2 file stays qcow2, anything else is imported as raw.
  - An existing volume is grown to O(capacity); shrinking is refused. Its O(format) and backing store
    cannot be changed, and asking for a different one fails with a clear message. O(source) is only
    used to create the volume and is ignored when it exists.
  - If a step fails after the volume was created (for example the upload), the new volume is deleted again.
    When that is impossible too (the connection to libvirt was lost), the error message names the volume
    and its path, and the failed result lists it in C(left_behind) (C(pool), C(volume), C(path)).
author:
  - kvmops.virt maintainers (@kvmops)
options:
  name:
    description:
      - Volume name, a plain file name. Empty names, V(.), V(..), names with C(/), NUL or control
        characters, and XML metacharacters and quotes (C(<), C(>), C(&), C('), C(")) are refused
        before anything touches the host.
    type: str
    required: true
  pool:
    description: Name of the storage pool; it must exist and be active.
    type: str
    required: true
  state:
    description:
      - V(present) - the volume exists (created, or grown to O(capacity)).
      - V(absent) - the volume and its data are deleted. A missing pool is reported with a warning.
    type: str
    choices: [present, absent]
    default: present
  capacity:
    description:
      - Size of the volume, as bytes (an integer) or a string with a unit (V(512MiB), V(10G), V(1.5TiB);
        V(K)/V(KiB), V(M)/V(MiB), ... are powers of 1024, V(KB), V(MB), ... powers of 1000).
      - Required for a new volume without O(source) or O(backing_volume). An overlay defaults to the size of
        its backing volume and cannot be smaller; an import defaults to the size of the image.
      - An existing volume is grown to it. A smaller value is refused (shrinking loses data), apart from
        the rounding libvirt applies when it creates a volume (1 KiB for files, 4 MiB for LVM).
    type: raw
  format:
    description:
      - Image format. When not set, V(qcow2) in pools of files (V(dir), V(fs), V(netfs)) and V(raw) in pools
        of block devices (V(logical), V(disk), ...), which hold raw volumes only. An import takes the format
        of its file; an overlay is always V(qcow2).
    type: str
    choices: [qcow2, raw]
  backing_volume:
    description:
      - Create the volume as a qcow2 overlay on this base image, a volume name in O(pool) or an absolute
        path (a volume of any pool, or on a local O(uri) a plain image file; its format is read from
        its qcow2 header, else it is raw).
      - Only for pools of files. The base image is never written to; keep it as long as overlays use it.
    type: str
  source:
    description:
      - Absolute path of an image file on the managed host to import into the new volume.
      - A qcow2 file with a backing file of its own is refused; convert it to a standalone image first.
    type: path
  force:
    description:
      - What to do with a volume that a running guest uses (its live definition names the volume or the same file).
      - V(false) - growing it (O(capacity)) or deleting it (O(state=absent)) is refused with a clear error and
        nothing changes.
      - V(true) - it is grown live through that guest (C(virDomainBlockResize)), so the guest sees the new size
        at once; a volume that a running guest uses only as a backing file, or that more than one running guest
        uses, is still refused. With O(state=absent) it is deleted although the guests use it (a warning names them).
      - Volumes that no running guest uses are grown and deleted without it.
    type: bool
    default: false
    version_added: 0.2.0
extends_documentation_fragment:
  - kvmops.virt.connection
notes:
  - libvirt caches the contents of a pool; the module refreshes the pool before it looks a volume up,
    so that files added by other tools are seen.
  - Before it grows or deletes a volume, the module checks whether a running guest uses it (see O(force)).
    The definitions of guests that are shut off are not checked; their disks are grown and deleted like any volume.
seealso:
  - module: kvmops.virt.storage_pool
  - name: libvirt storage volume XML
    description: The format of the volume definitions this module writes.
    link: https://libvirt.org/formatstorage.html#storage-volume-xml
"""

EXAMPLES = r"""
- name: Import a cloud image once as the base image
  kvmops.virt.storage_volume:
    pool: images
    name: debian-12-base.qcow2
    source: /var/tmp/debian-12-genericcloud-amd64.qcow2

- name: A thin 20 GiB overlay on the base image for a guest
  kvmops.virt.storage_volume:
    pool: images
    name: web1.qcow2
    backing_volume: debian-12-base.qcow2
    capacity: 20GiB
  register: disk

- name: Show where the overlay lives
  ansible.builtin.debug:
    msg: "{{ disk.volume.path }} on top of {{ disk.volume.backing }}"

- name: An empty 10 GiB data disk
  kvmops.virt.storage_volume:
    pool: images
    name: web1-data.qcow2
    capacity: 10G

- name: Grow the data disk of a running guest, live (the guest sees 20 GiB at once)
  kvmops.virt.storage_volume:
    pool: images
    name: web1-data.qcow2
    capacity: 20G
    force: true

- name: A raw volume
  kvmops.virt.storage_volume:
    pool: images
    name: scratch.img
    capacity: 2GiB
    format: raw

- name: Grow the data disk to 20 GiB
  kvmops.virt.storage_volume:
    pool: images
    name: web1-data.qcow2
    capacity: 20G

- name: Delete a volume
  kvmops.virt.storage_volume:
    pool: images
    name: scratch.img
    state: absent
"""

RETURN = r"""
volume:
  description:
    - The volume after the task (in check mode, as it would be; C(allocation) is then V(null) for a new volume).
    - Empty when O(state=absent).
  returned: always
  type: dict
  contains:
    name:
      description: Volume name.
      type: str
      sample: web1.qcow2
    pool:
      description: Pool name.
      type: str
      sample: images
    path:
      description: Path of the volume on the libvirt host.
      type: str
      sample: /var/lib/libvirt/images/lab/web1.qcow2
    format:
      description: Image format.
      type: str
      sample: qcow2
    capacity:
      description: Virtual size in bytes.
      type: int
      sample: 21474836480
    allocation:
      description: Bytes allocated on the storage.
      type: int
      sample: 200704
    backing:
      description: Path of the backing image of an overlay, V(null) for other volumes.
      type: str
      sample: /var/lib/libvirt/images/lab/debian-12-base.qcow2
actions:
  description: The steps the task took (in check mode, would take), in order.
  returned: always
  type: list
  elements: str
  sample: ["create volume 'web1.qcow2' in storage pool 'images' (overlay on /var/lib/libvirt/images/lab/debian-12-base.qcow2)"]
diff:
  description: Before and after values keyed by option path (C(state), C(capacity), C(format), C(backing_volume), C(source)).
  returned: always
  type: dict
  sample: {before: {capacity: 10737418240}, after: {capacity: 21474836480}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, run_module
from ansible_collections.kvmops.virt.plugins.module_utils._volume import VOLUME_FORMATS, VolumeManager


def main():
    refuse_nul_arguments()
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            pool=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            capacity=dict(type="raw"),
            format=dict(type="str", choices=list(VOLUME_FORMATS)),
            backing_volume=dict(type="str"),
            source=dict(type="path"),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("backing_volume", "source")],
        supports_check_mode=True,
    )
    run_module(module, VolumeManager)


if __name__ == "__main__":
    main()
