# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Editing network XML to a desired spec (pure logic; no connection).

* :func:`apply_spec` / :func:`build_network` edit a :class:`NetworkXML` so
  that it reads back as the desired spec (``_network_spec``); what the spec
  leaves out (``None``) is kept as it is.
* :func:`update_ops` lists the ``virNetworkUpdate`` calls (DHCP and DNS
  hosts) that bring a running network to the desired spec without a restart.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.kvmops.virt.plugins.module_utils._network_spec import (
    EMPTY_IP,
    EMPTY_SPEC,
    FAMILIES,
    FORWARD_DEV_MODES,
    HOST_DEVICE_MODES,
    first_ip,
    host_key,
    host_spec,
    ip_actual,
    norm_ip,
)
from ansible_collections.kvmops.virt.plugins.module_utils._network_xml import DHCPHostXML, DNSHostXML, NetworkXML
from ansible_collections.kvmops.virt.plugins.module_utils._xml import to_string


# ---------------------------------------------------------------------------
# Editing the XML
# ---------------------------------------------------------------------------
def _set_host(hostel, entry):
    hostel.mac = entry.get("mac")
    hostel.duid = entry.get("id")
    hostel.name = entry.get("name")
    hostel.ip = entry.get("ip")


def new_host(entry):
    hostel = DHCPHostXML()
    _set_host(hostel, entry)
    return hostel


def new_dns_host(ip, names):
    dnsel = DNSHostXML()
    dnsel.ip = ip
    for name in names:
        dnsel.hostnames.add(value=name)
    return dnsel


def _prune_empty(model, path):
    node = model.find(path)
    if node is not None and len(node) == 0 and not node.attrib and not (node.text or "").strip():
        node.getparent().remove(node)


def _apply_ip(model, version, want):
    _index, ipel = first_ip(model, version)
    have = ip_actual(ipel, version) if ipel is not None else EMPTY_IP
    if ipel is None:
        ipel = model.ips.add()
        if version == 6:
            ipel.family = "ipv6"
    if have["address"] != want["address"]:
        gateway = ipaddress.ip_interface(want["address"])
        ipel.netmask = None
        ipel.address = str(gateway.ip)
        ipel.prefix = gateway.network.prefixlen
    if want["dhcp"] is not None and have["dhcp"] != want["dhcp"]:
        for rangeel in list(ipel.ranges):
            ipel.ranges.remove(rangeel)
        if want["dhcp"]:
            ipel.ranges.add(start=want["dhcp"]["start"], end=want["dhcp"]["end"])
    if want["hosts"] is not None:
        existing = {}
        for hostel in list(ipel.hosts):
            key = host_key(host_spec(hostel), version)
            if key in want["hosts"] and key not in existing:
                existing[key] = hostel
            else:
                ipel.hosts.remove(hostel)
        for key, entry in want["hosts"].items():
            hostel = existing.get(key)
            if hostel is None:
                ipel.hosts.add(new_host(entry))
            elif host_spec(hostel) != entry:
                _set_host(hostel, entry)
    _prune_empty(ipel, "./dhcp")


def _apply_dns(model, want):
    existing = {}
    for dnsel in list(model.dns_hosts):
        ip = norm_ip(dnsel.ip) if dnsel.ip else None
        if ip in want and ip not in existing:
            existing[ip] = dnsel
        else:
            model.dns_hosts.remove(dnsel)
    for ip, names in want.items():
        dnsel = existing.get(ip)
        if dnsel is None:
            model.dns_hosts.add(new_dns_host(ip, names))
        elif [h.value for h in dnsel.hostnames] != names:
            dnsel.hostnames.clear()
            for name in names:
                dnsel.hostnames.add(value=name)
    _prune_empty(model, "./dns")


