# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt domain XML model: declarative views on ``<domain>`` and its devices.

Connection-free and depending only on the base layer (``_xml``, ``_size``,
``_errors``), so the guest manager, the network manager (guests attached to a
network), address discovery and the inventory plugin read guests through the
same model.

* :class:`Domain` and its devices (:class:`DiskDevice`, :class:`InterfaceDevice`,
  :class:`GraphicsDevice`, :class:`CharDevice`, :class:`ControllerDevice`, :class:`TpmDevice`) are
  declarative views on the XML (``_xml.XMLProperty``). Whatever they do not
  model is kept as it is.
* :class:`GuestMetadata` is the collection's own ``<metadata>`` element
  (tags, the volumes created for the guest, the cloud-init seed digests).
* :func:`disk_facts` and :func:`interface_facts` are the return values read from a domain.
"""

from __future__ import annotations

import copy
import os
import re

from ansible_collections.kvmops.virt.plugins.module_utils._size import unit_factor
from ansible_collections.kvmops.virt.plugins.module_utils._xml import (
    XMLChildren,
    XMLFlag,
    XMLObject,
    XMLProperty,
    etree,
    parse_xml,
    to_string,
)

NS = "https://github.com/kvmops/kvmops.virt/guest/1"
NS_PREFIX = "kvmops"
KIB = 1024

TARGET_RE = re.compile(r"^(vd|sd|hd|xvd|fd)([a-z]{1,3})$")

TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd", "xen": "xvd", "fdc": "fd"}
# Buses whose disks QEMU can hot-plug and hot-unplug on a running guest.
HOTPLUG_BUSES = ("virtio", "scsi", "usb")
# pcie-root-ports a new q35 guest gets, so that disks and NICs can be hot-plugged.
Q35_ROOT_PORTS = 12

# Change kinds: how a change reaches a running guest.
CONFIG = "config"            # persistent definition only; takes effect at the next boot
MEMORY = "memory"            # setMemoryFlags(LIVE) within the live maximum
VCPUS = "vcpus"              # setVcpusFlags(LIVE) within the live maximum
DISK_ATTACH = "disk-attach"
DISK_DETACH = "disk-detach"
DISK_MEDIA = "disk-media"    # cdrom media change (updateDeviceFlags)
NIC_ATTACH = "nic-attach"
NIC_DETACH = "nic-detach"
NIC_UPDATE = "nic-update"    # source change of an interface (updateDeviceFlags, may be refused)
GRAPHICS_PASSWORD = "graphics-password"
METADATA = "metadata"        # tags: setMetadata(LIVE)
SEED = "seed"                # the cloud-init seed content; the guest reads it at boot
VCPU_PIN = "vcpu-pin"        # cpu_pinning: pinVcpuFlags(LIVE) per vCPU
EMULATOR_PIN = "emulator-pin"  # emulator_cpuset: pinEmulator(LIVE)
FS_ATTACH = "fs-attach"      # a virtiofs share hot-plugged (needs shared memory in the running guest)
FS_DETACH = "fs-detach"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def norm_path(path):
    if not path:
        return None
    return os.path.normpath(path)


def target_index(name):
    """``vda`` -> 0, ``vdz`` -> 25, ``vdaa`` -> 26 (bijective base 26); ``None`` if not a target name."""
    match = TARGET_RE.match(name or "")
    if not match:
        return None
    index = 0
    for char in match.group(2):
        index = index * 26 + (ord(char) - ord("a") + 1)
    return index - 1


def target_name(prefix, index):
    letters = ""
    index += 1
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def next_free_target(bus, used):
    prefix = TARGET_PREFIX.get(bus, "sd")
    index = 0
    while target_name(prefix, index) in used:
        index += 1
    return target_name(prefix, index)


def machine_family(machine):
    """``q35``/``pc-q35-7.2`` -> ``q35``; ``pc``/``pc-i440fx-7.2`` -> ``i440fx``; else the name."""
    if not machine:
        return None
    if machine == "q35" or machine.startswith("pc-q35"):
        return "q35"
    if machine == "pc" or machine.startswith("pc-i440fx") or re.match(r"^pc-\d", machine):
        return "i440fx"
    return machine


def cdrom_bus(machine):
    """The bus of a new cdrom: IDE on i440fx (``pc``), SATA elsewhere (q35 has no IDE)."""
    return "ide" if machine_family(machine) == "i440fx" else "sata"


def memory_kib(node):
    """KiB of a ``<memory unit=...>N</memory>``-style element (libvirt's default unit is KiB)."""
    if node is None or node.text is None:
        return None
    try:
        value = int(node.text.strip())
    except ValueError:
        return None
    factor = unit_factor(node.get("unit") or "KiB")
    if factor is None:
        return None
    return value * factor // KIB


def kib_to_mib(kib):
    if kib is None:
        return None
    return -(-kib // KIB)


def _is_attached(node, root):
    while node is not None:
        if node is root:
            return True
        node = node.getparent()
    return False


def _children(node, tag):
    return [c for c in node if c.tag == tag]


# virDomainState -> the state names kvm_guest uses (its ``state`` option and ``guest.state``):
# a guest that is blocked or being shut down is still running; shut off is ``shutdown``.
STATE_NAMES = {
    0: "running",  # VIR_DOMAIN_NOSTATE
    1: "running",
    2: "running",  # BLOCKED
    3: "paused",
    4: "running",  # SHUTDOWN: being shut down
    5: "shutdown",  # SHUTOFF
    6: "crashed",
    7: "pmsuspended",
}


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------
class DiskDevice(XMLObject):
    """``<disk>``; identity: ``target/@dev``."""

    TAG = "disk"
    type = XMLProperty("@type")
    device = XMLProperty("@device")
    driver_name = XMLProperty("./driver/@name")
    format = XMLProperty("./driver/@type")
    source_file = XMLProperty("./source/@file")
    source_dev = XMLProperty("./source/@dev")
    source_pool = XMLProperty("./source/@pool")
    source_volume = XMLProperty("./source/@volume")
    target = XMLProperty("./target/@dev")
    bus = XMLProperty("./target/@bus")
    readonly = XMLFlag("./readonly")

    def path(self, resolve_volume=None):
        """The host path of the source (``None`` for an empty cdrom).

        ``type='volume'`` disks name a pool and a volume; ``resolve_volume(pool, volume)``
        turns them into a path when given.
        """
        if self.type == "volume":
            if resolve_volume and self.source_pool and self.source_volume:
                return norm_path(resolve_volume(self.source_pool, self.source_volume))
            return None
        return norm_path(self.source_file or self.source_dev)

    def set_source(self, source_type, path):
        """Point the disk at ``path`` (``file`` or ``block``); ``None`` ejects a cdrom."""
        self.remove("./source")
        self.remove("./backingStore")
        if path is None:
            self.type = "file"
            return
        self.type = source_type
        source = etree.Element("source")
        source.set("dev" if source_type == "block" else "file", path)
        driver = self.find("./driver")
        if driver is not None:
            driver.addnext(source)
        else:
            self.node.insert(0, source)

    def summary(self, resolve_volume=None):
        return {"device": self.device or "disk", "bus": self.bus, "path": self.path(resolve_volume)}


class InterfaceDevice(XMLObject):
    """``<interface>``; identity: ``mac/@address``."""

    TAG = "interface"
    type = XMLProperty("@type")
    mac = XMLProperty("./mac/@address")
    source_network = XMLProperty("./source/@network")
    source_bridge = XMLProperty("./source/@bridge")
    source_dev = XMLProperty("./source/@dev")
    source_mode = XMLProperty("./source/@mode")
    # runtime details libvirt adds to a running guest's interface
    source_portid = XMLProperty("./source/@portid")
    target_dev = XMLProperty("./target/@dev")
    alias = XMLProperty("./alias/@name")
    model = XMLProperty("./model/@type")

    @property
    def source(self):
        """``(kind, name)`` in the option's terms: network, bridge or direct."""
        if self.type == "network":
            return ("network", self.source_network)
        if self.type == "bridge":
            return ("bridge", self.source_bridge)
        if self.type == "direct":
            return ("direct", self.source_dev)
        return (self.type, None)

    def set_source(self, kind, name):
        self.remove("./source")
        source = etree.Element("source")
        if kind == "network":
            self.type = "network"
            source.set("network", name)
        elif kind == "bridge":
            self.type = "bridge"
            source.set("bridge", name)
        else:
            self.type = "direct"
            source.set("dev", name)
            source.set("mode", "bridge")
        mac = self.find("./mac")
        if mac is not None:
            mac.addnext(source)
        else:
            self.node.insert(0, source)

    def normalized_mac(self):
        return (self.mac or "").lower() or None

    def summary(self):
        kind, name = self.source
        return {kind: name, "model": self.model, "mac": self.normalized_mac()}


class GraphicsDevice(XMLObject):
    TAG = "graphics"
    type = XMLProperty("@type")
    passwd = XMLProperty("@passwd")
    listen_attr = XMLProperty("@listen")
    port = XMLProperty("@port", kind="int")
    autoport = XMLProperty("@autoport")

    @property
    def listen(self):
        if self.listen_attr:
            return self.listen_attr
        for node in self.node.findall("listen"):
            if node.get("type") == "address" and node.get("address"):
                return node.get("address")
        return None

    @listen.setter
    def listen(self, address):
        for node in self.node.findall("listen"):
            self.node.remove(node)
        self.listen_attr = address
        if address:
            etree.SubElement(self.node, "listen", type="address", address=address)


class CharDevice(XMLObject):
    """``<serial>`` and ``<console>``."""

    TAG = "serial"
    type = XMLProperty("@type")
    source_path = XMLProperty("./source/@path")
    target_port = XMLProperty("./target/@port")
    target_type = XMLProperty("./target/@type")


class ControllerDevice(XMLObject):
    TAG = "controller"
    type = XMLProperty("@type")
    model = XMLProperty("@model")
    index = XMLProperty("@index", kind="int")


class TpmDevice(XMLObject):
    """``<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>`` (swtpm)."""

    TAG = "tpm"
    model = XMLProperty("@model")
    backend_type = XMLProperty("./backend/@type")
    version = XMLProperty("./backend/@version")


# ---------------------------------------------------------------------------
# the domain
# ---------------------------------------------------------------------------
class Domain(XMLObject):
    """``<domain>`` (https://libvirt.org/formatdomain.html)."""

    TAG = "domain"
    virt_type = XMLProperty("@type")
    name = XMLProperty("./name")
    uuid = XMLProperty("./uuid")
    os_type = XMLProperty("./os/type")
    arch = XMLProperty("./os/type/@arch")
    machine = XMLProperty("./os/type/@machine")
    firmware_attr = XMLProperty("./os/@firmware")
    loader = XMLProperty("./os/loader")
    loader_type = XMLProperty("./os/loader/@type")
    loader_secure = XMLProperty("./os/loader/@secure")
    secure_boot_feature = XMLProperty("./os/firmware/feature[@name='secure-boot']/@enabled")
    enrolled_keys_feature = XMLProperty("./os/firmware/feature[@name='enrolled-keys']/@enabled")
    kernel = XMLProperty("./os/kernel")
    initrd = XMLProperty("./os/initrd")
    cmdline = XMLProperty("./os/cmdline")
    acpi = XMLFlag("./features/acpi")
    apic = XMLFlag("./features/apic")
    smm = XMLProperty("./features/smm/@state")
    cpu_mode = XMLProperty("./cpu/@mode")
    cpu_model = XMLProperty("./cpu/model")
    vcpu_text = XMLProperty("./vcpu", kind="int")
    vcpu_current_attr = XMLProperty("./vcpu/@current", kind="int")
    on_poweroff = XMLProperty("./on_poweroff")
    on_reboot = XMLProperty("./on_reboot")
    on_crash = XMLProperty("./on_crash")
    disks = XMLChildren(DiskDevice, "./devices/disk")
    interfaces = XMLChildren(InterfaceDevice, "./devices/interface")
    graphics = XMLChildren(GraphicsDevice, "./devices/graphics")
    serials = XMLChildren(CharDevice, "./devices/serial")
    consoles = XMLChildren(CharDevice, "./devices/console")
    controllers = XMLChildren(ControllerDevice, "./devices/controller")
    tpms = XMLChildren(TpmDevice, "./devices/tpm")

    # -- memory (MiB) ------------------------------------------------------
    @property
    def max_memory_mib(self):
        return kib_to_mib(memory_kib(self.find("./memory")))

    @property
    def memory_mib(self):
        cur = memory_kib(self.find("./currentMemory"))
        if cur is None:
            return self.max_memory_mib
        return kib_to_mib(cur)

    def set_memory(self, current_mib, max_mib):
        for tag, mib in (("memory", max_mib), ("currentMemory", current_mib)):
            node = self.ensure("./" + tag)
            node.text = str(int(mib) * KIB)
            node.set("unit", "KiB")

    # -- vcpus -------------------------------------------------------------
    @property
    def max_vcpus(self):
        return self.vcpu_text

    @property
    def vcpus(self):
        return self.vcpu_current_attr or self.vcpu_text

    def set_vcpus(self, current, maximum):
        self.vcpu_text = maximum
        self.vcpu_current_attr = current if current != maximum else None

    # -- firmware ----------------------------------------------------------
    @property
    def firmware(self):
        if self.firmware_attr == "efi":
            return "uefi"
        loader = (self.loader or "").lower()
        if self.loader_type == "pflash" or "ovmf" in loader or "edk2" in loader or "aavmf" in loader:
            return "uefi"
        return "bios"

    @property
    def secure_boot(self):
        if self.firmware != "uefi":
            return False
        if self.loader_secure is not None:
            return self.loader_secure == "yes"
        return self.secure_boot_feature == "yes"

    # -- devices -------------------------------------------------------------
    def devices_node(self):
        return self.ensure("./devices")

    def add_device(self, node):
        """Append a device element, after the last device of the same kind."""
        devices = self.devices_node()
        same = devices.findall(node.tag)
        if same:
            same[-1].addnext(node)
        else:
            devices.append(node)
        return node

    def find_disk(self, target):
        for disk in self.disks:
            if disk.target == target:
                return disk
        return None

    def find_interface(self, mac):
        mac = (mac or "").lower()
        for nic in self.interfaces:
            if nic.normalized_mac() == mac:
                return nic
        return None

    def metadata(self):
        return GuestMetadata.from_domain(self)

    def disk_targets(self):
        return set(d.target for d in self.disks if d.target)

    # -- boot order ------------------------------------------------------------
    @property
    def boot_devs(self):
        """The ``dev`` of each ``<os><boot>``, in order (``[]``: none)."""
        return [b.get("dev") for b in self.node.findall("./os/boot")]

    @boot_devs.setter
    def boot_devs(self, devs):
        os_node = self.ensure("./os")
        for old in os_node.findall("boot"):
            os_node.remove(old)
        # libvirt's schema: <boot> after <type>, <loader>, <nvram>, <kernel>, <initrd>, <cmdline>
        anchor = None
        for tag in ("type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb"):
            anchor = os_node.find(tag) if os_node.find(tag) is not None else anchor
        for dev in reversed(devs):
            node = etree.Element("boot", dev=dev)
            if anchor is not None:
                anchor.addnext(node)
            else:
                os_node.insert(0, node)

    def device_boot_orders(self):
        """The devices with a per-device ``<boot order='N'/>`` (libvirt refuses them with ``<os><boot>``)."""
        return [node for node in self.node.findall("./devices/*") if node.find("boot") is not None]


# ---------------------------------------------------------------------------
# the collection's metadata
# ---------------------------------------------------------------------------
def _q(tag):
    return "{%s}%s" % (NS, tag)


class GuestMetadata:
    """``<kvmops:guest>`` in the domain's ``<metadata>``.

    ::

        <kvmops:guest xmlns:kvmops="https://github.com/kvmops/kvmops.virt/guest/1">
          <kvmops:tags><kvmops:tag>web</kvmops:tag></kvmops:tags>
          <kvmops:created-volumes>
            <kvmops:volume pool="default" name="web1-data.qcow2" path="/var/lib/libvirt/images/web1-data.qcow2"/>
          </kvmops:created-volumes>
          <kvmops:seed digest="..." pool="default" volume="web1-cidata.iso" path="...">
            <kvmops:file name="user-data" digest="..."/>
          </kvmops:seed>
        </kvmops:guest>

    Digests are :func:`_cloudinit.seed_digest` values (one-way, stretched).
    Elements it does not know are kept.
    """

    def __init__(self, node=None):
        self.node = node  # the <kvmops:guest> element, or None

    @classmethod
    def from_domain(cls, domain):
        metadata = domain.find("./metadata")
        if metadata is None:
            return cls(None)
        return cls(metadata.find(_q("guest")))

    @classmethod
    def from_string(cls, text):
        if not text:
            return cls(None)
        node = parse_xml(text, what="guest metadata")
        return cls(node if node.tag == _q("guest") else None)

    def _ensure(self):
        if self.node is None:
            self.node = etree.Element(_q("guest"), nsmap={NS_PREFIX: NS})
        return self.node

    def _child(self, tag, create=False):
        if self.node is None:
            if not create:
                return None
            self._ensure()
        child = self.node.find(_q(tag))
        if child is None and create:
            child = etree.SubElement(self.node, _q(tag))
        return child

    # -- tags -------------------------------------------------------------
    @property
    def tags(self):
        node = self._child("tags")
        if node is None:
            return []
        return [t.text or "" for t in node.findall(_q("tag"))]

    @tags.setter
    def tags(self, tags):
        node = self._child("tags")
        if node is not None:
            self.node.remove(node)
        if tags:
            node = self._child("tags", create=True)
            for tag in tags:
                etree.SubElement(node, _q("tag")).text = tag

    # -- created volumes ----------------------------------------------------
    @property
    def volumes(self):
        node = self._child("created-volumes")
        if node is None:
            return []
        return [dict(pool=v.get("pool"), name=v.get("name"), path=v.get("path")) for v in node.findall(_q("volume"))]

    def add_volume(self, pool, name, path):
        for vol in self.volumes:
            if vol["pool"] == pool and vol["name"] == name:
                return False
        node = self._child("created-volumes", create=True)
        etree.SubElement(node, _q("volume"), pool=pool, name=name, path=path or "")
        return True

    def remove_volume(self, pool, name):
        node = self._child("created-volumes")
        if node is None:
            return
        for vol in node.findall(_q("volume")):
            if vol.get("pool") == pool and vol.get("name") == name:
                node.remove(vol)
        if len(node) == 0:
            self.node.remove(node)

    def set_volume_path(self, pool, name, path):
        node = self._child("created-volumes")
        if node is None:
            return
        for vol in node.findall(_q("volume")):
            if vol.get("pool") == pool and vol.get("name") == name:
                vol.set("path", path)

    # -- seed ---------------------------------------------------------------
    @property
    def seed(self):
        node = self._child("seed")
        if node is None:
            return None
        files = dict((f.get("name"), f.get("digest")) for f in node.findall(_q("file")))
        return dict(digest=node.get("digest"), pool=node.get("pool"), volume=node.get("volume"), path=node.get("path"), files=files,
                    salt=node.get("salt"))

    @seed.setter
    def seed(self, seed):
        node = self._child("seed")
        if node is not None:
            self.node.remove(node)
        if seed:
            node = self._child("seed", create=True)
            for key in ("digest", "salt", "pool", "volume", "path"):
                if seed.get(key):
                    node.set(key, seed[key])
            for name in sorted(seed.get("files") or {}):
                etree.SubElement(node, _q("file"), name=name, digest=seed["files"][name])

    # -- writing --------------------------------------------------------------
    def is_empty(self):
        return self.node is None or len(self.node) == 0

    def to_xml(self):
        return to_string(self._ensure())

    def to_plain_xml(self):
        """The element without its namespace, as ``virDomainSetMetadata`` wants it (libvirt adds the namespace)."""
        node = copy.deepcopy(self._ensure())
        for el in node.iter():
            if isinstance(el.tag, str) and el.tag.startswith("{"):
                el.tag = el.tag.split("}", 1)[1]
        etree.cleanup_namespaces(node)
        return to_string(node)

    def write(self, domain):
        """Put this element into ``domain`` (replacing the old one)."""
        metadata = domain.find("./metadata")
        if metadata is not None:
            for old in metadata.findall(_q("guest")):
                metadata.remove(old)
        if self.is_empty():
            if metadata is not None and len(metadata) == 0:
                domain.node.remove(metadata)
            return
        if metadata is None:
            metadata = etree.Element("metadata")
            anchor = domain.find("./uuid") if domain.find("./uuid") is not None else domain.find("./name")
            if anchor is not None:
                anchor.addnext(metadata)
            else:
                domain.node.insert(0, metadata)
        metadata.append(copy.deepcopy(self.node))


# ---------------------------------------------------------------------------
# facts
# ---------------------------------------------------------------------------
def disk_facts(domain, resolve_volume=None):
    out = []
    for disk in domain.disks:
        out.append({
            "target": disk.target,
            "device": disk.device or "disk",
            "bus": disk.bus,
            "path": disk.path(resolve_volume),
            "format": disk.format,
        })
    return out


def tpm_facts(domain):
    """``{model, version}`` of the guest's TPM, or ``None``."""
    tpm = (list(domain.tpms) or [None])[0]
    return None if tpm is None else {"model": tpm.model, "version": tpm.version}


def interface_facts(domain):
    out = []
    for nic in domain.interfaces:
        kind, name = nic.source
        out.append({
            "mac": nic.normalized_mac(),
            "type": nic.type,
            "network": name if kind == "network" else None,
            "bridge": name if kind == "bridge" else None,
            "direct": name if kind == "direct" else None,
            "model": nic.model,
        })
    return out
