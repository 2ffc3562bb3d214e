# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt domain XML model and the desired-state builder of ``kvm_guest``.

Connection-free: everything here works on XML only, so it is unit tested
with golden files and libvirt's ``test:///default`` driver.

* :class:`Domain` and its devices (:class:`DiskDevice`, :class:`InterfaceDevice`,
  :class:`GraphicsDevice`, :class:`CharDevice`, :class:`ControllerDevice`) are
  declarative views on the XML (``_xml.XMLProperty``). Whatever they do not
  model is kept as it is.
* :class:`GuestMetadata` is the collection's own ``<metadata>`` element
  (tags, the volumes created for the guest, the cloud-init seed digests).
* :class:`GuestSpec` is the user's normalized request (``None`` = not given).
* :class:`DomainBuilder` applies a spec *on top of* a parsed domain: the
  UUID, MACs, PCI addresses, controllers and everything else libvirt added
  are carried over. It records a :class:`Change` for each user-specified
  value that differs, keyed by option path (``memory``,
  ``interfaces[0].model``, ``disks[vdb]``), and nothing else.
* :func:`overlay` merges the ``xml`` option into a domain.

Device identity
  * disk: the target device (``vda``). A disk given without ``target``
    matches an existing disk with the same source; otherwise it gets the
    first free target of its bus (``vd*`` virtio, ``sd*`` sata/scsi, ``hd*`` ide).
  * interface: the MAC address when the user gives one. An interface
    without a MAC matches by position among the interfaces with the same
    source (the same network, bridge or host device) that no MAC claimed:
    the second interface on network ``lab`` in the list is the second
    existing interface on ``lab``. So a guest defined without MACs keeps
    the MACs libvirt generated and never reports a change for them.
  * cloud-init seed: the cdrom whose source is the seed volume's path.