def apply_spec(model, desired, actual=None):
    """Edit ``model`` in place so that it describes ``desired``.

    ``actual`` is the spec ``model`` was read as (None for a new network).
    Values the user did not specify, and everything libvirt generated
    (uuid, bridge MAC, stp, NAT ports...), stay as they are.
    """
    actual = actual or EMPTY_SPEC
    mode = desired["mode"]
    interface = desired["interface"]
    if interface is None and mode in FORWARD_DEV_MODES and actual["mode"] in FORWARD_DEV_MODES:
        interface = actual["interface"]
    if actual["mode"] != mode or (desired["interface"] is not None and desired["interface"] != actual["interface"]):
        model.remove("./forward")
        if mode in ("nat", "route", "open"):
            model.forward_mode = mode
            if interface and mode in FORWARD_DEV_MODES:
                model.forward_dev = interface
        elif mode == "bridge":
            model.forward_mode = "bridge"
        elif mode == "macvtap":
            model.forward_mode = "bridge"
            model.forward_interfaces.add(dev=interface)
    if mode in HOST_DEVICE_MODES:
        model.ips.clear()
        for path in ("./dns", "./domain", "./mtu", "./mac", "./bridge"):
            while model.find(path) is not None:
                model.remove(path)
        if mode == "bridge":
            model.bridge_name = desired["bridge"]
        return model
    if actual["mode"] in HOST_DEVICE_MODES:
        # the old host bridge is not ours to create; libvirt names a new one
        model.remove("./bridge")
    if desired["bridge"] is not None:
        model.bridge_name = desired["bridge"]
    if desired["mtu"] is not None:
        model.mtu = desired["mtu"]
    if desired["domain"] is not None:
        model.domain_name = desired["domain"]
    for family, version in FAMILIES:
        if desired[family] is not None:
            _apply_ip(model, version, desired[family])
    if desired["dns_hosts"] is not None:
        _apply_dns(model, desired["dns_hosts"])
    return model


def build_network(name, desired):
    model = NetworkXML()
    model.name = name
    return apply_spec(model, desired)


# ---------------------------------------------------------------------------
# Network update operations (virNetworkUpdate)
# ---------------------------------------------------------------------------
class UpdateOp:
    """One virNetworkUpdate call: add or delete one DHCP or DNS host."""

    __slots__ = ("command", "section", "index", "xml")

    def __init__(self, command, section, index, xml):
        self.command = command
        self.section = section
        self.index = index
        self.xml = xml

    def key(self):
        return (self.command, self.section, self.index, self.xml)

    def __eq__(self, other):
        return isinstance(other, UpdateOp) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "UpdateOp(%s %s #%s %s)" % (self.command, self.section, self.index, self.xml.strip())


def update_ops(model, desired, families):
    """The deletes, then the adds, that bring the hosts in ``model`` to ``desired``.

    DHCP host deletes name the existing entry exactly as libvirt has it,
    DNS host deletes name its address; changed entries are deleted and
    added again (libvirt's ``modify`` matches by
    MAC *or* IP *or* name, which goes wrong when two hosts swap addresses,
    and DNS hosts cannot be modified at all).
    """
    deletes, adds = [], []
    for family, version in FAMILIES:
        want = desired[family]
        if family not in families or want is None or want["hosts"] is None:
            continue
        index, ipel = first_ip(model, version)
        existing = {}
        for hostel in ipel.hosts:
            existing.setdefault(host_key(host_spec(hostel), version), hostel)
        for key, hostel in existing.items():
            if want["hosts"].get(key) != host_spec(hostel):
                deletes.append(UpdateOp("delete", "ip-dhcp-host", index, to_string(hostel.node)))
        for key, entry in want["hosts"].items():
            hostel = existing.get(key)
            if hostel is None or host_spec(hostel) != entry:
                adds.append(UpdateOp("add-last", "ip-dhcp-host", index, new_host(entry).to_xml()))
    if "dns" in families and desired["dns_hosts"] is not None:
        existing = {}
        for dnsel in model.dns_hosts:
            if dnsel.ip:
                existing.setdefault(norm_ip(dnsel.ip), dnsel)
        for ip, dnsel in existing.items():
            if desired["dns_hosts"].get(ip) != [h.value for h in dnsel.hostnames]:
                # by address only: libvirt matches the address or any of the names
                only_ip = DNSHostXML()
                only_ip.ip = dnsel.ip
                deletes.append(UpdateOp("delete", "dns-host", -1, only_ip.to_xml()))
        for ip, names in desired["dns_hosts"].items():
            dnsel = existing.get(ip)
            if dnsel is None or [h.value for h in dnsel.hostnames] != names:
                adds.append(UpdateOp("add-last", "dns-host", -1, new_dns_host(ip, names).to_xml()))
    return deletes + adds
