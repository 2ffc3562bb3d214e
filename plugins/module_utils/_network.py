# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network manager behind the ``virtio_network`` module.

:class:`NetworkManager` reads the network through the client, asks
``_network_spec`` for the desired and actual specs and their differences,
plans the steps and applies them. The XML model is ``_network_xml``; the
guests attached to the network are read with the domain model
(``_domain_xml``).

Changes fall in two kinds. DHCP hosts and DNS host entries are changed with
libvirt's network update API (``virNetworkUpdate``), live and persistently,
without restarting the network. Everything else (forward mode, bridge,
addresses, DHCP range, MTU, domain) needs the network redefined and
restarted; a restart that would cut off running guests is done only with
``force``, otherwise the persistent definition is updated and the module
reports ``restart_required``.
"""

from __future__ import annotations

import re
import time

from ansible_collections.kvmops.virt.plugins.module_utils._client import flag
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain, InterfaceDevice
from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    OperationFailed,
    Refused,
    VirtError,
)
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._network_edit import apply_spec, build_network, update_ops
from ansible_collections.kvmops.virt.plugins.module_utils._network_spec import (
    EMPTY_SPEC,
    FORWARD_DEV_MODES,
    MANAGED_BRIDGE_MODES,
    actual_spec,
    compare,
    desired_spec,
    mode_of,
    updatable_families,
)
from ansible_collections.kvmops.virt.plugins.module_utils._network_xml import NetworkXML
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_network_name
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, parse_xml

STATES = ("present", "active", "inactive", "absent")

# Seconds to wait for a guest to release a hot-unplugged interface.
DETACH_TIMEOUT = 15.0

_COMMANDS = {"delete": "VIR_NETWORK_UPDATE_COMMAND_DELETE", "add-last": "VIR_NETWORK_UPDATE_COMMAND_ADD_LAST"}
_SECTIONS = {"ip-dhcp-host": "VIR_NETWORK_SECTION_IP_DHCP_HOST", "dns-host": "VIR_NETWORK_SECTION_DNS_HOST"}


def plug_xml(iface):
    """The XML to hot-plug ``iface`` again: runtime-only details removed.

    The MAC, model, PCI address and everything else the user configured
    stay, so the guest sees the same device in the same slot.
    """
    clean = iface.copy()
    clean.source_portid = None
    clean.source_bridge = None
    if clean.type == "network":
        clean.source_dev = None
        clean.source_mode = None
    target = clean.target_dev
    if target and re.match(r"^(vnet|macvtap|macvlan)\d+$", target):
        clean.remove("./target")
    if clean.alias and not clean.alias.startswith("ua-"):
        clean.remove("./alias")
    return clean.to_xml()


class Guest:
    """A running guest with interfaces on the network."""

    __slots__ = ("name", "interfaces")

    def __init__(self, name, interfaces):
        self.name = name
        self.interfaces = interfaces  # [(mac, plug XML)]


class NetworkManager(Manager):
    """Plans and applies the state of one libvirt network."""

    def __init__(self, module, client):
        super().__init__(module, client)
        self.name = self.params["name"]
        self.state = self.params.get("state") or "active"
        self.force = bool(self.params.get("force"))
        self.restart_required = False
        self.pending_changes = []
        self.reconnected_guests = []
        self.disconnected_guests = []
        self.net = None
        self.desired = None
        self._predicted = {}

    # -- reading -------------------------------------------------------------
    def _config_xml(self, net):
        """The persistent definition (the live one for a transient network)."""
        if not net.isPersistent():
            return self.client.call("reading network '%s'" % self.name, net.XMLDesc, 0)
        try:
            with self.client.errors("reading the definition of network '%s'" % self.name):
                return net.XMLDesc(flag("VIR_NETWORK_XML_INACTIVE", 1))
        except OperationFailed as e:
            # drivers without the flag (the test driver) have one definition
            if e.code in (flag("VIR_ERR_INVALID_ARG", None), flag("VIR_ERR_NO_SUPPORT", None)):
                return self.client.call("reading network '%s'" % self.name, net.XMLDesc, 0)
            raise

    def guests_using(self):
        """Running guests with an interface on this network, by name."""
        guests = []
        for name, text in self.client.domain_xmls(flag("VIR_CONNECT_LIST_DOMAINS_ACTIVE", 1)):
            interfaces = Domain.from_xml(text).interfaces
            ifaces = [(i.mac, plug_xml(i)) for i in interfaces if i.type == "network" and i.source_network == self.name]
            if ifaces:
                guests.append(Guest(name, ifaces))
        return sorted(guests, key=lambda g: g.name)

    def host_interface(self, name):
        """The host interface's type (``bridge``, ``ethernet``...); None when missing; "" when unknown."""
        try:
            with self.client.errors("looking up host interface '%s'" % name):
                iface = self.client.conn.interfaceLookupByName(name)
                text = iface.XMLDesc(0)
        except NotFound:
            return None
        except OperationFailed as e:
            if e.code == flag("VIR_ERR_NO_SUPPORT", None):
                return ""
            raise
        return parse_xml(text, "host interface XML").get("type") or ""

    def check_host_devices(self, desired):
        """The host devices the network names must exist (read-only lookups)."""
        mode = desired["mode"]
        if mode == "bridge":
            kind = self.host_interface(desired["bridge"])
            if kind is None:
                raise InvalidArgument(
                    "bridge",
                    "host bridge '%s' does not exist on uri '%s'; with mode bridge the bridge must exist already" % (desired["bridge"], self.client.uri),
                )
            if kind == "":
                self.warnings.append("cannot verify that host bridge '%s' exists: the libvirt interface driver is not available" % desired["bridge"])
            elif kind != "bridge":
                raise InvalidArgument("bridge", "host interface '%s' is not a bridge (libvirt reports its type as %s)" % (desired["bridge"], kind))
        if desired["interface"] and mode in ("macvtap",) + FORWARD_DEV_MODES:
            kind = self.host_interface(desired["interface"])
            if kind is None:
                raise InvalidArgument("interface", "host interface '%s' does not exist on uri '%s'" % (desired["interface"], self.client.uri))
            if kind == "":
                self.warnings.append("cannot verify that host interface '%s' exists: the libvirt interface driver is not available" % desired["interface"])

    # -- planning ------------------------------------------------------------
    def plan(self):
        check_network_name(self.name)
        if self.state not in STATES:
            raise InvalidArgument("state", "%r is not one of %s" % (self.state, ", ".join(STATES)))
        if self.state != "absent":
            self.desired = desired_spec(self.params)
        self.net = self.client.lookup_network(self.name)
        if self.state == "absent":
            self._plan_absent()
        elif self.net is None:
            self.check_host_devices(self.desired)
            self._plan_create()
        else:
            self.check_host_devices(self.desired)
            self._plan_update()

    def _refuse_if_used(self, guests, what):
        if guests and not self.force:
            raise Refused(
                "state: network '%s' is used by running guests (%s); %s it would cut them off. "
                "Set force: true to do it anyway" % (self.name, ", ".join(g.name for g in guests), what),
                option="state",
                details={"guests": [g.name for g in guests]},
            )

    def _plan_absent(self):
        net = self.net
        if net is None:
            self._predicted = {"state": "absent"}
            return
        active = bool(net.isActive())
        guests = self.guests_using() if active else []
        self._refuse_if_used(guests, "removing")
        self.diff.add("state", "active" if active else "inactive", "absent")
        if active:
            self.disconnected_guests = [g.name for g in guests]
            self.act("stop network '%s'" % self.name, lambda: self.client.call("stopping network '%s'" % self.name, net.destroy))
        if net.isPersistent():
            self.act("undefine network '%s'" % self.name, lambda: self.client.call("undefining network '%s'" % self.name, net.undefine))
        self._predicted = {"state": "absent"}

    def _plan_create(self):
        desired = self.desired
        model = build_network(self.name, desired)
        xml = model.to_xml()
        start = self.state == "active"
        self.diff.add("state", "absent", "active" if start else "inactive")
        for change in compare(desired, EMPTY_SPEC):
            self.diff.add(change.path, change.before, change.after)
        self.act("define network '%s'" % self.name, lambda: self._define_new(xml, start))
        autostart = self.params.get("autostart")
        if autostart:
            self.diff.add("autostart", False, True)
            self.act("enable autostart", lambda: self._set_autostart(True))
        self._predicted = {
            "state": "active" if start else "inactive",
            "uuid": None,
            "autostart": bool(autostart),
            "persistent": True,
            "bridge": model.bridge_name,
            "mode": desired["mode"],
        }

    def _plan_update(self):
        net = self.net
        desired = self.desired
        active = bool(net.isActive())
        persistent = bool(net.isPersistent())
        cfg_xml = self._config_xml(net)
        cfg_model = NetworkXML.from_xml(cfg_xml)
        cfg_spec = actual_spec(cfg_model)
        cfg_changes = compare(desired, cfg_spec)
        cfg_families = updatable_families(cfg_model, desired)
        cfg_redefine = not persistent or any(not c.updatable or c.family not in cfg_families for c in cfg_changes)

        to_stop = active and self.state == "inactive"
        to_start = not active and self.state == "active"
        stays_active = active and not to_stop
        guests = self.guests_using() if active else []
        if to_stop:
            self._refuse_if_used(guests, "stopping")

        restart_now = False
        live_changes = []
        live_ops = []
        live_xml = live_model = None
        if stays_active:
            live_xml = self.client.call("reading network '%s'" % self.name, net.XMLDesc, 0)
            live_model = NetworkXML.from_xml(live_xml)
            live_families = updatable_families(live_model, desired)
            live_changes = compare(desired, actual_spec(live_model))
            restart_paths = [c.path for c in live_changes if not c.updatable or c.family not in live_families]
            if restart_paths and guests and not self.force:
                self.restart_required = True
                self.pending_changes = restart_paths
                self.warnings.append(
                    "network '%s' is used by running guests (%s): the changes to %s need a restart of the network, which would cut them off. "
                    "The persistent definition has them and the running network is unchanged; they take effect when the network is "
                    "restarted. Set force: true to restart it now and reconnect the guests."
                    % (self.name, ", ".join(g.name for g in guests), ", ".join(restart_paths))
                )
                live_changes = [c for c in live_changes if c.updatable and c.family in live_families]
                live_ops = update_ops(live_model, desired, live_families)
            elif restart_paths:
                restart_now = True
            else:
                live_ops = update_ops(live_model, desired, live_families)

        # the diff: the definition first, then what changes only in the running network
        if to_stop:
            self.diff.add("state", "active", "inactive")
        if to_start:
            self.diff.add("state", "inactive", "active")
        if not persistent:
            self.diff.add("persistent", False, True)
        for change in cfg_changes:
            self.diff.add(change.path, change.before, change.after)
        cfg_paths = {c.path for c in cfg_changes}
        for change in live_changes:
            if change.path not in cfg_paths:
                self.diff.add(change.path, change.before, change.after)

        # the steps, in order: stop, definition, host updates, restart, start.
        # A stopped network takes a new definition at once; a running one
        # keeps it pending until its next start (or the restart below).
        if to_stop:
            self.disconnected_guests = [g.name for g in guests]
            self.act("stop network '%s'" % self.name, lambda: self.client.call("stopping network '%s'" % self.name, net.destroy))
        new_cfg_xml = None
        cfg_ops = []
        if cfg_redefine or (restart_now and cfg_changes):
            new_cfg_xml = apply_spec(cfg_model.copy(), desired, cfg_spec).to_xml()
        elif cfg_changes:
            cfg_ops = update_ops(cfg_model, desired, cfg_families)
        if restart_now:
            what = " with the new settings" if new_cfg_xml is not None else ""
            self.act("restart network '%s'%s" % (self.name, what), lambda: self._restart(new_cfg_xml, live_xml, cfg_xml))
            if guests:
                self.reconnected_guests = [g.name for g in guests]
                self.act("reconnect guests %s" % ", ".join(g.name for g in guests), lambda: self._reconnect(guests))
        else:
            if new_cfg_xml is not None:
                self.act("define network '%s' with the new settings" % self.name, lambda: self._define(new_cfg_xml))
            if cfg_ops and cfg_ops == live_ops:
                self._act_updates(cfg_ops, live=True, config=True)
            else:
                if live_ops:
                    self._act_updates(live_ops, live=True, config=False)
                if cfg_ops:
                    self._act_updates(cfg_ops, live=False, config=True)
        if to_start:
            self.act("start network '%s'" % self.name, lambda: self._start(cfg_xml if new_cfg_xml is not None else None))

        autostart = self.params.get("autostart")
        current_autostart = bool(net.autostart()) if persistent else False
        if autostart is not None and bool(autostart) != current_autostart:
            self.diff.add("autostart", current_autostart, bool(autostart))
            self.act("%s autostart" % ("enable" if autostart else "disable"), lambda: self._set_autostart(bool(autostart)))

        predicted_bridge = cfg_spec["bridge"]
        if new_cfg_xml is not None:
            predicted_bridge = NetworkXML.from_xml(new_cfg_xml).bridge_name
        if self.restart_required:
            predicted_bridge = live_model.bridge_name
        self._predicted = {
            "state": "active" if (stays_active or to_start) else "inactive",
            "uuid": cfg_model.uuid,
            "autostart": current_autostart if autostart is None else bool(autostart),
            "persistent": True,
            "bridge": predicted_bridge,
            "mode": desired["mode"],
        }

    def _act_updates(self, ops, live, config):
        where = " and ".join(w for w, on in (("live", live), ("persistent", config)) if on)
        summary = ", ".join("%s %s" % (op.command, op.section) for op in ops)
        self.act("update network '%s' (%s): %s" % (self.name, where, summary), lambda: self._update(ops, live, config))

    # -- applying ------------------------------------------------------------
    def _define_new(self, xml, start):
        with self.client.errors("defining network '%s'" % self.name):
            self.net = self.client.conn.networkDefineXML(xml)
        if not start:
            return
        try:
            with self.client.errors("starting network '%s'" % self.name):
                self.net.create()
        except Conflict:
            return  # another client started it first: it runs, as wanted
        except VirtError as e:
            try:
                self.net.undefine()
                left = "the new definition was removed again; nothing was left behind"
            except Exception as undo:  # pylint: disable=broad-except
                left = "removing the new definition failed too (%s); network '%s' is left defined and stopped" % (undo, self.name)
            raise OperationFailed("%s; %s" % (e.msg, left), code=e.code, uri=self.client.uri)

    def _define(self, xml):
        with self.client.errors("defining network '%s'" % self.name):
            self.net = self.client.conn.networkDefineXML(xml)

    def _update(self, ops, live, config):
        flags = 0
        if live:
            flags |= flag("VIR_NETWORK_UPDATE_AFFECT_LIVE", 1)
        if config:
            flags |= flag("VIR_NETWORK_UPDATE_AFFECT_CONFIG", 2)
        for op in ops:
            with self.client.errors("updating network '%s' (%s %s)" % (self.name, op.command, op.section)):
                self.net.update(flag(_COMMANDS[op.command], None), flag(_SECTIONS[op.section], None), op.index, op.xml, flags)

    def _start(self, previous_xml):
        """Start the network; when that fails, put back the definition we replaced."""
        try:
            with self.client.errors("starting network '%s'" % self.name):
                self.net.create()
        except VirtError as e:
            if previous_xml is None:
                raise
            try:
                self.net = self.client.conn.networkDefineXML(previous_xml)
                left = "the previous definition was restored; network '%s' stays stopped" % self.name
            except Exception as undo:  # pylint: disable=broad-except
                left = "restoring the previous definition failed too (%s); network '%s' is left stopped with the new definition" % (undo, self.name)
            raise OperationFailed("%s; %s" % (e.msg, left), code=e.code, uri=self.client.uri)

    def _restart(self, new_xml, live_xml, cfg_xml):
        """Stop the network, define ``new_xml`` (if any) and start it again.

        When that fails, the network is brought back as it was running,
        with its previous persistent definition.
        """
        self.client.call("stopping network '%s'" % self.name, self.net.destroy)
        try:
            if new_xml is not None:
                self._define(new_xml)
            with self.client.errors("restarting network '%s'" % self.name):
                self.net.create()
        except VirtError as e:
            try:
                self.net = self.client.conn.networkDefineXML(live_xml)
                self.net.create()
                if canonical(parse_xml(cfg_xml)) != canonical(parse_xml(live_xml)):
                    self.net = self.client.conn.networkDefineXML(cfg_xml)
                left = "network '%s' was started again as it was running before, with its previous persistent definition" % self.name
            except Exception as undo:  # pylint: disable=broad-except
                left = "restoring the previous network failed too (%s); network '%s' is left stopped" % (undo, self.name)
            raise OperationFailed("%s; %s" % (e.msg, left), code=e.code, uri=self.client.uri)

    def _reconnect(self, guests):
        """Plug the guests' interfaces into the restarted network again.

        A network restart deletes the bridge the guests' tap devices were
        on, and the recreated bridge does not get them back. For networks
        with a libvirt bridge, each interface is updated in place twice
        (virDomainUpdateDeviceFlags): to ``type='bridge'`` on the new bridge,
        which plugs the tap into it, and back to ``type='network'``, which
        takes a fresh network port. The guest notices nothing. Where that
        is refused, the interface is unplugged and plugged again (same MAC,
        model and PCI slot), which the guest sees as a NIC going and coming.
        """
        self.reconnected_guests = []
        bridge = NetworkXML.from_xml(self.client.call("reading network '%s'" % self.name, self.net.XMLDesc, 0)).bridge_name
        managed = self.desired["mode"] in MANAGED_BRIDGE_MODES
        for guest in guests:
            dom = self.client.lookup_domain(guest.name)
            if dom is None or not dom.isActive():
                continue  # stopped meanwhile: it connects again when it starts
            try:
                for mac, xml in guest.interfaces:
                    self._reconnect_interface(dom, guest.name, mac, xml, bridge if managed else None)
            except VirtError as e:
                self.disconnected_guests.append(guest.name)
                self.warnings.append("guest '%s' lost its link on network '%s' and could not be reconnected: %s" % (guest.name, self.name, e.msg))
                continue
            self.reconnected_guests.append(guest.name)

    def _reconnect_interface(self, dom, name, mac, xml, bridge):
        affect_live = flag("VIR_DOMAIN_AFFECT_LIVE", 1)
        what = "interface %s of guest '%s'" % (mac, name)
        try:
            if bridge:
                via_bridge = InterfaceDevice.from_xml(xml)
                via_bridge.type = "bridge"
                via_bridge.remove("./source")
                via_bridge.source_bridge = bridge
                with self.client.errors("plugging %s into bridge %s" % (what, bridge)):
                    dom.updateDeviceFlags(via_bridge.to_xml(), affect_live)
            with self.client.errors("connecting %s to network '%s'" % (what, self.name)):
                dom.updateDeviceFlags(xml, affect_live)
            return
        except VirtError as e:
            first_error = e.msg
        # fall back to unplugging and plugging the device
        try:
            with self.client.errors("unplugging %s" % what):
                dom.detachDeviceFlags(xml, affect_live)
            self._wait_unplugged(dom, name, mac)
            with self.client.errors("plugging %s into network '%s'" % (what, self.name)):
                dom.attachDeviceFlags(xml, affect_live)
        except VirtError as e:
            raise OperationFailed("%s; %s" % (first_error, e.msg), code=e.code, uri=self.client.uri)

    def _wait_unplugged(self, dom, name, mac):
        deadline = time.monotonic() + DETACH_TIMEOUT
        while True:
            with self.client.errors("reading guest '%s'" % name):
                ifaces = Domain.from_xml(dom.XMLDesc(0)).interfaces
            if not any((i.mac or "").lower() == (mac or "").lower() for i in ifaces):
                return
            if time.monotonic() > deadline:
                raise OperationFailed(
                    "guest '%s' did not release interface %s within %d s (its OS must support PCI hot-unplug)" % (name, mac, DETACH_TIMEOUT),
                    uri=self.client.uri,
                )
            time.sleep(0.25)

    def _set_autostart(self, value):
        self.client.call("setting autostart of network '%s'" % self.name, self.net.setAutostart, 1 if value else 0)

    # -- result ----------------------------------------------------------------
    def leases(self, net):
        try:
            with self.client.errors("reading the DHCP leases of network '%s'" % self.name):
                raw = net.DHCPLeases()
        except OperationFailed as e:
            if e.code == flag("VIR_ERR_NO_SUPPORT", None):
                return []
            raise
        ipv6 = flag("VIR_IP_ADDR_TYPE_IPV6", 1)
        leases = []
        for lease in raw or []:
            leases.append(
                {
                    "mac": lease.get("mac"),
                    "ip": lease.get("ipaddr"),
                    "hostname": lease.get("hostname"),
                    "family": "ipv6" if lease.get("type") == ipv6 else "ipv4",
                    "prefix": lease.get("prefix"),
                    "expiry_time": lease.get("expirytime"),
                }
            )
        return leases

    def _read_back(self):
        net = self.client.lookup_network(self.name)
        if net is None:
            return None
        with self.client.errors("reading network '%s'" % self.name):
            active = bool(net.isActive())
            persistent = bool(net.isPersistent())
            model = NetworkXML.from_xml(net.XMLDesc(0))
            info = {
                "name": self.name,
                "uuid": net.UUIDString(),
                "state": "active" if active else "inactive",
                "active": active,
                "autostart": bool(net.autostart()) if persistent else False,
                "persistent": persistent,
                "bridge": model.bridge_name,
                "mode": mode_of(model),
            }
        info["leases"] = self.leases(net) if active else []
        return info

    def _absent_info(self):
        return {
            "name": self.name,
            "uuid": None,
            "state": "absent",
            "active": False,
            "autostart": False,
            "persistent": False,
            "bridge": None,
            "mode": None,
            "leases": [],
        }

    def result(self):
        if self.check_mode and self.changed:
            info = self._absent_info()
            if self._predicted.get("state") != "absent":
                info.update(self._predicted)
                info["active"] = info["state"] == "active"
                current = self.net
                info["leases"] = self.leases(current) if current is not None and current.isActive() and info["active"] else []
        else:
            info = self._read_back() or self._absent_info()
        return {
            "network": info,
            "restart_required": self.restart_required,
            "pending_changes": list(self.pending_changes),
            "reconnected_guests": list(self.reconnected_guests),
            "disconnected_guests": list(self.disconnected_guests),
        }
