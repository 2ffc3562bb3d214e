# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The desired ``<domain>`` of ``kvm_guest``: a :class:`GuestSpec` applied on top of the actual one.

Pure logic: :class:`DomainBuilder` takes the parsed actual definition and a
resolved :class:`_guest_spec.GuestSpec` (volume paths, canonical machine names
and MACs for new interfaces are in the spec already) and returns the desired
definition and the list of :class:`_guest_spec.Change`. The devices (disks,
interfaces, graphics, console) are planned by :class:`_domain_devices.DeviceBuilder`;
:func:`overlay` merges the ``xml`` option.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.kvmops.virt.plugins.module_utils._domain_boot import BootBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_devices import DeviceBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_tuning import TuningBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import (
    CONFIG, MEMORY, METADATA, Q35_ROOT_PORTS, SEED, VCPUS, Domain, _children, _is_attached, machine_family, norm_path,
)
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._guest_spec import Change
from ansible_collections.kvmops.virt.plugins.module_utils._size import unit_factor
from ansible_collections.kvmops.virt.plugins.module_utils._xml import etree


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
class DomainBuilder(DeviceBuilder, BootBuilder, TuningBuilder):
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
        self._new_macs = list(spec.new_macs)  # consumed by the interfaces this build creates
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
        plain = DomainBuilder(self.actual, self.spec, use_overlay=False)
        plain._apply_spec()
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
        self._tpm()
        self._boot_order()
        self._tuning()
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

    def _machine(self):
        desired = self.spec.machine
        if desired is None:
            return
        if self.new:
            self.domain.machine = desired
            self.change("machine", None, desired)
            return
        actual = self.actual.machine
        if self.spec.canonical_machine(desired) == self.spec.canonical_machine(actual):
            return
        if actual and machine_family(self.spec.canonical_machine(desired)) != machine_family(self.spec.canonical_machine(actual)):
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
        self._drop_detached_volumes(meta)
        if spec.seed is not None:
            recorded = None if self.new else self.actual.metadata().seed
            rec_files = (recorded or {}).get("files") or {}
            if recorded is None or recorded.get("digest") != spec.seed.digest:
                for fname, option in (("user-data", "user_data"), ("meta-data", "meta_data"), ("network-config", "network_config")):
                    before = rec_files.get(fname)
                    after = (spec.seed.compare or spec.seed.files).get(fname)
                    if before != after:
                        label = spec.seed.labels.get(fname, after) if after is not None else None
                        self.change("cloud_init." + option, _digest_label(before), _digest_label(label), SEED,
                                    secret=(option == "user_data"))
                if recorded is not None and not any(c.path.startswith("cloud_init.") and c.kind == SEED for c in self.changes):
                    self.change("cloud_init.digest", _digest_label(recorded.get("digest")), _digest_label(spec.seed.digest), SEED)
            if recorded is None or recorded != spec.seed.record():
                meta.seed = spec.seed.record()
        after_xml = None if meta.node is None else etree.tostring(meta.node)
        if before_xml != after_xml:
            meta.write(self.domain)

    def _drop_detached_volumes(self, meta):
        """A volume no disk of the guest uses any more (the user detached it)
        is the user's again: ``remove_storage`` must not delete it."""
        paths = set()
        sources = set()
        for disk in self.domain.disks:
            paths.add(norm_path(disk.source_file or disk.source_dev))
            if disk.source_pool and disk.source_volume:
                sources.add((disk.source_pool, disk.source_volume))
        for rec in meta.volumes:
            if (rec["pool"], rec["name"]) in sources or (rec.get("path") and norm_path(rec["path"]) in paths):
                continue
            meta.remove_volume(rec["pool"], rec["name"])


def _digest_label(digest):
    if not digest:
        return None
    return "digest:" + digest[:16]
