#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: kvm_guest
short_description: Define, update, power and remove KVM/libvirt guests
version_added: 0.1.0
description:
  - Manages a libvirt guest (domain) from structured options (memory, vCPUs, firmware, disks,
    interfaces, graphics, serial console log, direct kernel boot and a cloud-init seed), with an
    O(xml) option for anything the options do not model.
  - Only what you specify is compared with the existing guest, after normalizing it (sizes, MAC
    addresses, machine type aliases). What libvirt added (the UUID, generated MACs, PCI addresses,
    controllers) is kept and never counts as a change, so a second run reports no change, and the
    diff of a check-mode run equals the diff of the real run.
  - An existing guest is updated in place with a new persistent definition, never undefined and
    redefined. On a running guest, what can change live is applied live as well (see O(memory),
    O(vcpus), O(disks), O(interfaces)). Everything else takes effect at the next boot and is
    reported with RV(reboot_required) and RV(guest.pending_changes).
  - Disks that do not exist yet are created from O(disks[].size), optionally as thin overlays of a
    base image (O(disks[].backing_volume)), and recorded in the guest's C(<metadata>) so that
    O(remove_storage) deletes exactly those volumes and nothing else.
author:
  - kvmops.virt maintainers (@kvmops)
options:
  name:
    description:
      - Name of the guest.
      - XML metacharacters (C(< > & ' ")), C(/) and control characters are refused.
    type: str
    required: true
  state:
    description:
      - V(present) defines the guest (or updates its definition) and leaves its power state alone;
        a new guest stays shut off.
      - V(running) defines and starts the guest; a paused guest is resumed.
      - V(shutdown) sends an ACPI power-button request and waits up to O(wait_timeout) seconds for the guest
        to be off. If it is still on, the task fails, unless O(force=true), which then powers it off.
      - V(paused) pauses the guest (starting it paused when it is off).
      - V(absent) shuts the guest down like V(shutdown) and undefines it with its NVRAM, TPM state,
        managed save image and snapshot and checkpoint metadata. Its disks are kept unless O(remove_storage=true).
        A guest that does not exist is a no-op.
    type: str
    choices: [present, running, shutdown, paused, absent]
    default: running
  memory:
    description:
      - Memory of the guest, an integer in MiB or a size with a unit (V(512MiB), V(2GiB), V(1G)).
      - Required to define a new guest (unless O(xml) has C(<memory>)).
      - On a running guest, a value up to the guest's maximum memory is applied live (balloon) and persistently.
        A larger value raises the maximum, which needs a reboot.
    type: raw
  max_memory:
    description:
      - Maximum memory of the guest (the boot-time memory that O(memory) can grow to without a reboot).
      - Defaults to O(memory) for a new guest. On an existing guest it is kept, and raised when O(memory) exceeds it.
      - Changing it takes effect at the next boot.
    type: raw
  vcpus:
    description:
      - Number of virtual CPUs. Defaults to 1 for a new guest.
      - On a running guest, a value up to O(max_vcpus) is applied live (CPU hot-plug) and persistently.
    type: int
  max_vcpus:
    description:
      - Maximum number of virtual CPUs; defaults to O(vcpus) for a new guest, and is raised when O(vcpus) exceeds it.
      - Changing it takes effect at the next boot.
    type: int
  virt_type:
    description:
      - V(kvm) for hardware-assisted virtualization, V(qemu) for software emulation (TCG; slow, for CI and labs).
      - A new guest gets V(kvm) when not set; an existing guest keeps its type.
    type: str
    choices: [kvm, qemu]
  machine:
    description:
      - Machine type, such as V(q35), V(pc) or V(pc-q35-7.2). Aliases are compared by the machine they stand for.
      - A new guest gets V(q35) when not set. The chipset (q35 or i440fx) of an existing guest cannot be changed.
    type: str
  cpu_mode:
    description:
      - Guest CPU mode. V(host-passthrough) is not available with O(virt_type=qemu).
    type: str
    choices: [host-passthrough, host-model, custom, maximum]
  cpu_model:
    description:
      - CPU model name with O(cpu_mode=custom), such as V(Skylake-Server) or V(qemu64).
    type: str
  firmware:
    description:
      - V(bios) or V(uefi). With V(uefi), libvirt picks the firmware (OVMF) and creates the NVRAM.
      - A new guest gets V(bios) when not set. A firmware change of an existing guest takes effect at the next boot.
    type: str
    choices: [bios, uefi]
  secure_boot:
    description:
      - UEFI secure boot with enrolled keys. Needs O(firmware=uefi) and a q35 machine type; turns SMM on.
    type: bool
  boot:
    description:
      - Direct kernel boot. Paths are paths on the libvirt host, readable by QEMU.
    type: dict
    suboptions:
      kernel:
        description:
          - Kernel image. An empty string removes direct kernel boot (kernel, initrd and command line).
        type: str
      initrd:
        description: Initial ramdisk.
        type: str
      cmdline:
        description: Kernel command line, such as V(console=ttyS0).
        type: str
  disks:
    description:
      - The disks and cdroms of the guest, in order. When set, it is the complete list; disks of the
        guest that it does not name are detached (never deleted). The cloud-init seed cdrom and disks
        defined in O(xml) are managed separately and kept.
      - Each disk is identified by its O(disks[].target); a disk without a target matches the existing
        disk with the same source, or gets the first free target of its bus.
      - On a running guest, virtio and SCSI disks are attached and detached live; other buses (SATA, IDE)
        take effect at the next boot.
    type: list
    elements: dict
    suboptions:
      pool:
        description: Storage pool of the volume (with O(disks[].volume)).
        type: str
      volume:
        description: Volume name in O(disks[].pool).
        type: str
      path:
        description:
          - Absolute path of an image file or block device on the libvirt host, instead of O(disks[].pool) and O(disks[].volume).
          - When it does not exist and O(disks[].size) is given, it is created as a volume of the storage pool whose directory holds it.
        type: str
      size:
        description:
          - Capacity of a disk to create when the volume does not exist yet, in bytes or with a unit (V(10GiB)).
          - An existing disk that is smaller is grown to it. On a running guest it is grown live through QEMU
            (C(virDomainBlockResize)), so the guest sees the new size at once, with no reboot. Otherwise the volume is
            resized offline (a raw file outside the storage pools is extended). The structured diff shows
            C(disks[N].size) before and after.
          - Disks are never shrunk. A smaller value than the disk's size fails with an error naming
            O(disks[].size) and nothing changes. Block devices (LVM volumes, C(/dev/...)) and, while the guest
            is shut off, qcow2 files outside the storage pools are refused too; grow them on the host.
        type: raw
      backing_volume:
        description:
          - Create the disk as a thin qcow2 overlay of this base image (a volume of the same pool, or an absolute path).
            The base image is never written to or deleted.
          - The overlay's size defaults to the base image's size.
        type: str
      format:
        description:
          - Image format. Defaults to the format of the existing volume or file, and to V(qcow2) for a new volume in a
            directory pool (V(raw) in other pools). A format that differs from the image's real format is refused.
        type: str
        choices: [raw, qcow2, qed, vmdk, vdi, vpc, vhdx, bochs, cloop, dmg, iso]
      device:
        description: V(disk) or V(cdrom). A cdrom without a source is an empty drive.
        type: str
        choices: [disk, cdrom]
        default: disk
      bus:
        description:
          - Disk bus. A new disk gets V(virtio); a new cdrom gets V(sata) on q35 and V(ide) on i440fx (V(pc)) machines.
            An existing disk keeps its bus unless this is set.
        type: str
        choices: [virtio, sata, scsi, ide]
      target:
        description: Target device name in the guest's definition, such as V(vda), V(sdb) or V(hdc). Must be unique.
        type: str
  interfaces:
    description:
      - The network interfaces of the guest, in order. When set, it is the complete list; interfaces the list
        does not name are detached.
      - An interface with a O(interfaces[].mac) is identified by it. An interface without one is matched by its
        position among the interfaces with the same source, so a guest defined without MACs keeps the MACs
        libvirt generated and reports no change on later runs.
      - On a running guest, interfaces are attached and detached live (PCI hot-plug); a new q35 guest gets spare
        PCIe root ports for that. A changed model takes effect at the next boot.
    type: list
    elements: dict
    suboptions:
      network:
        description: Name of a libvirt network.
        type: str
      bridge:
        description: Name of an existing host bridge.
        type: str
      direct:
        description: Host interface for a macvtap (C(direct)) connection in bridge mode.
        type: str
      model:
        description: NIC model, such as V(virtio), V(e1000e) or V(rtl8139). New interfaces get V(virtio).
        type: str
      mac:
        description: MAC address, such as V(52:54:00:12:34:56). Generated when not set.
        type: str
  cloud_init:
    description:
      - A cloud-init NoCloud seed, an ISO 9660 image labelled C(cidata) with C(user-data), C(meta-data) and
        C(network-config), built in Python on the managed node, uploaded as the volume C(<name>-cidata.iso)
        through the storage API (so remote URIs work) and attached as a cdrom.
      - The seed is rebuilt, and reported as changed, only when its content changes. Its one-way digests are
        kept in the guest's metadata; a seed change of a running guest takes effect at its next boot.
      - C(meta-data) gets C(local-hostname) (the guest name when it is a valid host name) and an C(instance-id)
        derived from the seed content unless O(cloud_init.meta_data) sets them.
    type: dict
    suboptions:
      user_data:
        description:
          - User data, a dict (written as C(#cloud-config) YAML) or a string used as it is.
          - It is secret; it never appears in logs, diffs or results.
        type: raw
      meta_data:
        description: Meta data (C(instance-id), C(local-hostname), ...).
        type: dict
      network_config:
        description: Network configuration (version 1 or 2), a dict, or a string used as it is.
        type: raw
      pool:
        description:
          - Storage pool (of files) that holds the seed volume. Defaults to the pool of the first disk that names one.
        type: str
  console_log:
    description:
      - Write the serial console (C(ttyS0)) to this file on the libvirt host. A new guest without it gets a
        pty console (C(virsh console)).
      - A change takes effect at the next boot.
    type: path
  tpm:
    description:
      - An emulated TPM (a C(swtpm) process per running guest; the host needs the C(swtpm) and C(swtpm-tools)
        packages), for example for Windows 11, measured boot or disk encryption bound to the TPM.
      - A new TPM is V(tpm-crb) with version V(2.0) unless O(tpm.model) or O(tpm.version) say otherwise (V(1.2)
        gets V(tpm-tis)). On an existing TPM only the given suboptions are compared.
      - Its state (keys, NVRAM) lives under C(/var/lib/libvirt/swtpm/<uuid>) on the host. It is kept when the guest is
        redefined or updated, and removed with the guest (O(state=absent)). O(tpm.state=absent) removes the device
        but libvirt keeps its state (a TPM added again finds it), with a warning naming the directory.
      - A change of a running guest is written to its persistent definition and reported with RV(reboot_required).
    type: dict
    suboptions:
      model:
        description: The TPM interface. V(tpm-crb) emulates TPM 2.0 only.
        type: str
        choices: [tpm-crb, tpm-tis]
      version:
        description: The TPM version (quote it in YAML, V('2.0')). V(1.2) needs O(tpm.model=tpm-tis).
        type: str
        choices: ['2.0', '1.2']
      state:
        description: V(absent) removes the TPM device (libvirt keeps its state; see above).
        type: str
        choices: [present, absent]
        default: present
  boot_order:
    description:
      - Boot devices in order (C(<os><boot dev=.../>)), for example V([cdrom, hd]) to install from an ISO attached
        as a cdrom disk, then V([hd]) (or V([hd, cdrom])) to boot the installed disk.
      - Cannot be combined with direct kernel boot (O(boot.kernel)), which makes a boot order meaningless, nor with
        per-device C(<boot order='N'/>) elements (from O(xml)), which libvirt refuses together with it.
      - A change of a running guest is written to its persistent definition and reported with RV(reboot_required).
    type: list
    elements: str
    choices: [hd, cdrom, network]
  graphics:
    description: Graphical console.
    type: dict
    suboptions:
      type:
        description: V(none) removes the graphics devices.
        type: str
        choices: [none, vnc, spice]
        required: true
      listen:
        description: Listen address, such as V(127.0.0.1).
        type: str
      password:
        description:
          - Password of the console. Never logged or shown in diffs. Changed live on a running guest.
          - An empty string removes the password.
        type: str
  autostart:
    description: Start the guest when the host starts.
    type: bool
  tags:
    description:
      - Free-form tags kept in the guest's C(<metadata>) (namespace C(https://github.com/kvmops/kvmops.virt/guest/1)),
        for example for inventories. Compared as a set; changed live on a running guest.
    type: list
    elements: str
  xml:
    description:
      - A C(<domain>) XML document for everything the options do not model. For a new guest it is the base of the
        definition; for an existing guest it is merged into the definition (elements are matched by tag and
        position, devices by identity; nothing is removed), and only what it sets is compared.
      - The structured options are applied on top of it and win where both set the same value.
      - Changes made through it take effect at the next boot.
    type: str
  wait_for_ip:
    description:
      - With O(state=running), wait until an interface of the guest has an IP address, looking at the DHCP
        leases of libvirt networks, the QEMU guest agent and the host's ARP table.
      - When no address comes within O(wait_timeout), the task fails with the last lines of the guest's serial
        console as RV(console_tail), read from O(console_log) (a guest without O(console_log), or on a remote
        O(uri), gives an empty list).
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for an address (O(wait_for_ip)) and for a graceful shutdown.
      - V(0) with O(force=true) powers the guest off at once.
    type: int
    default: 300
  force:
    description:
      - Power the guest off when a graceful shutdown (O(state=shutdown) or O(state=absent)) did not finish within O(wait_timeout).
    type: bool
    default: false
  remove_storage:
    description:
      - With O(state=absent), also delete the volumes this collection created for the guest (disks created
        from O(disks[].size) and the cloud-init seed) as recorded in its metadata.
      - Never deletes base images, paths you supplied, volumes it did not create, or volumes another guest uses
        or that back another volume.
    type: bool
    default: false
  cpu_pinning:
    description:
      - The host CPUs each vCPU may run on (C(<cputune><vcpupin>)). When set, it is the complete list; vCPUs it
        does not name may run on every host CPU. An empty list removes the pinning.
      - On a running guest the pinning changes live (C(virsh vcpupin)), with no reboot.
      - A vCPU index must be below O(max_vcpus) (or the guest's vCPUs), and a CPU set may name only CPUs the host has.
        A vCPU pinned to every host CPU counts as not pinned.
    type: list
    elements: dict
    suboptions:
      vcpu:
        description: The vCPU, numbered from V(0).
        type: int
        required: true
      cpuset:
        description: Host CPUs, such as V(0), V(0-3), V(0,2) or V(0-3,^1).
        type: str
        required: true
  emulator_cpuset:
    description:
      - The host CPUs of QEMU's emulator threads (C(<cputune><emulatorpin>)), such as V(0) or V(2-3).
        An empty string removes the pinning.
      - On a running guest it changes live (C(virsh emulatorpin)), with no reboot.
    type: str
  numa:
    description:
      - The guest's NUMA layout (C(<cpu><numa>)) and where its memory lives on the host (C(<numatune>)).
        When set, it replaces both; V({}) removes them.
      - Takes effect at the next boot of a running guest (RV(reboot_required)).
    type: dict
    suboptions:
      cells:
        description:
          - Guest NUMA cells, numbered by their position. Each vCPU belongs to at most one cell, and the cells'
            memory must add up to the guest's O(max_memory) (or O(memory)).
        type: list
        elements: dict
        suboptions:
          cpus:
            description: The cell's vCPUs, such as V(0-1).
            type: str
            required: true
          memory:
            description: The cell's memory, in MiB or with a unit (V(1GiB)).
            type: raw
            required: true
          nodeset:
            description: Host NUMA nodes for this cell's memory (C(<memnode>)).
            type: str
          mode:
            description: How strictly the cell's memory stays on O(numa.cells[].nodeset). Defaults to V(strict).
            type: str
            choices: [strict, preferred, interleave, restrictive]
      nodeset:
        description: Host NUMA nodes for the guest's memory (C(<numatune><memory>)), such as V(0).
        type: str
      mode:
        description: How strictly the memory stays on O(numa.nodeset). Defaults to V(strict).
        type: str
        choices: [strict, preferred, interleave, restrictive]
  hugepages:
    description:
      - Back the guest's memory with huge pages of this size (C(<memoryBacking><hugepages>)), such as V(2MiB)
        or V(1GiB); V(default) uses the host's default huge page size; an empty string removes huge pages.
      - The size must be one the host offers. The pages must be reserved on the host
        (C(/sys/kernel/mm/hugepages/)) before the guest starts, or the start fails.
      - Takes effect at the next boot of a running guest (RV(reboot_required)).
    type: str
  hostdevs:
    description:
      - Host devices passed through to the guest (C(<hostdev mode='subsystem'>)). When set, it is the complete
        list; PCI, USB and mediated host devices of the guest it does not name are removed.
      - Each entry names one device by O(hostdevs[].address) (PCI), O(hostdevs[].vendor) and
        O(hostdevs[].product) (USB), or O(hostdevs[].uuid) (mediated device). The device must exist on the host
        (libvirt's host device list); the check runs before anything changes, in check mode too.
      - Takes effect at the next boot of a running guest (RV(reboot_required)).
    type: list
    elements: dict
    suboptions:
      address:
        description: PCI address, such as V(0000:03:00.0) (C(lspci -D)); the domain V(0000:) may be left out.
        type: str
      vendor:
        description: USB vendor id, such as V(0x046d) (with O(hostdevs[].product)).
        type: str
      product:
        description: USB product id, such as V(0xc077) (with O(hostdevs[].vendor)).
        type: str
      uuid:
        description: UUID of a mediated device (vGPU and the like), such as V(8f4c9e6a-52d1-4a36-9c1e-2f6f7f0b1a11).
        type: str
      managed:
        description:
          - For PCI and USB devices, libvirt detaches the device from its host driver when the guest starts and
            gives it back when the guest stops (C(managed='yes')). With V(false), bind it to vfio-pci yourself.
        type: bool
        default: true
      model:
        description: The mediated device's model. Defaults to V(vfio-pci).
        type: str
        choices: [vfio-pci, vfio-ccw, vfio-ap]
  filesystems:
    description:
      - Host directories shared with the guest through virtiofs (C(<filesystem type='mount'>) with
        C(<driver type='virtiofs'/>)); the guest mounts them with C(mount -t virtiofs TAG /mnt). When set, it is
        the complete list; V([]) removes the shares.
      - virtiofs needs shared guest memory; a guest with a share gets C(<memoryBacking>) with
        C(<source type='memfd'/>) and C(<access mode='shared'/>) (kept when the shares are removed).
      - On a running guest that has shared memory, shares are attached and detached live; otherwise, and for a
        changed O(filesystems[].source), at the next boot (RV(reboot_required)). libvirt starts C(virtiofsd) for
        each share (on Debian QEMU's C(/usr/lib/qemu/virtiofsd), found through C(/usr/share/qemu/vhost-user/)).
    type: list
    elements: dict
    suboptions:
      source:
        description: The directory on the host. It must exist.
        type: path
        required: true
      target:
        description: The mount tag the guest uses, at most 36 bytes, such as V(data). Identifies the share.
        type: str
        required: true
extends_documentation_fragment:
  - kvmops.virt.connection
attributes:
  platform:
    description: Runs on the managed host; libvirt may be local or remote (O(uri)). Seeds are built on the managed host and uploaded.
    platforms: posix
    support: full
notes:
  - RV(reboot_required) means the guest must be powered off and started again (a reboot from inside the guest
    keeps the old definition). It stays true on later runs until that happens, with the option paths in
    RV(guest.pending_changes).
  - Files QEMU reads (kernel, images, the console log directory) must be accessible to it; with libvirt's
    dynamic ownership, images are handed to the QEMU user while the guest runs.
seealso:
  - module: kvmops.virt.storage_volume
  - module: kvmops.virt.virtio_network
  - name: libvirt domain XML format
    description: What the options and O(xml) are written to.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: A guest with a thin overlay disk on a base image and a cloud-init seed
  kvmops.virt.kvm_guest:
    name: web1
    memory: 2GiB
    vcpus: 2
    disks:
      - pool: default
        volume: web1-root.qcow2
        size: 20GiB
        backing_volume: debian-12-base.qcow2
    interfaces:
      - network: default
    cloud_init:
      user_data:
        users:
          - name: admin
            ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
      meta_data:
        local-hostname: web1
    wait_for_ip: true
    tags: [web, production]
  register: web1

- name: Show the address
  ansible.builtin.debug:
    msg: "{{ web1.guest.interfaces[0].ip }}"

- name: UEFI with secure boot, defined but not started
  kvmops.virt.kvm_guest:
    name: uefi1
    state: present
    memory: 4GiB
    firmware: uefi
    secure_boot: true
    disks:
      - pool: default
        volume: uefi1.qcow2
        size: 30GiB
      - path: /var/lib/libvirt/images/debian-12.iso
        device: cdrom

- name: Install from an ISO on UEFI with a TPM 2.0, booting the cdrom first
  kvmops.virt.kvm_guest:
    name: win1
    memory: 4GiB
    firmware: uefi
    tpm:
      model: tpm-crb
      version: "2.0"
    boot_order: [cdrom, hd]
    disks:
      - pool: default
        volume: win1.qcow2
        size: 60GiB
      - path: /var/lib/libvirt/images/installer.iso
        device: cdrom

- name: After the installation, boot the disk (takes effect at the next boot)
  kvmops.virt.kvm_guest:
    name: win1
    boot_order: [hd]

- name: Direct kernel boot under software emulation, serial console to a file
  kvmops.virt.kvm_guest:
    name: tiny
    virt_type: qemu
    memory: 256
    boot:
      kernel: /var/lib/libvirt/images/tiny/vmlinuz
      initrd: /var/lib/libvirt/images/tiny/initrd.img
      cmdline: console=ttyS0
    console_log: /var/log/libvirt/qemu/tiny-console.log
    interfaces:
      - network: isolated
        mac: "52:54:00:00:00:10"

- name: More memory without a reboot (within max_memory), one more NIC hot-plugged
  kvmops.virt.kvm_guest:
    name: web1
    memory: 3GiB
    max_memory: 4GiB
    interfaces:
      - network: default
      - network: backend
  register: r

- name: Tell whether the guest needs a power cycle
  ansible.builtin.debug:
    msg: "Pending until the next boot: {{ r.guest.pending_changes }}"
  when: r.reboot_required

- name: Something the options do not model, through xml
  kvmops.virt.kvm_guest:
    name: web1
    state: present
    xml: |
      <domain>
        <devices>
          <watchdog model='i6300esb' action='reset'/>
        </devices>
      </domain>

- name: Pin the vCPUs and the emulator threads (changed live on a running guest)
  kvmops.virt.kvm_guest:
    name: web1
    vcpus: 2
    cpu_pinning:
      - {vcpu: 0, cpuset: "2"}
      - {vcpu: 1, cpuset: "3"}
    emulator_cpuset: "0-1"

- name: Two NUMA cells bound to host node 0, on 2 MiB huge pages (at the next boot)
  kvmops.virt.kvm_guest:
    name: db1
    memory: 2GiB
    vcpus: 2
    numa:
      cells:
        - {cpus: "0", memory: 1GiB}
        - {cpus: "1", memory: 1GiB}
      nodeset: "0"
    hugepages: 2MiB

- name: Pass a PCI device through and share a host directory (virtiofs)
  kvmops.virt.kvm_guest:
    name: gpu1
    hostdevs:
      - address: "0000:03:00.0"
    filesystems:
      - {source: /srv/data, target: data}

- name: Graceful shutdown, powered off after 60 seconds
  kvmops.virt.kvm_guest:
    name: web1
    state: shutdown
    wait_timeout: 60
    force: true

- name: Grow the root disk of the running guest to 40 GiB, live (never shrunk)
  kvmops.virt.kvm_guest:
    name: web1
    disks:
      - pool: default
        volume: web1-root.qcow2
        size: 40GiB

- name: Remove the guest and the volumes created for it (not the base image)
  kvmops.virt.kvm_guest:
    name: web1
    state: absent
    force: true
    remove_storage: true
"""

RETURN = r"""
guest:
  description:
    - The guest after the task (in check mode, as it would be). Values describe the persistent definition;
      RV(guest.pending_changes) lists what the running guest does not have yet.
    - With O(state=absent), only C(name), C(state), C(reboot_required) and C(pending_changes).
  returned: always
  type: dict
  contains:
    name:
      description: Guest name.
      type: str
      sample: web1
    uuid:
      description: Guest UUID (V(null) in check mode for a new guest).
      type: str
      sample: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
    state:
      description: V(running), V(paused), V(shutdown), V(crashed), V(pmsuspended) or V(absent).
      type: str
      sample: running
    autostart:
      description: Whether the guest starts with the host.
      type: bool
    persistent:
      description: Whether the guest has a persistent definition.
      type: bool
    virt_type:
      description: V(kvm) or V(qemu).
      type: str
    machine:
      description: Machine type as libvirt stores it.
      type: str
      sample: pc-q35-7.2
    arch:
      description: Guest architecture.
      type: str
      sample: x86_64
    memory_mb:
      description: Memory in MiB.
      type: int
      sample: 2048
    max_memory_mb:
      description: Maximum memory in MiB.
      type: int
    vcpus:
      description: Number of vCPUs.
      type: int
    max_vcpus:
      description: Maximum number of vCPUs.
      type: int
    cpu_mode:
      description: CPU mode, or V(null).
      type: str
    firmware:
      description: V(bios) or V(uefi).
      type: str
    secure_boot:
      description: Whether UEFI secure boot is on.
      type: bool
    boot:
      description: Direct kernel boot C(kernel), C(initrd) and C(cmdline) (V(null) when unset).
      type: dict
    interfaces:
      description: Interfaces with C(mac), C(type), C(network), C(bridge), C(direct), C(model), C(ip) (first address or V(null)) and C(ips).
      type: list
      elements: dict
      sample: [{mac: "52:54:00:6b:3c:58", type: network, network: default, bridge: null, direct: null, model: virtio,
                ip: 192.168.122.15, ips: [192.168.122.15]}]
    disks:
      description: Disks with C(target), C(device), C(bus), C(path) and C(format).
      type: list
      elements: dict
      sample: [{target: vda, device: disk, bus: virtio, path: /var/lib/libvirt/images/web1-root.qcow2, format: qcow2}]
    graphics:
      description: C(type), C(listen) and, on a running guest, C(port) of the graphical console, or V(null). Never the password.
      type: dict
    console_log:
      description: File the serial console is written to, or V(null).
      type: str
    tags:
      description: The guest's tags.
      type: list
      elements: str
      sample: [web, production]
    tpm:
      description: C(model) and C(version) of the emulated TPM, or V(null).
      type: dict
      sample: {model: tpm-crb, version: "2.0"}
    boot_order:
      description: The boot devices in order (C(<os><boot dev=.../>)), or V(null) when there are none (direct kernel boot).
      type: list
      elements: str
      sample: [cdrom, hd]
    cloud_init:
      description: C(pool), C(volume) and C(path) of the cloud-init seed, or V(null). Never its content.
      type: dict
    created_volumes:
      description: Volumes this collection created for the guest (C(pool), C(name), C(path)); what O(remove_storage) deletes.
      type: list
      elements: dict
    cpu_pinning:
      description: The pinned vCPUs, C(vcpu) and C(cpuset).
      type: list
      elements: dict
      sample: [{vcpu: 0, cpuset: "2"}, {vcpu: 1, cpuset: "3"}]
    emulator_cpuset:
      description: The host CPUs of the emulator threads, or V(null).
      type: str
      sample: 0-1
    numa:
      description:
        - C(cells) (C(cpus), C(memory) and, when bound, C(nodeset) and C(mode)), and C(nodeset) and C(mode) of the guest's memory.
        - V(null) without NUMA settings.
      type: dict
      sample: {cells: [{cpus: "0", memory: 1024MiB}, {cpus: "1", memory: 1024MiB}], nodeset: "0", mode: strict}
    hugepages:
      description: The huge page size (V(2MiB), V(default)), or V(null).
      type: str
    hostdevs:
      description:
        - Host devices with C(type) (V(pci), V(usb), V(mdev)), C(address), C(vendor) and C(product), or C(uuid) and C(model).
        - C(managed), and C(key) (as in the diff).
      type: list
      elements: dict
      sample: [{type: pci, address: "0000:03:00.0", managed: true, key: "pci:0000:03:00.0"}]
    filesystems:
      description: The virtiofs shares, C(source) and C(target) (the mount tag).
      type: list
      elements: dict
      sample: [{source: /srv/data, target: data}]
    reboot_required:
      description: Whether the running guest needs a power cycle to get its definition.
      type: bool
    pending_changes:
      description: Option paths that take effect at the next boot of the running guest.
      type: list
      elements: str
      sample: [max_memory, machine]
console_tail:
  description:
    - When O(wait_for_ip) failed, the last lines (at most 40) of the guest's serial console from O(console_log),
      so that a guest that did not get an address shows how far it booted. Empty without O(console_log).
    - Known secret values (O(graphics.password), options marked C(no_log)) are masked as C(********).
  returned: failure of O(wait_for_ip)
  type: list
  elements: str
  sample: ["KVMOPS-TEST-GUEST BOOTED", "udhcpc: no lease, failing"]
reboot_required:
  description: Same as RV(guest.reboot_required).
  returned: always
  type: bool
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create volume 'web1-root.qcow2' in storage pool 'default' (20GiB)", "define guest 'web1'", "start guest 'web1'"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, run_module
from ansible_collections.kvmops.virt.plugins.module_utils._guest import GuestManager
from ansible_collections.kvmops.virt.plugins.module_utils._guest_args import guest_options


def main():
    refuse_nul_arguments()
    module = AnsibleModule(argument_spec=argument_spec(**guest_options()), supports_check_mode=True)
    run_module(module, GuestManager)


if __name__ == "__main__":
    main()
