# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address discovery of running guests, for ``kvm_guest`` (``wait_for_ip``, the ``guest`` result) and the inventory plugin.

* :func:`interface_addresses` asks libvirt one source (``lease``, ``arp`` or
  ``agent``) through ``virDomainInterfaceAddresses``; both users call it.
* The inventory keeps every source's answer per interface
  (:func:`address_sources`, :func:`merge_addresses`, :func:`ordered_addresses`).
* ``kvm_guest`` wants ``{mac: [addresses]}`` (:func:`guest_addresses`): the DHCP
  leases of the guest's networks, filtered to those obtained after this task
  started the guest, then the guest agent when it is connected, then ARP.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, libvirt
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain
from ansible_collections.kvmops.virt.plugins.module_utils._errors import VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml

ADDRESS_SOURCES = ("lease", "arp", "agent")

# libvirt's VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_* (name, value when the binding lacks it)
_SOURCE_FLAGS = {
    "lease": ("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE", 0),
    "agent": ("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT", 1),
    "arp": ("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP", 2),
}
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def interface_addresses(dom, source):
    """One source's answer; None when the source has nothing for this guest
    (no lease, no agent, unsupported by the driver, guest stopped meanwhile)."""
    try:
        return dom.interfaceAddresses(flag(*_SOURCE_FLAGS[source]), 0)
    except libvirt.libvirtError:
        return None


# -- the inventory: every source's answer per interface ---------------------------
def address_sources(primary, fallback=True, agent_allowed=True):
    """The sources to ask, in order: ``primary``, then (with ``fallback``) the others
    in the order lease, arp, agent. ``agent`` needs a read-write connection."""
    order = [primary]
    if fallback:
        order += [s for s in ADDRESS_SOURCES if s != primary]
    return [s for s in order if s != "agent" or agent_allowed]


def _normalize_reply(reply):
    """``virDomainInterfaceAddresses`` output -> {mac: [address dicts]}."""
    by_mac = {}
    for ifname, data in (reply or {}).items():
        mac = (data.get("hwaddr") or "").lower()
        if not mac:
            continue
        for addr in data.get("addrs") or []:
            text = addr.get("addr")
            if not text:
                continue
            try:
                ip = ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                continue
            if ip.is_loopback:
                continue
            by_mac.setdefault(mac, [])
            entry = {
                "address": str(ip),
                "prefix": addr.get("prefix"),
                "family": "ipv%d" % ip.version,
                "guest_interface": ifname,
            }
            if entry not in by_mac[mac]:
                by_mac[mac].append(entry)
    return by_mac


def merge_addresses(interfaces, replies):
    """Fill each interface's ``addresses`` from the first source that knows its MAC.

    ``replies`` is a list of ``(source, reply)`` in the order the sources were
    asked; ``reply`` is what ``virDomainInterfaceAddresses`` returned (or None).
    Addresses are matched to the guest's interfaces by MAC address.
    """
    normalized = [(source, _normalize_reply(reply)) for source, reply in replies]
    for iface in interfaces:
        if iface["addresses"]:
            continue
        for source, by_mac in normalized:
            found = by_mac.get(iface.get("mac") or "")
            if found:
                iface["addresses"] = found
                iface["address_source"] = source
                break
    return interfaces


def missing_addresses(interfaces):
    return any(not iface["addresses"] for iface in interfaces)


def usable_addresses(addresses, prefer_ipv4=True):
    """Plain addresses without link-local ones, IPv4 first with ``prefer_ipv4``."""
    result = []
    for addr in addresses:
        if ipaddress.ip_address(addr["address"]).is_link_local or addr["address"] in result:
            continue
        result.append(addr["address"])
    if prefer_ipv4:
        result.sort(key=lambda a: ipaddress.ip_address(a).version != 4)
    return result


def ordered_addresses(interfaces, prefer_ipv4=True):
    """Every usable address of the guest: interface order, IPv4 first with ``prefer_ipv4``.

    Link-local addresses are left out; ``ansible_host`` is the first one.
    """
    return usable_addresses([a for iface in interfaces for a in iface.get("addresses") or []], prefer_ipv4)


# -- kvm_guest: {mac: [addresses]} ------------------------------------------------
def guest_addresses(client, dom, name, started_at=None, use_agent=True):
    """``{mac: [addresses]}`` from DHCP leases, the guest agent and the ARP table.

    When this task started the guest (``started_at``), a lease counts only if it
    was obtained after the start (a lease from the previous boot is still valid
    for a while), and the ARP table, which may hold entries from that boot, is not used.
    """
    found = {}
    if dom is None or not dom.isActive():
        return found

    def add(mac, ip):
        if not ip or ip.startswith("fe80:") or ip.startswith("169.254.") or ip.startswith("127.") or ip == "::1":
            return
        lst = found.setdefault((mac or "").lower(), [])
        if ip not in lst:
            lst.append(ip)

    try:
        live = Domain.from_xml(client.call("reading guest '%s'" % name, dom.XMLDesc, flag("VIR_DOMAIN_XML_SECURE")))
    except VirtError:
        live = None
    for mac, ip in _lease_addresses(client, live, started_at):
        add(mac, ip)
    sources = []
    if use_agent and live is not None and agent_connected(live):
        sources.append("agent")
    if started_at is None:
        sources.append("arp")
    for source in sources:
        for _ifname, info in (interface_addresses(dom, source) or {}).items():
            for addr in info.get("addrs") or []:
                add(info.get("hwaddr"), addr.get("addr"))
    return found


def _lease_addresses(client, live, started_at):
    """(mac, ip) of the DHCP leases libvirt's networks hold for the guest's interfaces."""
    out = []
    for nic in [] if live is None else live.interfaces:
        kind, net_name = nic.source
        mac = nic.normalized_mac()
        if kind != "network" or not mac:
            continue
        net = client.lookup_network(net_name)
        if net is None:
            continue
        try:
            leases = net.DHCPLeases(mac, 0)
        except Exception:  # pylint: disable=broad-except
            continue
        duration = lease_duration(net)
        for lease in leases or []:
            if started_at is not None and lease.get("expirytime"):
                obtained = lease["expirytime"] - duration
                if obtained < started_at - 2:
                    continue  # from before this task started the guest
            out.append((lease.get("mac") or mac, lease.get("ipaddr")))
    return out


def agent_connected(live):
    """Whether the guest agent of the running guest (its live ``Domain``) is connected."""
    for channel in live.node.findall("./devices/channel"):
        target = channel.find("target")
        if target is not None and target.get("name") == GUEST_AGENT_CHANNEL and target.get("state") == "connected":
            return True
    return False


def lease_duration(net):
    """Seconds a DHCP lease of ``net`` lasts: its ``<lease expiry>``, else dnsmasq's default hour."""
    try:
        node = parse_xml(net.XMLDesc(0), what="network XML")
    except Exception:  # pylint: disable=broad-except
        return 3600
    lease = node.find("./ip/dhcp/range/lease")
    if lease is None or not (lease.get("expiry") or "").isdigit():
        return 3600
    factor = {"seconds": 1, "minutes": 60, "hours": 3600}.get(lease.get("unit") or "minutes", 60)
    return int(lease.get("expiry")) * factor or 3600
