# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live operations on one guest: define, hot-plug, media, memory/vCPUs, power, undefine.

:class:`GuestOps` wraps one libvirt domain. Live changes that QEMU refuses are
not errors: they stay in the persistent definition for the next boot and add a
warning (:meth:`GuestOps.live_try`). Power operations follow the driver: ACPI
power button resent every ``ACPI_RESEND`` seconds until ``wait_timeout``, then
power off only with ``force``; undefine asks for NVRAM, TPM state, managed
save, snapshot and checkpoint metadata and drops the flags an older libvirt
does not know. Nothing here plans or compares: the manager (:mod:`_guest`)
decides what to run.
"""

from __future__ import annotations

import time

from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, libvirt
from ansible_collections.kvmops.virt.plugins.module_utils._domain_tuning import find_filesystem
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import NS, NS_PREFIX, Domain, GraphicsDevice, InterfaceDevice
from ansible_collections.kvmops.virt.plugins.module_utils._errors import OperationFailed
from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml, to_string

POLL = 0.5
DETACH_TIMEOUT = 30
ACPI_RESEND = 10


def define(client, name, xml):
    """Define (or redefine) the guest from ``xml``, validated against the schema when libvirt can; the new domain."""
    with client.errors("defining guest '%s'" % name):
        flags = flag("VIR_DOMAIN_DEFINE_VALIDATE")
        try:
            return client.conn.defineXMLFlags(xml, flags)
        except libvirt.libvirtError as e:
            if flags and e.get_error_code() in (flag("VIR_ERR_NO_SUPPORT"), flag("VIR_ERR_INVALID_ARG")):
                return client.conn.defineXML(xml)
            raise


def device_xml(node, drop_address=True):
    """A device element as XML for attach/update, without the address libvirt assigned (and its alias)."""
    clone = parse_xml(to_string(node))
    if drop_address:
        for tag in ("address", "alias"):
            for child in clone.findall(tag):
                clone.remove(child)
    return to_string(clone)


class GuestOps:
    """Operations on the libvirt domain ``dom`` of guest ``name``; warnings go to ``warnings``."""

    def __init__(self, client, dom, name, warnings, wait_timeout=0):
        self.client = client
        self.dom = dom
        self.name = name
        self.warnings = warnings
        self.wait_timeout = wait_timeout

    def current_live(self):
        secure = flag("VIR_DOMAIN_XML_SECURE")
        return Domain.from_xml(self.client.call("reading guest '%s'" % self.name, self.dom.XMLDesc, secure))

    # -- live changes -----------------------------------------------------------
    def live_try(self, what, func, *args):
        """Run a live change; a refusal leaves it for the next boot, with a warning."""
        try:
            with self.client.errors(what):
                func(*args)
            return True
        except OperationFailed as e:
            self.warnings.append("%s: %s; the change is in the persistent definition and takes effect at the next boot" % (what, e.msg))
            return False

    def set_memory(self, mib):
        self.live_try("setting the memory of running guest '%s'" % self.name, self.dom.setMemoryFlags, mib * 1024,
                      flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def set_vcpus(self, count):
        self.live_try("setting the vCPUs of running guest '%s'" % self.name, self.dom.setVcpusFlags, count,
                      flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _wait_gone(self, finder):
        deadline = time.time() + min(DETACH_TIMEOUT, max(self.wait_timeout, 1))
        while time.time() < deadline:
            if finder(self.current_live()) is None:
                return True
            time.sleep(POLL)
        return finder(self.current_live()) is None

    def detach_disk(self, target):
        disk = self.current_live().find_disk(target)
        if disk is None:
            return
        if self.live_try("detaching disk %s from running guest '%s'" % (target, self.name), self.dom.detachDeviceFlags,
                         to_string(disk.node), flag("VIR_DOMAIN_AFFECT_LIVE", 1)):
            if not self._wait_gone(lambda d: d.find_disk(target)):
                self.warnings.append("disk %s: the guest did not release it within %d s; it is removed from the persistent definition "
                                     "and goes away at the next boot" % (target, DETACH_TIMEOUT))

    def attach_disk(self, disk):
        """Hot-plug ``disk`` (a ``DiskDevice`` of the new definition) unless the running guest has its target."""
        if disk is None or self.current_live().find_disk(disk.target) is not None:
            return
        self.live_try("attaching disk %s to running guest '%s'" % (disk.target, self.name), self.dom.attachDeviceFlags,
                      device_xml(disk.node), flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def change_media(self, disk):
        if disk is None:
            return
        self.live_try("changing the media of cdrom %s of running guest '%s'" % (disk.target, self.name),
                      self.dom.updateDeviceFlags, device_xml(disk.node, drop_address=False), flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def detach_interface(self, mac):
        if not mac:
            return
        nic = self.current_live().find_interface(mac)
        if nic is None:
            return
        if self.live_try("detaching interface %s from running guest '%s'" % (mac, self.name), self.dom.detachDeviceFlags,
                         to_string(nic.node), flag("VIR_DOMAIN_AFFECT_LIVE", 1)):
            if not self._wait_gone(lambda d: d.find_interface(mac)):
                self.warnings.append("interface %s: the guest did not release it within %d s; it is removed from the persistent "
                                     "definition and goes away at the next boot" % (mac, DETACH_TIMEOUT))

    def attach_interface(self, mac, nic):
        """Hot-plug ``nic`` (an ``InterfaceDevice`` of the new definition) unless the running guest has ``mac``."""
        if nic is None:
            return
        if self.current_live().find_interface(mac) is not None:
            return
        self.live_try("attaching interface %s to running guest '%s'" % (mac, self.name), self.dom.attachDeviceFlags,
                      device_xml(nic.node), flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def update_interface_source(self, mac, nic):
        """Point the running guest's interface ``mac`` at the source of ``nic`` (of the new definition)."""
        live = self.current_live().find_interface(mac) if mac else None
        if nic is None or live is None:
            return
        new = parse_xml(to_string(live.node))
        kind, name = InterfaceDevice(parse_xml(to_string(nic.node))).source
        dev = InterfaceDevice(new)
        for child in new.findall("target"):
            new.remove(child)
        dev.set_source(kind, name)
        self.live_try("changing the source of interface %s of running guest '%s'" % (mac, self.name), self.dom.updateDeviceFlags,
                      to_string(new), flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def set_graphics_password(self, wanted):
        """The password of ``wanted`` (the new definition's first ``GraphicsDevice``) on the running guest."""
        live = list(self.current_live().graphics)
        if not live or wanted is None:
            return
        node = parse_xml(to_string(live[0].node))
        g = GraphicsDevice(node)
        g.passwd = wanted.passwd
        self.live_try("changing the graphics password of running guest '%s'" % self.name, self.dom.updateDeviceFlags,
                      to_string(node), flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def set_tags(self, tags):
        meta = self.current_live().metadata()
        meta.tags = tags
        self.live_try("updating the tags of running guest '%s'" % self.name, self.dom.setMetadata,
                      flag("VIR_DOMAIN_METADATA_ELEMENT", 2), meta.to_plain_xml(), NS_PREFIX, NS, flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def pin_vcpus(self, pins, unpinned):
        """Pin vCPUs of the running guest (``{vcpu: cpus}``); the ``unpinned`` vCPUs may run on every host CPU again."""
        count = self.client.host_cpu_count()
        every = tuple(range(count))
        for vcpu, cpus in sorted(list(pins.items()) + [(v, every) for v in unpinned]):
            cpumap = tuple(i in cpus for i in range(count))
            self.live_try("pinning vCPU %d of running guest '%s'" % (vcpu, self.name), self.dom.pinVcpuFlags, vcpu, cpumap,
                          flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def pin_emulator(self, cpus):
        """Place the emulator threads of the running guest on ``cpus`` (``None``: every host CPU)."""
        count = self.client.host_cpu_count()
        cpumap = tuple(cpus is None or i in cpus for i in range(count))
        self.live_try("pinning the emulator threads of running guest '%s'" % self.name, self.dom.pinEmulator, cpumap,
                      flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def attach_filesystem(self, tag, node):
        """Hot-plug the virtiofs share ``node`` (of the new definition) unless the running guest has ``tag``."""
        if node is None or find_filesystem(self.current_live(), tag) is not None:
            return
        self.live_try("attaching shared directory '%s' to running guest '%s'" % (tag, self.name), self.dom.attachDeviceFlags,
                      device_xml(node), flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def detach_filesystem(self, tag):
        node = find_filesystem(self.current_live(), tag)
        if node is None:
            return
        if self.live_try("detaching shared directory '%s' from running guest '%s'" % (tag, self.name), self.dom.detachDeviceFlags,
                         to_string(node), flag("VIR_DOMAIN_AFFECT_LIVE", 1)):
            if not self._wait_gone(lambda d: find_filesystem(d, tag)):
                self.warnings.append("filesystems[%s]: the guest did not release it within %d s; it is removed from the persistent "
                                     "definition and goes away at the next boot" % (tag, DETACH_TIMEOUT))

    def set_autostart(self, enabled):
        self.client.call("setting autostart of guest '%s'" % self.name, self.dom.setAutostart, 1 if enabled else 0)

    # -- power --------------------------------------------------------------------
    def start(self, paused=False):
        """Start the guest; returns the time it was started."""
        flags = flag("VIR_DOMAIN_START_PAUSED", 1) if paused else 0
        started_at = time.time()
        action = "starting guest '%s'" % self.name
        try:
            self.dom.createWithFlags(flags)
        except libvirt.libvirtError as e:
            if not (paused and e.get_error_code() in (flag("VIR_ERR_INVALID_ARG", 8), flag("VIR_ERR_NO_SUPPORT", 3))):
                raise self.client.translate(e, action)
            # a driver that cannot start paused: start, then pause at once
            self.client.call(action, self.dom.create)
            self.client.call("pausing guest '%s'" % self.name, self.dom.suspend)
        return started_at

    def resume(self):
        self.client.call("resuming guest '%s'" % self.name, self.dom.resume)

    def pause(self):
        self.client.call("pausing guest '%s'" % self.name, self.dom.suspend)

    def destroy(self):
        self.client.call("powering off guest '%s'" % self.name, self.dom.destroy)

    def wakeup(self):
        self.client.call("waking up guest '%s'" % self.name, self.dom.pMWakeup, 0)

    def is_off(self):
        state = self.client.call("reading the state of guest '%s'" % self.name, self.dom.state)[0]
        return state == flag("VIR_DOMAIN_SHUTOFF", 5)

    def _press_power_button(self):
        """ACPI power button; drivers without that mode get their default graceful shutdown."""
        action = "shutting down guest '%s'" % self.name
        try:
            self.dom.shutdownFlags(flag("VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN", 1))
        except libvirt.libvirtError as e:
            if e.get_error_code() not in (flag("VIR_ERR_INVALID_ARG", 8), flag("VIR_ERR_NO_SUPPORT", 3)):
                raise self.client.translate(e, action)
            self.client.call(action, self.dom.shutdownFlags, 0)

    def shutdown(self, force):
        """ACPI power button, wait up to wait_timeout; then power off with ``force``, else fail."""
        timeout = self.wait_timeout
        name = self.name
        if timeout == 0 and force:
            self.destroy()
            return
        state = self.client.call("reading the state of guest '%s'" % name, self.dom.state)[0]
        if state == flag("VIR_DOMAIN_PAUSED", 3):
            # a paused guest cannot see the power button
            self.client.call("resuming guest '%s' to shut it down" % name, self.dom.resume)
        elif state == flag("VIR_DOMAIN_PMSUSPENDED", 7):
            self.wakeup()
        start = time.time()
        last_press = None
        while True:
            if self.is_off():
                return
            now = time.time()
            if now - start >= timeout:
                break
            if last_press is None or now - last_press >= ACPI_RESEND:
                try:
                    self._press_power_button()
                except OperationFailed:
                    if self.is_off():
                        return
                    raise
                last_press = now
            time.sleep(POLL)
        if force:
            self.warnings.append("guest '%s' did not shut down within %d s after an ACPI shutdown request; it was powered off (force: true)"
                                 % (name, timeout))
            try:
                self.destroy()
            except OperationFailed:
                if not self.is_off():
                    raise
            return
        raise OperationFailed(
            "state: guest '%s' is still running %d s after an ACPI shutdown request (wait_timeout); nothing was forced. "
            "Set force: true to power it off after the timeout, or raise wait_timeout" % (name, timeout),
            uri=self.client.uri, option="wait_timeout",
        )

    def undefine(self):
        """Undefine with NVRAM, TPM state, managed save, snapshot and checkpoint metadata."""
        names = ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA", "VIR_DOMAIN_UNDEFINE_NVRAM",
                 "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", "VIR_DOMAIN_UNDEFINE_TPM")
        flags = [flag(n) for n in names if flag(n)]
        action = "undefining guest '%s'" % self.name
        while True:
            try:
                value = 0
                for f in flags:
                    value |= f
                self.dom.undefineFlags(value)
                return
            except libvirt.libvirtError as e:
                code = e.get_error_code()
                if flags and code in (flag("VIR_ERR_INVALID_ARG"), flag("VIR_ERR_NO_SUPPORT")):
                    flags.pop()  # drop the newest flag this libvirt may not know
                    continue
                raise self.client.translate(e, action)
