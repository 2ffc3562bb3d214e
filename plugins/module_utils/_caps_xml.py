# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's capabilities XML and domain capabilities XML, parsed once for every user.

:func:`host_guest_capabilities` reads ``virConnectGetCapabilities`` into plain
data; ``host_capabilities`` reports it (:func:`parse_capabilities`) and
``kvm_guest`` checks virt_type and machine types against it and resolves machine
aliases. :func:`domain_capabilities_enums` reads the values of
``virConnectGetDomainCapabilities`` that ``kvm_guest`` checks;
:func:`parse_domain_capabilities` is what ``host_capabilities`` reports.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml


def host_guest_capabilities(xml):
    """``{"arch": host CPU arch or None, "guests": {arch: entry}}`` for the ``hvm`` guests.

    An entry: ``domain_types`` (in document order), ``machines`` (the names of the
    arch's ``<machine>`` elements, in order) and ``canonical`` (every machine name,
    also those of ``<domain><machine>``, -> its canonical name: "q35" -> "pc-q35-7.2").
    Raises ``VirtError`` for XML that does not parse.
    """
    root = parse_xml(xml, "capabilities")
    caps = {"arch": root.findtext("./host/cpu/arch"), "guests": {}}
    for guest in root.findall("./guest"):
        if guest.findtext("./os_type") != "hvm":
            continue
        arch = guest.find("./arch")
        if arch is None:
            continue
        entry = caps["guests"].setdefault(arch.get("name"), {"domain_types": [], "machines": [], "canonical": {}})
        for dom in arch.findall("./domain"):
            dtype = dom.get("type")
            if dtype and dtype not in entry["domain_types"]:
                entry["domain_types"].append(dtype)
        for machine in arch.findall("./machine"):
            if machine.text and machine.text not in entry["machines"]:
                entry["machines"].append(machine.text)
        # Aliases such as "pc" and "q35" name their canonical versioned machine.
        for machine in arch.findall("./machine") + arch.findall("./domain/machine"):
            if machine.text:
                entry["canonical"][machine.text] = machine.get("canonical") or machine.text
    return caps


def parse_capabilities(xml, host_arch):
    """Domain types for ``host_arch`` and the host CPU arch from capabilities XML."""
    caps = host_guest_capabilities(xml)
    arch = caps["arch"] or host_arch
    entry = caps["guests"].get(arch) or {"domain_types": [], "machines": []}
    return {"arch": arch, "domain_types": list(entry["domain_types"]), "machine_types": sorted(entry["machines"])}


def _enum(node, path):
    if node is None:
        return []
    return [v.text for v in node.findall(path + "/value") if v.text]


def domain_capabilities_enums(root):
    """The firmware values, secure-boot loader values and CPU modes (``{name: supported}``) of parsed domcapabilities."""
    return {
        "firmware": _enum(root.find("./os"), "./enum[@name='firmware']"),
        "secure": _enum(root.find("./os/loader"), "./enum[@name='secure']"),
        "cpu_modes": dict((m.get("name"), m.get("supported")) for m in root.findall("./cpu/mode")),
    }


def parse_domain_capabilities(xml):
    """Firmware, CPU modes, disk buses, TPM and virtio facts from domcapabilities XML."""
    root = parse_xml(xml, "domain capabilities")
    enums = domain_capabilities_enums(root)
    loader = root.find("./os/loader")
    firmware_values = enums["firmware"]
    loaders = [v.text for v in loader.findall("./value")] if loader is not None else []
    uefi = "efi" in firmware_values or any("OVMF" in p or "edk2" in p or "AAVMF" in p for p in loaders)
    secure = "yes" in enums["secure"]
    disk = root.find("./devices/disk")
    buses = _enum(disk, "./enum[@name='bus']")
    disk_models = _enum(disk, "./enum[@name='model']")
    tpm = root.find("./devices/tpm")
    cpu_modes = [m.get("name") for m in root.findall("./cpu/mode") if m.get("supported") == "yes"]
    models = [m.text for m in root.findall("./cpu/mode[@name='custom']/model") if m.get("usable") == "yes"]
    return {
        "machine": root.findtext("./machine"),
        "emulator": root.findtext("./path"),
        "max_vcpus": int(root.find("./vcpu").get("max")) if root.find("./vcpu") is not None else None,
        "firmware": {"uefi": uefi, "secure_boot": bool(uefi and secure), "loaders": loaders},
        "cpu_modes": cpu_modes,
        "cpu_models": models,
        "disk_buses": buses,
        "tpm": tpm is not None and tpm.get("supported") == "yes",
        "virtio": "virtio" in buses or "virtio" in disk_models,
    }
