# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of one guest: ``kvm_guest``'s argument spec, without ``uri``.

``kvm_guest`` builds its AnsibleModule from :func:`guest_options` (plus the
shared ``uri``); ``kvm_guests`` validates each item of its ``guests`` list
against the same spec, so both modules accept exactly the same options.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._domain_boot import BOOT_DEVICES, TPM_MODELS, TPM_VERSIONS
from ansible_collections.kvmops.virt.plugins.module_utils._guest_resolve import DISK_FORMATS
from ansible_collections.kvmops.virt.plugins.module_utils._guest_tuning import tuning_options

DISK_OPTIONS = dict(
    pool=dict(type="str"),
    volume=dict(type="str"),
    path=dict(type="str"),
    size=dict(type="raw"),
    backing_volume=dict(type="str"),
    format=dict(type="str", choices=list(DISK_FORMATS)),
    device=dict(type="str", choices=["disk", "cdrom"], default="disk"),
    bus=dict(type="str", choices=["virtio", "sata", "scsi", "ide"]),
    target=dict(type="str"),
)

INTERFACE_OPTIONS = dict(
    network=dict(type="str"),
    bridge=dict(type="str"),
    direct=dict(type="str"),
    model=dict(type="str"),
    mac=dict(type="str"),
)


def guest_options():
    """A fresh copy of the options of one guest (AnsibleModule mutates the spec it gets)."""
    options = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="running", choices=["present", "running", "shutdown", "paused", "absent"]),
        memory=dict(type="raw"),
        max_memory=dict(type="raw"),
        vcpus=dict(type="int"),
        max_vcpus=dict(type="int"),
        virt_type=dict(type="str", choices=["kvm", "qemu"]),
        machine=dict(type="str"),
        cpu_mode=dict(type="str", choices=["host-passthrough", "host-model", "custom", "maximum"]),
        cpu_model=dict(type="str"),
        firmware=dict(type="str", choices=["bios", "uefi"]),
        secure_boot=dict(type="bool"),
        boot=dict(type="dict", options=dict(kernel=dict(type="str"), initrd=dict(type="str"), cmdline=dict(type="str"))),
        disks=dict(type="list", elements="dict", options=dict((k, dict(v)) for k, v in DISK_OPTIONS.items()),
                   mutually_exclusive=[("path", "pool"), ("path", "volume")], required_together=[("pool", "volume")]),
        interfaces=dict(type="list", elements="dict", options=dict((k, dict(v)) for k, v in INTERFACE_OPTIONS.items()),
                        mutually_exclusive=[("network", "bridge", "direct")], required_one_of=[("network", "bridge", "direct")]),
        cloud_init=dict(type="dict", options=dict(
            user_data=dict(type="raw", no_log=True),
            meta_data=dict(type="dict"),
            network_config=dict(type="raw"),
            pool=dict(type="str"),
        )),
        console_log=dict(type="path"),
        tpm=dict(type="dict", options=dict(
            model=dict(type="str", choices=list(TPM_MODELS)),
            version=dict(type="str", choices=list(TPM_VERSIONS)),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        )),
        boot_order=dict(type="list", elements="str", choices=list(BOOT_DEVICES)),
        graphics=dict(type="dict", options=dict(
            type=dict(type="str", required=True, choices=["none", "vnc", "spice"]),
            listen=dict(type="str"),
            password=dict(type="str", no_log=True),
        )),
        autostart=dict(type="bool"),
        tags=dict(type="list", elements="str"),
        xml=dict(type="str"),
        wait_for_ip=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        force=dict(type="bool", default=False),
        remove_storage=dict(type="bool", default=False),
    )
    options.update(tuning_options())
    return options
