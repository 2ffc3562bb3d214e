#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_capabilities
short_description: Gather facts about a KVM virtualization host
version_added: 0.1.0
description:
  - Reports whether a host can run virtual machines and how, as C(ansible_facts.kvm_host).
  - Hardware facts come from C(/proc/cpuinfo), C(/dev/kvm), the loaded kernel modules,
    C(/sys/module/kvm_*/parameters/nested), memory and the free space of the image directory.
  - libvirt facts come from the capabilities and domain capabilities of the hypervisor at O(uri),
    namely domain types, UEFI and secure boot firmware, CPU modes and models, disk buses, TPM and virtio.
  - Without a reachable local libvirt daemon, and on a fresh host without libvirt-python or lxml
    installed, the module still returns the hardware facts, with the libvirt keys set to V(null),
    and a warning. A remote or malformed O(uri) that cannot be reached fails with a message naming the URI.
  - With a remote O(uri) (for example C(qemu+ssh://user@host/system)) every fact describes the host
    behind the URI, as libvirt reports it (node info for the CPU count and memory, the host CPU of the
    capabilities for vendor, model and C(vmx)/C(svm), the domain types for the KVM device, the free space
    of the active storage pool at O(image_dir)); what libvirt does not tell (loaded kvm modules, nested
    virtualization) is V(null). The machine running the module is never described as the remote host.
  - The classification is honest. V(hardware) needs both a CPU virtualization extension
    (C(vmx) or C(svm)) and a usable C(/dev/kvm). A C(/dev/kvm) without those extensions
    (for example one provided by a software KVM backend in a nested cloud instance)
    is reported as it is, and the host is classified as V(emulation).
author:
  - kvmops.virt maintainers (@kvmops)
options:
  allow_emulation:
    description:
      - Treat a host without hardware virtualization as meeting the requirements,
        as long as QEMU software emulation (TCG) is available.
      - Emulation is slow and not supported by RHEL for production guests; use it for CI and labs.
    type: bool
    default: false
  min_memory_mb:
    description: Memory the host needs, in MiB, for the C(memory) requirement to pass.
    type: int
    default: 2048
  min_disk_mb:
    description: Free space the image directory needs, in MiB, for the C(free disk) requirement to pass.
    type: int
    default: 10240
  image_dir:
    description: Directory whose free space is checked (its nearest existing parent when it does not exist yet).
    type: path
    default: /var/lib/libvirt/images
extends_documentation_fragment:
  - kvmops.virt.connection
attributes:
  facts:
    support: full
    description: Returns C(ansible_facts.kvm_host).
  platform:
    platforms: posix
    support: full
    description: Runs on the virtualization host, or on any host with libvirt-python and lxml for a remote O(uri).
notes:
  - The module never changes the host and always reports C(changed=false).
seealso:
  - name: libvirt domain capabilities
    description: The XML the firmware, CPU and device facts are read from.
    link: https://libvirt.org/formatdomaincaps.html
"""

EXAMPLES = r"""
- name: Gather virtualization facts
  kvmops.virt.host_capabilities:

- name: Fail unless the host can run KVM guests
  ansible.builtin.assert:
    that: ansible_facts.kvm_host.requirements_met
    fail_msg: "{{ ansible_facts.kvm_host.requirements | rejectattr('passed') | map(attribute='detail') | list }}"

- name: Accept software emulation on a CI runner
  kvmops.virt.host_capabilities:
    allow_emulation: true
    min_disk_mb: 2048

- name: Inspect a remote hypervisor
  kvmops.virt.host_capabilities:
    uri: qemu+ssh://root@hv1.example.com/system
"""

RETURN = r"""
ansible_facts:
  description: Facts about the host.
  returned: always
  type: dict
  contains:
    kvm_host:
      description: The virtualization facts.
      returned: always
      type: dict
      contains:
        virtualization:
          description:
            - V(hardware) (hardware-assisted full virtualization through KVM),
              V(emulation) (QEMU TCG software emulation only) or V(none).
          type: str
          sample: hardware
        virtualization_reason:
          description: Why the host was classified as it was.
          type: str
        cpu:
          description: C(vendor), C(model), C(count), C(virt_extension) (V(vmx), V(svm) or V(null)),
            C(nested) (bool, or V(null) when unknown), C(arch), C(flags_64bit).
          type: dict
          sample: {vendor: Intel, model: "Intel(R) Xeon(R)", count: 8, virt_extension: vmx, nested: false, arch: x86_64, flags_64bit: true}
        kvm:
          description: C(device) (bool, C(/dev/kvm) exists and opens), C(device_detail), C(modules) (loaded kvm modules; V(null) for a remote O(uri)).
          type: dict
          sample: {device: true, device_detail: /dev/kvm exists and opens read-write, modules: [kvm, kvm_intel]}
        memory_mb:
          description: Total memory in MiB.
          type: int
        disk:
          description: C(path) checked and its C(free_mb).
          type: dict
        libvirt:
          description: C(version), C(hypervisor), C(hypervisor_version), C(uri); all V(null) without a reachable daemon.
          type: dict
          sample: {version: 9.0.0, hypervisor: QEMU, hypervisor_version: 7.2.0, uri: "qemu:///system"}
        domain_types:
          description: libvirt domain types usable for the host architecture.
          type: list
          elements: str
          sample: [qemu, kvm]
        firmware:
          description: C(uefi) and C(secure_boot) (bool), C(loaders) (firmware paths).
          type: dict
        paravirt:
          description: C(virtio) (bool, virtio devices available to guests).
          type: dict
        emulator:
          description: The emulator binary libvirt uses.
          type: str
        machine_types:
          description: Machine types the emulator offers for the host architecture, aliases (V(pc), V(q35)) included.
          type: list
          elements: str
          sample: [pc, pc-i440fx-7.2, pc-q35-7.2, q35]
        machine_types_default:
          description: The machine type the domain capabilities were read for.
          type: str
        cpu_modes:
          description: Supported guest CPU modes.
          type: list
          elements: str
        cpu_models:
          description: Usable named CPU models.
          type: list
          elements: str
        disk_buses:
          description: Disk buses guests can use.
          type: list
          elements: str
        tpm:
          description: Whether an emulated or passthrough TPM is available.
          type: bool
        max_vcpus:
          description: Maximum vCPUs for one guest.
          type: int
        requirements:
          description: Each requirement with C(name), C(passed) and C(detail).
          type: list
          elements: dict
          sample: [{name: 64-bit CPU, passed: true, detail: CPU flag lm present}]
        requirements_met:
          description: Whether every requirement passed.
          type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient, is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, require_libraries
from ansible_collections.kvmops.virt.plugins.module_utils._errors import VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._hostcaps import HostCapabilities, missing_libraries


def main():
    refuse_nul_arguments()
    module = AnsibleModule(
        argument_spec=argument_spec(
            allow_emulation=dict(type="bool", default=False),
            min_memory_mb=dict(type="int", default=2048),
            min_disk_mb=dict(type="int", default=10240),
            image_dir=dict(type="path", default="/var/lib/libvirt/images"),
        ),
        supports_check_mode=True,
    )
    client = LibvirtClient(module.params["uri"])
    # A fresh host has neither libvirt-python nor lxml: hardware facts only, with a
    # warning. A remote hypervisor can only be described through libvirt.
    if missing_libraries() and not is_local_uri(client.uri):
        require_libraries(module)
    try:
        gatherer = HostCapabilities(
            client,
            image_dir=module.params["image_dir"],
            min_memory_mb=module.params["min_memory_mb"],
            min_disk_mb=module.params["min_disk_mb"],
            allow_emulation=module.params["allow_emulation"],
        )
        facts = gatherer.gather()
    except VirtError as e:
        module.fail_json(msg=e.msg, **e.result())
    finally:
        client.close()
    for warning in gatherer.warnings:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"kvm_host": facts})


if __name__ == "__main__":
    main()
