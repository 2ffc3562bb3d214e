# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device planning of :class:`_domain_builder.DomainBuilder`: disks (and the seed cdrom), interfaces, graphics, console.

A base class of the builder, kept in its own file so that each stays readable:
it uses the builder's ``spec``, ``actual``, ``domain``, ``new`` and ``change()``.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import (
    CONFIG, DISK_ATTACH, DISK_DETACH, DISK_MEDIA, GRAPHICS_PASSWORD, NIC_ATTACH, NIC_DETACH, NIC_UPDATE,
    DiskDevice, GraphicsDevice, InterfaceDevice, cdrom_bus, next_free_target, norm_path,
)
from ansible_collections.kvmops.virt.plugins.module_utils._guest_spec import DiskSpec
from ansible_collections.kvmops.virt.plugins.module_utils._xml import etree


class DeviceBuilder:
    """Disks, interfaces, graphics and console of the desired definition."""

    # -- disks ------------------------------------------------------------------
    def _disk_path(self, disk):
        return disk.path(self.spec.volume_path)

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
                self.change("disks[%s]" % disk.target, disk.summary(self.spec.volume_path), None, DISK_DETACH,
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
        """Pair each desired interface with an existing one: ``({spec index: InterfaceDevice}, [unmatched])``."""
        return match_interfaces(None if self.new else self.actual, self.spec.interfaces)

    def _next_new_mac(self):
        """The next pre-generated MAC for a new interface (``None``: libvirt picks one)."""
        return self._new_macs.pop(0) if self._new_macs else None

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
                mac = n.mac or self._next_new_mac()
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


def match_interfaces(actual, interfaces):
    """Pair desired interfaces (``NicSpec``) with those of ``actual`` (a ``Domain`` or ``None``).

    By MAC first, then by source for interfaces without a MAC. Returns
    ``({spec index: InterfaceDevice}, [unmatched InterfaceDevice])``.
    """
    actual = [] if actual is None else list(actual.interfaces)
    matched = {}
    used = set()
    for n in interfaces or []:
        if n.mac:
            for i, nic in enumerate(actual):
                if i not in used and nic.normalized_mac() == n.mac:
                    matched[n.index] = nic
                    used.add(i)
                    break
    user_macs = set(n.mac for n in interfaces or [] if n.mac)
    for n in interfaces or []:
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


def interfaces_needing_mac(actual, interfaces):
    """How many interfaces the build creates without a user-given MAC (each needs a generated one)."""
    matched, _unmatched = match_interfaces(actual, interfaces)
    return sum(1 for n in interfaces or [] if not n.mac and n.index not in matched)