"""

from __future__ import annotations

import copy
import os
import re

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
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

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
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


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def norm_path(path):
    if not path:
        return None
    return os.path.normpath(path)


def normalize_mac(mac, option="mac"):
    """``52-54-00-AA-BB-CC`` -> ``52:54:00:aa:bb:cc``; invalid or multicast MACs raise."""
    text = str(mac).strip()
    if not MAC_RE.match(text):
        raise InvalidArgument(option, "'%s' is not a valid MAC address (expected six hex pairs such as 52:54:00:12:34:56)" % mac)
    text = text.replace("-", ":").lower()
    if int(text[:2], 16) & 1:
        raise InvalidArgument(option, "'%s' is a multicast MAC address; a NIC needs a unicast one (even first octet, such as 52:...)" % mac)
    if text == "00:00:00:00:00:00":
        raise InvalidArgument(option, "'%s' is not a usable MAC address" % mac)
    return text


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
        return dict(digest=node.get("digest"), pool=node.get("pool"), volume=node.get("volume"), path=node.get("path"), files=files)

    @seed.setter
    def seed(self, seed):
        node = self._child("seed")
        if node is not None:
            self.node.remove(node)
        if seed:
            node = self._child("seed", create=True)
            for key in ("digest", "pool", "volume", "path"):
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
# the user's request, normalized
# ---------------------------------------------------------------------------
class DiskSpec:
    """One entry of ``disks`` (or the seed cdrom), resolved to a path.

    ``user`` holds what the user gave, for diffs (``pool``/``volume`` or ``path``, ``size``...).
    ``bus``/``format``/``target`` are ``None`` when not given (defaults apply to new disks only,
    ``default_bus``/``default_format`` hold them).
    """

    def __init__(self, index=None, device="disk", path=None, source_type="file", bus=None, fmt=None,
                 target=None, user=None, default_bus=None, default_format=None, seed=False):
        self.index = index
        self.device = device
        self.path = norm_path(path)
        self.source_type = source_type
        self.bus = bus
        self.format = fmt
        self.target = target
        self.user = user or {}
        self.default_bus = default_bus
        self.default_format = default_format
        self.seed = seed

    @property
    def option(self):
        return "disks[%d]" % self.index if self.index is not None else "cloud_init"

    def effective_bus(self, machine):
        if self.bus:
            return self.bus
        if self.default_bus:
            return self.default_bus
        return cdrom_bus(machine) if self.device == "cdrom" else "virtio"


class NicSpec:
    def __init__(self, index, kind, source, model=None, mac=None):
        self.index = index
        self.kind = kind
        self.source = source
        self.model = model
        self.mac = mac

    def user(self):
        out = {self.kind: self.source, "model": self.model or "virtio"}
        if self.mac:
            out["mac"] = self.mac
        return out


class GraphicsSpec:
    def __init__(self, gtype, listen=None, password=None):
        self.type = gtype
        self.listen = listen
        self.password = password


class SeedSpec:
    """The cloud-init seed: its volume path, per-file digests and overall digest."""

    def __init__(self, pool, volume, path, digest, files):
        self.pool = pool
        self.volume = volume
        self.path = norm_path(path)
        self.digest = digest
        self.files = files  # {file name: digest}
        self.target = None

    def record(self):
        return dict(digest=self.digest, pool=self.pool, volume=self.volume, path=self.path, files=dict(self.files))


class GuestSpec:
    """Everything the user asked for, normalized; ``None`` means "not specified"."""

    def __init__(self, name):
        self.name = name
        self.virt_type = None
        self.machine = None
        self.arch = None
        self.memory = None       # MiB
        self.max_memory = None   # MiB
        self.vcpus = None
        self.max_vcpus = None
        self.cpu_mode = None
        self.cpu_model = None
        self.firmware = None
        self.secure_boot = None
        self.kernel = None       # "" removes direct kernel boot
        self.initrd = None
        self.cmdline = None
        self.disks = None        # list of DiskSpec (exhaustive when not None)
        self.interfaces = None   # list of NicSpec (exhaustive when not None)
        self.graphics = None
        self.console_log = None
        self.tags = None
        self.seed = None         # SeedSpec
        self.created_volumes = []  # (pool, name, path) created by this run
        self.xml = None          # parsed <domain> element of the xml option
        self.mac_factory = None  # callable returning a new MAC for new interfaces (None: leave to libvirt)
        self.resolve_machine = None  # callable: machine alias -> canonical name
        self.resolve_volume = None   # callable: (pool, volume) -> path, for type='volume' disks


# ---------------------------------------------------------------------------
# changes
# ---------------------------------------------------------------------------
class Change:
    """One difference between the actual and the desired guest."""

    __slots__ = ("path", "before", "after", "kind", "secret", "data")

    def __init__(self, path, before, after, kind=CONFIG, secret=False, data=None):
        self.path = path
        self.before = before
        self.after = after
        self.kind = kind
        self.secret = secret
        self.data = data or {}

    def __repr__(self):
        return "Change(%s: %r -> %r, %s)" % (self.path, "***" if self.secret else self.before,
                                             "***" if self.secret else self.after, self.kind)


# ---------------------------------------------------------------------------
# the xml option
# ---------------------------------------------------------------------------
class OverlayChange:
    """A value the ``xml`` option set; re-read after the structured options ran."""

    def __init__(self, label, node, attr, before, kind):
        self.label = label
        self.node = node
        self.attr = attr
        self.before = before
        self.kind = kind  # "attr", "text" or "element"

    def current(self, root):
        if not _is_attached(self.node, root):
            return None
        if self.kind == "attr":
            return self.node.get(self.attr)
        if self.kind == "text":
            return (self.node.text or "").strip() or None
        return etree.tostring(self.node, encoding="unicode").strip()


def _device_label(node, index):
    if node.tag == "disk":
        dev = node.find("target")
        if dev is not None and dev.get("dev"):
            return "disk[%s]" % dev.get("dev")
    if node.tag == "interface":
        mac = node.find("mac")
        if mac is not None and mac.get("address"):
            return "interface[%s]" % mac.get("address").lower()
    return "%s[%d]" % (node.tag, index)


def _match_child(base, child, position, in_devices):
    """The element of ``base`` that ``child`` (the ``position``-th of its tag in the xml option) updates."""
    same = _children(base, child.tag)
    if in_devices and child.tag == "disk":
        dev = child.find("target")
        if dev is not None and dev.get("dev"):
            for cand in same:
                t = cand.find("target")
                if t is not None and t.get("dev") == dev.get("dev"):
                    return cand
            return None
    if in_devices and child.tag == "interface":
        mac = child.find("mac")
        if mac is not None and mac.get("address"):
            for cand in same:
                m = cand.find("mac")
                if m is not None and (m.get("address") or "").lower() == mac.get("address").lower():
                    return cand
            return None
    if in_devices and child.tag == "controller":
        same = [c for c in same if c.get("type") == child.get("type")
                and (child.get("index") is None or c.get("index") == child.get("index"))]
        if child.get("index") is not None:
            return same[0] if same else None
    if in_devices and child.tag == "graphics":
        same = [c for c in same if c.get("type") == child.get("type")]
        position = 0
    if position < len(same):
        return same[position]
    return None


def overlay(base, src, label="", changes=None):
    """Merge element ``src`` (from the ``xml`` option) into ``base``, in place.

    Attributes and text of ``src`` are set on ``base``; child elements are
    matched (devices by identity, others by tag and position) and merged
    recursively, or appended when there is no match. Nothing is removed.
    Returns the list of :class:`OverlayChange`.
    """
    if changes is None:
        changes = []
    if _same_quantity(base, src):
        return changes  # <memory unit='MiB'>1024</memory> is libvirt's <memory unit='KiB'>1048576</memory>
    for key, value in src.attrib.items():
        old = base.get(key)
        if old != value:
            changes.append(OverlayChange("%s@%s" % (label, key), base, key, old, "attr"))
            base.set(key, value)
    text = (src.text or "").strip()
    if text and (base.text or "").strip() != text:
        changes.append(OverlayChange(label or "/", base, None, (base.text or "").strip() or None, "text"))
        base.text = text
    positions = {}
    in_devices = base.tag == "devices"
    for child in src:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        position = positions.get(child.tag, 0)
        positions[child.tag] = position + 1
        tag = child.tag
        if tag.startswith("{"):
            tag = tag.split("}", 1)[1]
        if in_devices:
            child_label = "%s/%s" % (label, _device_label(child, position))
        else:
            child_label = "%s/%s" % (label, tag) if position == 0 else "%s/%s[%d]" % (label, tag, position)
        match = _match_child(base, child, position, in_devices)
        if match is None:
            new = copy.deepcopy(child)
            base.append(new)
            changes.append(OverlayChange(child_label, new, None, None, "element"))
        else:
            overlay(match, child, child_label, changes)
    return changes


def _same_quantity(base, src):
    """Whether two ``<x unit=...>N</x>`` elements are the same size in different units."""
    if src.get("unit") is None or len(src) or set(src.attrib) - {"unit"}:
        return False
    try:
        a = int((src.text or "").strip()) * (unit_factor(src.get("unit")) or 0)
        b = int((base.text or "").strip()) * (unit_factor(base.get("unit") or "KiB") or 0)
    except ValueError:
        return False
    return a > 0 and a == b


def _redact(text):
    """Hide passwords inside XML snippets of the ``xml`` option's diff."""
    if text is None:
        return None
    return re.sub(r"(passwd|password)=(['\"]).*?\2", r"\1=\2********\2", text)


