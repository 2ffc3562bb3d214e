# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU and memory tuning, host devices and shared directories of :class:`_domain_builder.DomainBuilder`.

A base class of the builder, like :class:`_domain_devices.DeviceBuilder`: it
uses the builder's ``spec``, ``actual``, ``domain``, ``new`` and ``change()``.
It plans ``cpu_pinning`` and ``emulator_cpuset`` (``<cputune>``), ``numa``
(``<cpu><numa>`` and ``<numatune>``), ``hugepages`` and the memory backing
of ``filesystems`` (``<memoryBacking>``), ``hostdevs`` (``<hostdev>``) and
``filesystems`` (virtiofs ``<filesystem>``). The CPU sets are compared as sets
(``0-1`` is ``0,1``); the spec holds them as sorted tuples.
"""

from __future__ import annotations

import re

from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import (
    CONFIG, EMULATOR_PIN, FS_ATTACH, FS_DETACH, KIB, VCPU_PIN, kib_to_mib, norm_path,
)
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._xml import etree

_CPUSET_RE = re.compile(r"^\^?\d+(-\d+)?$")
PCI_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
USB_ID_RE = re.compile(r"^(?:0x)?([0-9a-fA-F]{4})$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NUMA_MODES = ("strict", "preferred", "interleave", "restrictive")


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------
def parse_cpuset(text, option):
    """``"0-3,^2"`` -> ``(0, 1, 3)``; a clear error naming ``option`` otherwise."""
    if text is None:
        return None
    value = str(text).strip()
    cpus = set()
    excluded = set()
    for part in value.split(",") if value else []:
        part = part.strip()
        if not _CPUSET_RE.match(part):
            raise InvalidArgument(option, "'%s' is not a CPU list such as 0, 0-3 or 0,2-3" % value)
        target = excluded if part.startswith("^") else cpus
        bounds = [int(b) for b in part.lstrip("^").split("-")]
        if bounds[-1] < bounds[0]:
            raise InvalidArgument(option, "'%s': the range %s goes backwards" % (value, part))
        target.update(range(bounds[0], bounds[-1] + 1))
    result = tuple(sorted(cpus - excluded))
    if not result:
        raise InvalidArgument(option, "'%s' names no CPU" % value)
    return result


def format_cpuset(cpus):
    """``(0, 1, 3)`` -> ``"0-1,3"`` (libvirt's form); ``None`` stays ``None``."""
    if cpus is None:
        return None
    parts = []
    start = prev = None
    for cpu in sorted(cpus):
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
        start = prev = cpu
    if start is not None:
        parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
    return ",".join(parts)


def _cpuset_or_none(text):
    try:
        return parse_cpuset(text, "cpuset") if text else None
    except InvalidArgument:
        return None


def parse_pci_address(text, option):
    """``0000:03:00.0`` or ``03:00.0`` -> ``"0000:03:00.0"`` (lower case)."""
    match = PCI_RE.match((text or "").strip())
    if not match:
        raise InvalidArgument(option, "'%s' is not a PCI address such as 0000:03:00.0 (domain:bus:slot.function)" % text)
    return "%s:%s:%s.%s" % ((match.group(1) or "0000").lower(), match.group(2).lower(), match.group(3).lower(), match.group(4))


def parse_usb_id(text, option):
    """``046d`` or ``0x046D`` -> ``"0x046d"``."""
    match = USB_ID_RE.match(str(text if text is not None else "").strip())
    if not match:
        raise InvalidArgument(option, "'%s' is not a USB id such as 0x046d (four hex digits)" % text)
    return "0x" + match.group(1).lower()


def hostdev_key(dev):
    """The identity of a host device in diffs and matching: ``pci:0000:03:00.0``, ``usb:0x046d:0xc077``, ``mdev:<uuid>``."""
    if dev["type"] == "pci":
        return "pci:" + dev["address"]
    if dev["type"] == "usb":
        return "usb:%s:%s" % (dev["vendor"], dev["product"])
    return "mdev:" + dev["uuid"]


def _hex(value, width):
    try:
        return ("%0" + str(width) + "x") % int(value, 16)
    except (TypeError, ValueError):
        return None


def read_hostdev(node):
    """A ``<hostdev mode='subsystem'>`` element as the spec's plain dict; ``None`` for other kinds."""
    kind = node.get("type")
    if node.get("mode", "subsystem") != "subsystem" or kind not in ("pci", "usb", "mdev"):
        return None
    source = node.find("source")
    if source is None:
        return None
    dev = {"type": kind}
    if kind == "pci":
        addr = source.find("address")
        if addr is None:
            return None
        parts = [_hex(addr.get(k) or "0", w) for k, w in (("domain", 4), ("bus", 2), ("slot", 2))]
        dev["address"] = "%s:%s:%s.%s" % (parts[0], parts[1], parts[2], int(addr.get("function") or "0", 16))
        dev["managed"] = node.get("managed") == "yes"
    elif kind == "usb":
        vendor, product = source.find("vendor"), source.find("product")
        if vendor is None or product is None:
            return None
        dev["vendor"] = "0x" + (_hex(vendor.get("id"), 4) or "")
        dev["product"] = "0x" + (_hex(product.get("id"), 4) or "")
        dev["managed"] = node.get("managed") == "yes"
    else:
        addr = source.find("address")
        if addr is None or not addr.get("uuid"):
            return None
        dev["uuid"] = addr.get("uuid").lower()
        dev["model"] = node.get("model")
    return dev


def hostdev_node(dev):
    """The ``<hostdev>`` element of one entry of ``hostdevs``."""
    node = etree.Element("hostdev", mode="subsystem", type=dev["type"])
    source = etree.SubElement(node, "source")
    if dev["type"] == "pci":
        node.set("managed", "yes" if dev["managed"] else "no")
        dom, bus, rest = dev["address"].split(":")
        slot, function = rest.split(".")
        etree.SubElement(source, "address", domain="0x" + dom, bus="0x" + bus, slot="0x" + slot, function="0x" + function)
    elif dev["type"] == "usb":
        node.set("managed", "yes" if dev["managed"] else "no")
        etree.SubElement(source, "vendor", id=dev["vendor"])
        etree.SubElement(source, "product", id=dev["product"])
    else:
        node.set("model", dev["model"])
        etree.SubElement(source, "address", uuid=dev["uuid"])
    return node


def _hostdev_view(dev):
    """What the diff shows of a host device (its identity is in the key)."""
    if dev["type"] == "mdev":
        return {"model": dev.get("model")}
    return {"managed": dev.get("managed")}


def read_filesystem(node):
    """A ``<filesystem>`` as ``{"source", "target", "driver"}``."""
    source = node.find("source")
    target = node.find("target")
    driver = node.find("driver")
    return {
        "source": norm_path(source.get("dir") if source is not None else None),
        "target": target.get("dir") if target is not None else None,
        "driver": driver.get("type") if driver is not None else None,
    }


def find_filesystem(domain, tag):
    """The ``<filesystem>`` element of ``domain`` with mount tag ``tag``, or ``None``."""
    for node in domain.node.findall("./devices/filesystem"):
        if read_filesystem(node)["target"] == tag:
            return node
    return None


def has_shared_memory(domain):
    """Whether virtiofsd can map the guest's memory (``<memoryBacking><access mode='shared'/>``)."""
    access = domain.find("./memoryBacking/access")
    return access is not None and access.get("mode") == "shared"


def filesystem_node(fs):
    node = etree.Element("filesystem", type="mount", accessmode="passthrough")
    etree.SubElement(node, "driver", type="virtiofs")
    etree.SubElement(node, "source", dir=fs["source"])
    etree.SubElement(node, "target", dir=fs["target"])
    return node


def hugepage_label(size_kib):
    """``2048`` -> ``"2MiB"``; ``0`` (the host's default size) -> ``"default"``; ``None`` -> ``None``."""
    if size_kib is None:
        return None
    if size_kib == 0:
        return "default"
    if size_kib % (1024 * 1024) == 0:
        return "%dGiB" % (size_kib // (1024 * 1024))
    if size_kib % 1024 == 0:
        return "%dMiB" % (size_kib // 1024)
    return "%dKiB" % size_kib


# ---------------------------------------------------------------------------
# reading a domain
# ---------------------------------------------------------------------------
def cpu_pinning_of(domain):
    """``{vcpu: (cpus...)}`` of ``<cputune><vcpupin>``."""
    out = {}
    for pin in domain.node.findall("./cputune/vcpupin"):
        cpus = _cpuset_or_none(pin.get("cpuset"))
        if pin.get("vcpu", "").isdigit() and cpus:
            out[int(pin.get("vcpu"))] = cpus
    return out


def emulator_cpuset_of(domain):
    node = domain.find("./cputune/emulatorpin")
    return _cpuset_or_none(node.get("cpuset")) if node is not None else None


def numa_of(domain):
    """The guest's NUMA layout as the spec holds it: cells, and the host node binding of its memory."""
    cells = []
    memnodes = dict((m.get("cellid"), m) for m in domain.node.findall("./numatune/memnode"))
    for i, cell in enumerate(domain.node.findall("./cpu/numa/cell")):
        mem = memnode_mode = memnode_set = None
        kib = _cell_kib(cell)
        if kib is not None:
            mem = kib_to_mib(kib)
        memnode = memnodes.get(cell.get("id", str(i)))
        if memnode is not None:
            memnode_mode = memnode.get("mode") or "strict"
            memnode_set = _cpuset_or_none(memnode.get("nodeset"))
        cells.append({"cpus": _cpuset_or_none(cell.get("cpus")), "memory": mem,
                      "nodeset": memnode_set, "mode": memnode_mode if memnode_set else None})
    memory = domain.find("./numatune/memory")
    nodeset = _cpuset_or_none(memory.get("nodeset")) if memory is not None else None
    mode = (memory.get("mode") or "strict") if memory is not None and nodeset else None
    if not cells and nodeset is None:
        return None
    return {"cells": cells, "nodeset": nodeset, "mode": mode}


def _cell_kib(cell):
    try:
        value = int(cell.get("memory"))
    except (TypeError, ValueError):
        return None
    factor = {"b": 1.0 / 1024, "bytes": 1.0 / 1024, "k": 1, "kib": 1, "m": KIB, "mib": KIB, "g": KIB * KIB, "gib": KIB * KIB}
    return int(value * factor.get((cell.get("unit") or "KiB").lower(), 1))


def hugepages_of(domain):
    """The huge page size in KiB (0: the host's default size), or ``None`` without huge pages."""
    node = domain.find("./memoryBacking/hugepages")
    if node is None:
        return None
    page = node.find("page")
    if page is None or not (page.get("size") or "").isdigit():
        return 0
    size = int(page.get("size"))
    unit = (page.get("unit") or "KiB").lower()
    return size * {"m": KIB, "mib": KIB, "g": KIB * KIB, "gib": KIB * KIB}.get(unit, 1)


def hostdevs_of(domain):
    out = []
    for node in domain.node.findall("./devices/hostdev"):
        dev = read_hostdev(node)
        if dev is not None:
            out.append(dev)
    return out


def filesystems_of(domain):
    return [read_filesystem(node) for node in domain.node.findall("./devices/filesystem")]


def _numa_view(numa):
    if numa is None:
        return None
    cells = []
    for cell in numa["cells"]:
        view = {"cpus": format_cpuset(cell["cpus"]), "memory": "%dMiB" % cell["memory"] if cell["memory"] is not None else None}
        if cell.get("nodeset"):
            view["nodeset"] = format_cpuset(cell["nodeset"])
            view["mode"] = cell.get("mode") or "strict"
        cells.append(view)
    out = {"cells": cells}
    if numa.get("nodeset"):
        out["nodeset"] = format_cpuset(numa["nodeset"])
        out["mode"] = numa.get("mode") or "strict"
    return out


def _pins_view(pins):
    return [{"vcpu": v, "cpuset": format_cpuset(c)} for v, c in sorted(pins.items())]


def tuning_facts(domain):
    """The return values of the tuning options, read from ``domain``."""
    pins = cpu_pinning_of(domain)
    return {
        "cpu_pinning": [{"vcpu": v, "cpuset": format_cpuset(c)} for v, c in sorted(pins.items())],
        "emulator_cpuset": format_cpuset(emulator_cpuset_of(domain)),
        "numa": _numa_view(numa_of(domain)),
        "hugepages": hugepage_label(hugepages_of(domain)),
        "hostdevs": [dict(dev, key=hostdev_key(dev)) for dev in hostdevs_of(domain)],
        "filesystems": [{"source": fs["source"], "target": fs["target"]} for fs in filesystems_of(domain)],
    }


# ---------------------------------------------------------------------------
# the builder's part
# ---------------------------------------------------------------------------
class TuningBuilder:
    """cputune, NUMA, memory backing, host devices and virtiofs shares of the desired definition."""

    def _tuning(self):
        self._cpu_pinning()
        self._emulator_cpuset()
        self._numa()
        self._hugepages()
        self._hostdevs()
        self._filesystems()

    def _actual_value(self, reader, empty=None):
        return empty if self.new else reader(self.actual)

    def _every_cpu(self):
        """Every host CPU (a pin to all of them is no pin: libvirt shows it after a live unpin), or None when unknown."""
        count = getattr(self.spec, "host_cpus", None)
        return tuple(range(count)) if count else None

    def _cputune(self):
        return self.domain.ensure("./cputune")

    def _prune_cputune(self):
        node = self.domain.find("./cputune")
        if node is not None and not len(node) and not node.attrib:
            node.getparent().remove(node)

    # -- cputune ------------------------------------------------------------
    def _cpu_pinning(self):
        desired = self.spec.cpu_pinning
        if desired is None:
            return
        maximum = self.domain.max_vcpus or 1
        for vcpu in desired:
            if vcpu >= maximum:
                raise InvalidArgument("cpu_pinning", "vCPU %d does not exist: the guest has %d vCPUs (0 to %d)"
                                      % (vcpu, maximum, maximum - 1))
        every = self._every_cpu()
        desired = dict((v, c) for v, c in desired.items() if c != every)
        actual = dict((v, c) for v, c in self._actual_value(cpu_pinning_of, {}).items() if c != every)
        if desired == actual:
            return
        if desired or not self.new:
            self.change("cpu_pinning", None if self.new else _pins_view(actual), _pins_view(desired), VCPU_PIN,
                        data={"pins": dict(desired), "unpinned": sorted(set(actual) - set(desired))})
        tune = self._cputune()
        for old in tune.findall("vcpupin"):
            tune.remove(old)
        anchor = 0
        for vcpu, cpus in sorted(desired.items()):
            tune.insert(anchor, etree.Element("vcpupin", vcpu=str(vcpu), cpuset=format_cpuset(cpus)))
            anchor += 1
        self._prune_cputune()

    def _emulator_cpuset(self):
        desired = self.spec.emulator_cpuset
        if desired is None:
            return
        every = self._every_cpu()
        desired = desired if desired and desired != every else None  # () removes the pinning
        actual = self._actual_value(emulator_cpuset_of)
        actual = None if actual == every else actual
        if desired == actual:
            return
        self.change("emulator_cpuset", None if self.new else format_cpuset(actual), format_cpuset(desired), EMULATOR_PIN,
                    data={"cpus": desired})
        tune = self._cputune()
        old = tune.find("emulatorpin")
        if desired is None:
            if old is not None:
                tune.remove(old)
            self._prune_cputune()
            return
        if old is None:
            old = etree.SubElement(tune, "emulatorpin")
        old.set("cpuset", format_cpuset(desired))

    # -- NUMA ---------------------------------------------------------------
    def _numa(self):
        desired = self.spec.numa
        if desired is None:
            return
        self._check_numa(desired)
        actual = self._actual_value(numa_of)
        wanted = desired if desired["cells"] or desired.get("nodeset") else None
        if _numa_view(wanted) == _numa_view(actual):
            return
        self.change("numa", None if self.new else _numa_view(actual), _numa_view(wanted), CONFIG)
        dom = self.domain
        dom.remove("./cpu/numa")
        dom.remove("./numatune")
        cpu = dom.find("./cpu")
        if cpu is not None and not len(cpu) and not cpu.attrib:
            cpu.getparent().remove(cpu)
        if wanted is None:
            return
        if wanted["cells"]:
            numa = etree.SubElement(dom.ensure("./cpu"), "numa")
            for i, cell in enumerate(wanted["cells"]):
                etree.SubElement(numa, "cell", id=str(i), cpus=format_cpuset(cell["cpus"]),
                                 memory=str(cell["memory"] * KIB), unit="KiB")
        tune = None
        if wanted.get("nodeset"):
            tune = dom.ensure("./numatune")
            etree.SubElement(tune, "memory", mode=wanted.get("mode") or "strict", nodeset=format_cpuset(wanted["nodeset"]))
        for i, cell in enumerate(wanted["cells"]):
            if cell.get("nodeset"):
                tune = tune if tune is not None else dom.ensure("./numatune")
                etree.SubElement(tune, "memnode", cellid=str(i), mode=cell.get("mode") or "strict",
                                 nodeset=format_cpuset(cell["nodeset"]))

    def _check_numa(self, desired):
        dom = self.domain
        maximum = dom.max_vcpus or 1
        seen = set()
        for i, cell in enumerate(desired["cells"]):
            option = "numa.cells[%d].cpus" % i
            for cpu in cell["cpus"]:
                if cpu >= maximum:
                    raise InvalidArgument(option, "vCPU %d does not exist: the guest has %d vCPUs (0 to %d)" % (cpu, maximum, maximum - 1))
                if cpu in seen:
                    raise InvalidArgument(option, "vCPU %d is in more than one cell" % cpu)
                seen.add(cpu)
        if desired["cells"]:
            total = sum(cell["memory"] for cell in desired["cells"])
            if dom.max_memory_mib is not None and total != dom.max_memory_mib:
                raise InvalidArgument("numa.cells", "the cells' memory adds up to %d MiB, but the guest has %d MiB "
                                      "(max_memory, or memory without it); make them equal" % (total, dom.max_memory_mib))

    # -- memory backing -------------------------------------------------------
    def _hugepages(self):
        desired = self.spec.hugepages
        if desired is None:
            return
        desired = None if desired == "" else desired
        actual = self._actual_value(hugepages_of)
        if desired == actual:
            return
        self.change("hugepages", None if self.new else hugepage_label(actual), hugepage_label(desired), CONFIG)
        self.domain.remove("./memoryBacking/hugepages")
        if desired is not None:
            backing = self.domain.ensure("./memoryBacking")
            pages = etree.Element("hugepages")
            backing.insert(0, pages)
            if desired:
                etree.SubElement(pages, "page", size=str(desired), unit="KiB")
        else:
            backing = self.domain.find("./memoryBacking")
            if backing is not None and not len(backing):
                backing.getparent().remove(backing)

    # -- host devices -----------------------------------------------------------
    def _hostdevs(self):
        desired = self.spec.hostdevs
        if desired is None:
            return
        devices = self.domain.devices_node()
        existing = {}
        for node in devices.findall("hostdev"):
            dev = read_hostdev(node)
            if dev is not None:
                existing[hostdev_key(dev)] = (node, dev)
        wanted = dict((hostdev_key(dev), dev) for dev in desired)
        for key, (node, dev) in existing.items():
            if key not in wanted:
                self.change("hostdevs[%s]" % key, _hostdev_view(dev), None, CONFIG)
                devices.remove(node)
        for key, dev in wanted.items():
            if key not in existing:
                self.change("hostdevs[%s]" % key, None, _hostdev_view(dev), CONFIG)
                self.domain.add_device(hostdev_node(dev))
                continue
            node, old = existing[key]
            if _hostdev_view(old) != _hostdev_view(dev):
                self.change("hostdevs[%s]" % key, _hostdev_view(old), _hostdev_view(dev), CONFIG)
                if dev["type"] == "mdev":
                    node.set("model", dev["model"])
                else:
                    node.set("managed", "yes" if dev["managed"] else "no")

    # -- virtiofs -------------------------------------------------------------------
    def _filesystems(self):
        desired = self.spec.filesystems
        if desired is None:
            return
        devices = self.domain.devices_node()
        existing = dict((read_filesystem(node)["target"], node) for node in devices.findall("filesystem"))
        wanted = dict((fs["target"], fs) for fs in desired)
        for tag, node in existing.items():
            if tag not in wanted:
                self.change("filesystems[%s]" % tag, {"source": read_filesystem(node)["source"]}, None, FS_DETACH,
                            data={"target": tag})
                devices.remove(node)
        for tag, fs in wanted.items():
            node = existing.get(tag)
            if node is None:
                self.change("filesystems[%s]" % tag, None, {"source": fs["source"]}, FS_ATTACH, data={"target": tag})
                self.domain.add_device(filesystem_node(fs))
                continue
            old = read_filesystem(node)
            if old["source"] != fs["source"] or old["driver"] != "virtiofs":
                self.change("filesystems[%s]" % tag, {"source": old["source"]}, {"source": fs["source"]}, CONFIG)
                node.addnext(filesystem_node(fs))
                devices.remove(node)
        if desired:
            self._shared_memory()

    def _shared_memory(self):
        """virtiofs needs guest memory that virtiofsd can map: memfd, shared."""
        backing = self.domain.find("./memoryBacking")
        source = backing.find("source") if backing is not None else None
        access = backing.find("access") if backing is not None else None
        before = None
        if source is not None or access is not None:
            before = "%s, %s" % (source.get("type") if source is not None else "anonymous",
                                 access.get("mode") if access is not None else "private")
        if access is not None and access.get("mode") == "shared" and source is not None:
            return
        if not self.new:
            self.change("filesystems.memory_backing", before, "memfd, shared", CONFIG)
        backing = self.domain.ensure("./memoryBacking")
        if source is None:
            source = etree.SubElement(backing, "source", type="memfd")
        if access is None:
            access = etree.SubElement(backing, "access")
        access.set("mode", "shared")