# ---------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------
class DomainBuilder:
    """Apply a :class:`GuestSpec` on top of a domain and record the changes.

    ``actual`` is the parsed persistent definition (``None`` for a new guest).
    The builder edits a copy: :attr:`domain` is the desired definition, and
    :attr:`changes` lists what differs, for the user-specified values only.
    """

    def __init__(self, actual, spec, use_overlay=True):
        self.actual = actual
        self.spec = spec
        self.new = actual is None
        self.changes = []
        self.overlay_changes = []
        self.use_overlay = use_overlay
        if self.new:
            self.domain = self._new_base()
        else:
            self.domain = actual.copy()

    # -- bookkeeping ---------------------------------------------------------
    def change(self, path, before, after, kind=CONFIG, secret=False, data=None):
        self.changes.append(Change(path, before, after, kind, secret, data))

    def compare(self, path, desired, actual, kind=CONFIG, secret=False, data=None):
        """Record a change when ``desired`` (not ``None``) differs from ``actual``."""
        if desired is None or desired == actual:
            return False
        self.change(path, None if self.new else actual, desired, kind, secret, data)
        return True

    # -- entry point -----------------------------------------------------------
    def build(self):
        """Return ``(desired domain, changes)``.

        With the ``xml`` option on an existing guest, two passes keep the
        structured options in charge: the changes of the structured options
        are computed against the guest as it is, and they are applied on top
        of the guest with the ``xml`` option merged in (so they win where
        both set a value); the ``xml`` option's own changes are what it
        leaves different in the result.
        """
        if self.new or self.spec.xml is None or not self.use_overlay:
            self._apply_spec()
            return self.domain, self.changes
        factory = self.spec.mac_factory
        self.spec.mac_factory = None
        try:
            plain = DomainBuilder(self.actual, self.spec, use_overlay=False)
            plain._apply_spec()
        finally:
            self.spec.mac_factory = factory
        self._overlay_existing(self.spec.xml)
        base = self.domain.copy()
        self.actual, original = base, self.actual
        try:
            self._apply_spec()
        finally:
            self.actual = original
        written = dict((c.path, c) for c in self.changes)
        for change in plain.changes:
            if change.path in written and written[change.path].data:
                change.data = written[change.path].data  # e.g. the MAC generated for a new interface
        self.changes = plain.changes
        self._overlay_diff()
        return self.domain, self.changes

    def _apply_spec(self):
        spec = self.spec
        dom = self.domain
        if self.new:
            dom.name = spec.name
        self._virt_type()
        self._machine()
        self._memory()
        self._vcpus()
        self._cpu()
        self._firmware()
        self._boot()
        self._disks()
        self._interfaces()
        self._graphics()
        self._console()
        self._metadata()
        if self.new:
            self._new_defaults()

    # -- new guests ---------------------------------------------------------
    def _new_base(self):
        spec = self.spec
        if spec.xml is not None:
            node = copy.deepcopy(spec.xml)
            for tag in ("uuid",):
                old = node.find(tag)
                if old is not None and not (old.text or "").strip():
                    node.remove(old)
            dom = Domain(node)
        else:
            dom = Domain()
        if dom.name is None:
            dom.name = spec.name
        if dom.find("./features") is None:
            dom.acpi = True   # ACPI: the power button of graceful shutdowns
            dom.apic = True
        if dom.virt_type is None:
            dom.virt_type = spec.virt_type or "kvm"
        if dom.os_type is None:
            dom.os_type = "hvm"
        if dom.arch is None and spec.arch:
            dom.arch = spec.arch
        if dom.machine is None:
            dom.machine = spec.machine or "q35"
        return dom

    def _new_defaults(self):
        """What a new guest gets besides the user's options (like virt-install)."""
        dom = self.domain
        spec = self.spec
        if dom.on_poweroff is None:
            dom.on_poweroff = "destroy"
        if dom.on_reboot is None:
            dom.on_reboot = "restart"
        if dom.on_crash is None:
            dom.on_crash = "destroy"
        if dom.find("./vcpu") is None:
            dom.set_vcpus(1, 1)
        devices = dom.devices_node()
        # a serial console: to the log file, else a pty for `virsh console`
        if spec.console_log is None and not len(dom.serials) and not len(dom.consoles):
            serial = etree.Element("serial", type="pty")
            etree.SubElement(serial, "target", port="0")
            dom.add_device(serial)
            console = etree.Element("console", type="pty")
            etree.SubElement(console, "target", type="serial", port="0")
            dom.add_device(console)
        # guest agent channel (address discovery, graceful shutdown through the agent)
        if not any(c.get("type") == "unix" and c.find("target") is not None
                   and c.find("target").get("name") == "org.qemu.guest_agent.0" for c in devices.findall("channel")):
            channel = etree.Element("channel", type="unix")
            etree.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
            dom.add_device(channel)
        if not devices.findall("rng"):
            rng = etree.Element("rng", model="virtio")
            etree.SubElement(rng, "backend", model="random").text = "/dev/urandom"
            dom.add_device(rng)
        # spare PCIe root ports so that devices can be hot-plugged on q35
        if machine_family(dom.machine) == "q35":
            ports = [c for c in dom.controllers if c.type == "pci" and c.model == "pcie-root-port"]
            if not ports:
                if not any(c.type == "pci" and c.model == "pcie-root" for c in dom.controllers):
                    dom.add_device(etree.Element("controller", type="pci", index="0", model="pcie-root"))
                for _i in range(Q35_ROOT_PORTS):
                    dom.add_device(etree.Element("controller", type="pci", model="pcie-root-port"))

    # -- the xml option on an existing guest ----------------------------------
    def _overlay_existing(self, xml):
        src = copy.deepcopy(xml)
        for tag in ("name",):
            node = src.find(tag)
            if node is not None:
                src.remove(node)
        uuid = src.find("uuid")
        if uuid is not None:
            if (uuid.text or "").strip().lower() != (self.domain.uuid or "").lower():
                raise InvalidArgument("xml", "the uuid %s differs from the existing guest's %s; a guest's uuid cannot change"
                                      % ((uuid.text or "").strip(), self.domain.uuid))
            src.remove(uuid)
        self.overlay_changes = overlay(self.domain.node, src, "")

    def _overlay_diff(self):
        root = self.domain.node
        kept = []
        for oc in self.overlay_changes:
            after = oc.current(root)
            if after == oc.before:
                continue  # a structured option set it back
            kept.append(oc)
            secret = oc.kind == "attr" and oc.attr in ("passwd", "password")
            before = oc.before
            if oc.kind == "element":
                after = _redact(after)
            self.change("xml" + oc.label, before, after, CONFIG, secret=secret)
        self.overlay_changes = kept

    # -- simple values --------------------------------------------------------
    def _virt_type(self):
        desired = self.spec.virt_type
        if desired is None:
            return
        actual = None if self.new else self.actual.virt_type
        if self.new:
            if self.domain.virt_type != desired:
                self.domain.virt_type = desired
            self.change("virt_type", None, desired)
        elif self.compare("virt_type", desired, actual):
            self.domain.virt_type = desired

    def _canonical_machine(self, name):
        if not name:
            return None
        if self.spec.resolve_machine:
            return self.spec.resolve_machine(name) or name
        return name

    def _machine(self):
        desired = self.spec.machine
        if desired is None:
            return
        if self.new:
            self.domain.machine = desired
            self.change("machine", None, desired)
            return
        actual = self.actual.machine
        if self._canonical_machine(desired) == self._canonical_machine(actual):
            return
        if actual and machine_family(self._canonical_machine(desired)) != machine_family(self._canonical_machine(actual)):
            raise InvalidArgument(
                "machine", "cannot change the machine type of the existing guest '%s' from '%s' to '%s': the two "
                "chipsets have different buses and device addresses; define a new guest instead" % (self.spec.name, actual, desired)
            )
        self.change("machine", actual, desired)
        self.domain.machine = desired

    def _memory(self):
        spec = self.spec
        self._value_with_maximum("memory", spec.memory, spec.max_memory, self._actual_or_none("memory_mib"),
                                 self._actual_or_none("max_memory_mib"), MEMORY, self.domain.set_memory)

    def _vcpus(self):
        spec = self.spec
        maximum = self._value_with_maximum("vcpus", spec.vcpus, spec.max_vcpus, self._actual_or_none("vcpus"),
                                           self._actual_or_none("max_vcpus"), VCPUS, self.domain.set_vcpus)
        if maximum is not None:
            self._check_topology(maximum)

    def _actual_or_none(self, attr):
        return None if self.new else getattr(self.actual, attr)

    def _value_with_maximum(self, name, spec_cur, spec_max, act_cur, act_max, kind, write):
        """Plan a current value and its maximum (memory, vcpus); ``write(cur, maximum)`` sets both.

        Returns the maximum when an existing definition was rewritten, else None.
        """
        if spec_cur is None and spec_max is None:
            return None
        max_name = "max_" + name
        if self.new:
            cur = spec_cur if spec_cur is not None else spec_max
            maximum = spec_max if spec_max is not None else cur
            write(cur, maximum)
            if spec_cur is not None:
                self.change(name, None, cur, kind)
            if spec_max is not None:
                self.change(max_name, None, maximum)
            return None
        maximum = spec_max
        if maximum is None:
            maximum = max(act_max or 0, spec_cur or 0)
        cur = spec_cur if spec_cur is not None else min(act_cur or maximum, maximum)
        changed = False
        if maximum != act_max:
            self.change(max_name, act_max, maximum)
            changed = True
        if cur != act_cur:
            self.change(name, act_cur, cur, kind)
            changed = True
        if not changed:
            return None
        write(cur, maximum)
        return maximum

    def _check_topology(self, maximum):
        topo = self.domain.find("./cpu/topology")
        if topo is None:
            return
        try:
            product = 1
            for key in ("sockets", "dies", "cores", "threads"):
                product *= int(topo.get(key) or 1)
        except ValueError:
            return
        if product != maximum:
            raise InvalidArgument(
                "max_vcpus", "the guest's CPU topology (%s) gives %d vCPUs, not %d; change the topology "
                "in the xml option to match" % (", ".join("%s=%s" % kv for kv in sorted(topo.attrib.items())), product, maximum)
            )

    def _cpu(self):
        spec = self.spec
        dom = self.domain
        act_mode = None if self.new else self.actual.cpu_mode
        act_model = None if self.new else self.actual.cpu_model
        if spec.cpu_mode is not None and (self.new or spec.cpu_mode != act_mode):
            self.change("cpu_mode", act_mode, spec.cpu_mode)
            cpu = dom.ensure("./cpu")
            for key in ("match", "check"):
                cpu.attrib.pop(key, None)
            for child in list(cpu):
                if child.tag in ("model", "vendor", "feature"):
                    cpu.remove(child)
            cpu.set("mode", spec.cpu_mode)
            if spec.cpu_mode == "custom":
                cpu.set("match", "exact")
                if spec.cpu_model is not None:
                    model = etree.Element("model", fallback="allow")
                    model.text = spec.cpu_model
                    cpu.insert(0, model)
            if spec.cpu_model is not None and act_model != spec.cpu_model:
                self.change("cpu_model", act_model, spec.cpu_model)
            return
        if spec.cpu_model is not None and (self.new or spec.cpu_model != act_model):
            self.change("cpu_model", act_model, spec.cpu_model)
            cpu = dom.ensure("./cpu")
            cpu.set("mode", "custom")
            cpu.set("match", cpu.get("match") or "exact")
            model = cpu.find("model")
            if model is None:
                model = etree.Element("model", fallback="allow")
                cpu.insert(0, model)
            model.text = spec.cpu_model

    def _firmware(self):
        spec = self.spec
        dom = self.domain
        act_fw = None if self.new else self.actual.firmware
        act_sb = None if self.new else self.actual.secure_boot
        if spec.firmware is not None and (self.new or spec.firmware != act_fw):
            self.change("firmware", act_fw, spec.firmware)
            os_node = dom.ensure("./os")
            if not self.new:
                # the loader and NVRAM template of the other firmware must go
                for tag in ("loader", "nvram"):
                    old = os_node.find(tag)
                    if old is not None:
                        os_node.remove(old)
            if spec.firmware == "uefi":
                dom.firmware_attr = "efi"
                if not spec.secure_boot and dom.secure_boot_feature is None:
                    # else libvirt may pick the firmware with enrolled keys (its highest priority)
                    dom.secure_boot_feature = "no"
                    self._order_os_firmware()
            else:
                dom.firmware_attr = None
                dom.remove("./os/firmware")
        if spec.secure_boot is not None:
            desired_fw = spec.firmware or act_fw or "bios"
            if desired_fw != "uefi":
                return  # validated earlier: secure_boot needs firmware: uefi
            if self.new or spec.secure_boot != act_sb:
                self.change("secure_boot", act_sb, spec.secure_boot)
                os_node = dom.ensure("./os")
                loader = os_node.find("loader")
                if loader is not None and loader.get("secure") is not None:
                    # an explicit loader of the other kind: let libvirt pick the firmware again
                    os_node.remove(loader)
                    nvram = os_node.find("nvram")
                    if nvram is not None and nvram.get("template"):
                        nvram.attrib.pop("template")
                dom.firmware_attr = "efi"
                if spec.secure_boot:
                    dom.secure_boot_feature = "yes"
                    dom.enrolled_keys_feature = "yes"
                    dom.smm = "on"
                else:
                    dom.secure_boot_feature = "no"
                    dom.remove("./os/firmware/feature[@name='enrolled-keys']")
                self._order_os_firmware()

    def _order_os_firmware(self):
        """libvirt wants <os><type/> first; keep <firmware> right after it."""
        os_node = self.domain.find("./os")
        fw = os_node.find("firmware") if os_node is not None else None
        type_node = os_node.find("type") if os_node is not None else None
        if fw is not None and type_node is not None:
            type_node.addnext(fw)

    def _boot(self):
        spec = self.spec
        dom = self.domain
        if spec.kernel == "":
            for key, prop in (("kernel", "kernel"), ("initrd", "initrd"), ("cmdline", "cmdline")):
                actual = None if self.new else getattr(self.actual, prop)
                if actual is not None:
                    self.change("boot." + key, actual, None)
                    setattr(dom, prop, None)
            return
        for key in ("kernel", "initrd", "cmdline"):
            desired = getattr(spec, key)
            if desired is None:
                continue
            actual = None if self.new else getattr(self.actual, key)
            if key != "cmdline":
                desired = norm_path(desired)
                actual = norm_path(actual)
            if self.new or desired != actual:
                self.change("boot." + key, actual, desired)
                setattr(dom, key, desired)

    # -- disks ------------------------------------------------------------------
    def _disk_path(self, disk):
        return disk.path(self.spec.resolve_volume)

    def _seed_paths(self):
        paths = set()
        if self.spec.seed is not None:
            paths.add(self.spec.seed.path)
        if not self.new:
            recorded = self.actual.metadata().seed
            if recorded and recorded.get("path"):
                paths.add(norm_path(recorded["path"]))
        return paths

    def _xml_targets(self):
        if self.spec.xml is None:
            return set()
        out = set()
        for disk in self.spec.xml.findall("./devices/disk"):
            t = disk.find("target")
            if t is not None and t.get("dev"):
                out.add(t.get("dev"))
        return out

    def resolve_targets(self):
        """Give every desired disk (and the seed) a target; see the module docstring."""
        spec = self.spec
        actual_disks = [] if self.new else list(self.actual.disks)
        seed_paths = self._seed_paths()
        taken = {}  # target -> DiskSpec
        claimed = set()
        for d in spec.disks or []:
            if d.target:
                taken[d.target] = d
                claimed.add(d.target)
        # without a target: the existing disk with the same source
        for d in spec.disks or []:
            if d.target:
                continue
            for disk in actual_disks:
                if disk.target in claimed or self._disk_path(disk) in seed_paths:
                    continue
                if (disk.device or "disk") != d.device:
                    continue
                if self._disk_path(disk) == d.path:
                    d.target = disk.target
                    claimed.add(disk.target)
                    break
        used = set(claimed) | set(d.target for d in actual_disks if d.target) | self._xml_targets()
        machine = self.domain.machine
        if spec.seed is not None:
            for disk in actual_disks:
                if self._disk_path(disk) == spec.seed.path:
                    spec.seed.target = disk.target
                    break
        for d in spec.disks or []:
            if not d.target:
                d.target = next_free_target(d.effective_bus(machine), used)
                used.add(d.target)
        if spec.seed is not None and not spec.seed.target:
            spec.seed.target = next_free_target(cdrom_bus(machine), used)
            used.add(spec.seed.target)

    def _new_disk_node(self, d, bus):
        disk = DiskDevice(etree.Element("disk"))
        disk.type = d.source_type if d.path else "file"
        disk.device = d.device
        fmt = d.format or d.default_format or ("raw" if d.device == "cdrom" else None)
        if fmt or d.path:
            disk.driver_name = "qemu"
            if fmt:
                disk.format = fmt
        if d.path:
            disk.set_source(d.source_type, d.path)
        disk.target = d.target
        disk.bus = bus
        if d.device == "cdrom":
            disk.readonly = True
        return disk

    def _add_scsi_controller(self):
        if not any(c.type == "scsi" for c in self.domain.controllers):
            ctl = etree.Element("controller", type="scsi", model="virtio-scsi")
            self.domain.add_device(ctl)

    def _disks(self):
        spec = self.spec
        if spec.disks is None and spec.seed is None:
            return
        self.resolve_targets()
        dom = self.domain
        machine = dom.machine
        seed_paths = self._seed_paths()
        protected = self._xml_targets()
        desired_targets = set(d.target for d in spec.disks or [])
        # removals first, so that a target can move to another source
        if spec.disks is not None and not self.new:
            for disk in list(self.actual.disks):
                if disk.target in desired_targets or disk.target in protected:
                    continue
                if self._disk_path(disk) in seed_paths:
                    continue
                mine = dom.find_disk(disk.target)
                if mine is not None:
                    dom.disks.remove(mine)
                self.change("disks[%s]" % disk.target, disk.summary(self.spec.resolve_volume), None, DISK_DETACH,
                            data={"target": disk.target, "bus": disk.bus, "device": disk.device or "disk"})
        for d in spec.disks or []:
            self._disk(d, machine)
        if spec.seed is not None:
            self._seed_disk(machine)

    def _disk(self, d, machine):
        dom = self.domain
        path_key = "disks[%s]" % d.target
        existing = None if self.new else self.actual.find_disk(d.target)
        if existing is None:
            bus = d.effective_bus(machine)
            if bus == "scsi":
                self._add_scsi_controller()
            node = self._new_disk_node(d, bus)
            dom.add_device(node.node)
            after = dict(d.user)
            after.setdefault("device", d.device)
            after.setdefault("bus", bus)
            self.change(path_key, None, after, DISK_ATTACH, data={"target": d.target, "bus": bus, "device": d.device})
            return
        mine = dom.find_disk(d.target)
        act_device = existing.device or "disk"
        if act_device != d.device:
            # another kind of device on this target: replace it
            bus = d.bus or d.default_bus or existing.bus or d.effective_bus(machine)
            node = self._new_disk_node(d, bus)
            mine.node.addprevious(node.node)
            dom.disks.remove(mine)
            self.change(path_key + ".device", act_device, d.device, CONFIG)
            return
        act_path = self._disk_path(existing)
        path_changed = d.path != act_path
        if path_changed:
            kind = DISK_MEDIA if d.device == "cdrom" else CONFIG
            self.change(path_key + ".path", act_path, d.path, kind, data={"target": d.target})
            mine.set_source(d.source_type, d.path)
        if d.bus is not None and d.bus != existing.bus:
            self.change(path_key + ".bus", existing.bus, d.bus, CONFIG)
            mine.bus = d.bus
            mine.remove("./address")
            if d.bus == "scsi":
                self._add_scsi_controller()
        fmt = d.format if d.format is not None else (d.default_format if path_changed and d.path else None)
        if fmt is not None and fmt != existing.format:
            self.change(path_key + ".format", existing.format, fmt, DISK_MEDIA if (d.device == "cdrom" and path_changed) else CONFIG,
                        data={"target": d.target})
            mine.driver_name = mine.driver_name or "qemu"
            mine.format = fmt

    def _seed_disk(self, machine):
        seed = self.spec.seed
        dom = self.domain
        recorded = None if self.new else (self.actual.metadata().seed or {}).get("path")
        for disk in dom.disks:
            if self._disk_path(disk) == seed.path:
                break
            if recorded and self._disk_path(disk) == norm_path(recorded):
                # the seed moved (another pool): the same cdrom gets the new volume
                self.change("cloud_init.cdrom", disk.path(), seed.path, DISK_MEDIA, data={"target": disk.target})
                disk.set_source("file", seed.path)
                break
        else:
            d = DiskSpec(device="cdrom", path=seed.path, fmt="raw", target=seed.target, seed=True)
            bus = cdrom_bus(machine)
            dom.add_device(self._new_disk_node(d, bus).node)
            self.change("cloud_init.cdrom", None, seed.target, CONFIG, data={"target": seed.target, "bus": bus})

    # -- interfaces ---------------------------------------------------------------
    def match_interfaces(self):
        """Pair each desired interface with an existing one: ``{spec index: InterfaceDevice}``."""
        spec = self.spec
        actual = [] if self.new else list(self.actual.interfaces)
        matched = {}
        used = set()
        for n in spec.interfaces or []:
            if n.mac:
                for i, nic in enumerate(actual):
                    if i not in used and nic.normalized_mac() == n.mac:
                        matched[n.index] = nic
                        used.add(i)
                        break
        user_macs = set(n.mac for n in spec.interfaces or [] if n.mac)
        for n in spec.interfaces or []:
            if n.mac:
                continue
            for i, nic in enumerate(actual):
                if i in used or nic.normalized_mac() in user_macs:
                    continue
                if nic.source == (n.kind, n.source):
                    matched[n.index] = nic
                    used.add(i)
                    break
        unmatched = [nic for i, nic in enumerate(actual) if i not in used]
        return matched, unmatched

    def _xml_macs(self):
        if self.spec.xml is None:
            return set()
        return set((m.get("address") or "").lower() for m in self.spec.xml.findall("./devices/interface/mac"))

    def _interfaces(self):
        spec = self.spec
        if spec.interfaces is None:
            return
        dom = self.domain
        matched, unmatched = self.match_interfaces()
        protected = self._xml_macs()
        for nic in unmatched:
            mac = nic.normalized_mac()
            if mac in protected:
                continue
            mine = dom.find_interface(mac) if mac else None
            if mine is not None:
                dom.interfaces.remove(mine)
            self.change("interfaces[%s]" % (mac or "?"), nic.summary(), None, NIC_DETACH, data={"mac": mac})
        for n in spec.interfaces:
            existing = matched.get(n.index)
            key = "interfaces[%d]" % n.index
            if existing is None:
                node = InterfaceDevice(etree.Element("interface"))
                mac = n.mac or (spec.mac_factory() if spec.mac_factory else None)
                if mac:
                    node.mac = mac
                node.set_source(n.kind, n.source)
                node.model = n.model or "virtio"
                dom.add_device(node.node)
                self.change(key, None, n.user(), NIC_ATTACH, data={"mac": mac})
                continue
            mine = dom.find_interface(existing.normalized_mac())
            kind, name = existing.source
            if (kind, name) != (n.kind, n.source):
                if kind == n.kind:
                    self.change("%s.%s" % (key, n.kind), name, n.source, NIC_UPDATE, data={"mac": existing.normalized_mac()})
                else:
                    self.change("%s.%s" % (key, kind), name, None, NIC_UPDATE, data={"mac": existing.normalized_mac()})
                    self.change("%s.%s" % (key, n.kind), None, n.source, NIC_UPDATE, data={"mac": existing.normalized_mac()})
                mine.set_source(n.kind, n.source)
            if n.model is not None and n.model != existing.model:
                self.change(key + ".model", existing.model, n.model, CONFIG)
                mine.model = n.model

    # -- graphics and console ---------------------------------------------------
    def _graphics(self):
        g = self.spec.graphics
        if g is None:
            return
        dom = self.domain
        existing = None if self.new else (list(self.actual.graphics) or [None])[0]
        act_type = existing.type if existing is not None else ("none" if not self.new else None)
        if g.type == "none":
            if existing is not None:
                self.change("graphics.type", act_type, "none")
                for node in list(dom.graphics):
                    dom.graphics.remove(node)
            elif self.new:
                self.change("graphics.type", None, "none")
            return
        if existing is None or existing.type != g.type:
            self.change("graphics.type", act_type, g.type)
            if g.listen is not None:
                self.change("graphics.listen", existing.listen if existing is not None else None, g.listen)
            if g.password:
                self.change("graphics.password", existing.passwd if existing is not None else None, g.password, CONFIG, secret=True)
            for node in list(dom.graphics):
                dom.graphics.remove(node)
            new = GraphicsDevice(etree.Element("graphics"))
            new.type = g.type
            new.autoport = "yes"
            if g.password:
                new.passwd = g.password
            if g.listen:
                new.listen = g.listen
            dom.add_device(new.node)
            return
        mine = list(dom.graphics)[0]
        if g.listen is not None and g.listen != existing.listen:
            self.change("graphics.listen", existing.listen, g.listen)
            mine.listen = g.listen
        if g.password is not None and (g.password or None) != existing.passwd:
            self.change("graphics.password", existing.passwd, g.password or None, GRAPHICS_PASSWORD, secret=True)
            mine.passwd = g.password or None

    def _console(self):
        path = self.spec.console_log
        if path is None:
            return
        dom = self.domain
        serials = [] if self.new else list(self.actual.serials)
        actual = None
        if serials and serials[0].type == "file":
            actual = norm_path(serials[0].source_path)
        if not self.new and actual == path:
            return
        self.change("console_log", actual, path)
        for node in list(dom.serials):
            dom.serials.remove(node)
        for node in list(dom.consoles):
            dom.consoles.remove(node)
        serial = etree.Element("serial", type="file")
        etree.SubElement(serial, "source", path=path)
        etree.SubElement(serial, "target", port="0")
        dom.add_device(serial)
        console = etree.Element("console", type="file")
        etree.SubElement(console, "source", path=path)
        etree.SubElement(console, "target", type="serial", port="0")
        dom.add_device(console)

    # -- metadata -----------------------------------------------------------------
    def _metadata(self):
        spec = self.spec
        meta = self.domain.metadata()
        before_xml = None if meta.node is None else etree.tostring(meta.node)
        if spec.tags is not None:
            actual = [] if self.new else self.actual.metadata().tags
            if (self.new and spec.tags) or (not self.new and sorted(set(actual)) != sorted(set(spec.tags))):
                self.change("tags", None if self.new else actual, list(spec.tags), METADATA)
                meta.tags = spec.tags
        for pool, name, path in spec.created_volumes:
            meta.add_volume(pool, name, path)
        if spec.seed is not None:
            recorded = None if self.new else self.actual.metadata().seed
            rec_files = (recorded or {}).get("files") or {}
            if recorded is None or recorded.get("digest") != spec.seed.digest:
                for fname, option in (("user-data", "user_data"), ("meta-data", "meta_data"), ("network-config", "network_config")):
                    before = rec_files.get(fname)
                    after = spec.seed.files.get(fname)
                    if before != after:
                        self.change("cloud_init." + option, _digest_label(before), _digest_label(after), SEED,
                                    secret=(option == "user_data"))
                if recorded is not None and not any(c.path.startswith("cloud_init.") and c.kind == SEED for c in self.changes):
                    self.change("cloud_init.digest", _digest_label(recorded.get("digest")), _digest_label(spec.seed.digest), SEED)
            if recorded is None or recorded != spec.seed.record():
                meta.seed = spec.seed.record()
        after_xml = None if meta.node is None else etree.tostring(meta.node)
        if before_xml != after_xml:
            meta.write(self.domain)


def _digest_label(digest):
    if not digest:
        return None
    return "digest:" + digest[:16]


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
