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


# Sources whose addresses must lie in the interface's libvirt network: a guest
# answers ARP for any address it likes, and a lease outside the network is not ours.
CHECKED_SOURCES = ("lease", "arp")


def parse_subnets(mapping):
    """``{network: [CIDR text]}`` -> ``{network: [ip_network]}``."""
    return dict((name, [ipaddress.ip_network(c, strict=False) for c in cidrs]) for name, cidrs in mapping.items())


def network_subnets(client):
    """``{network name: [ip_network]}`` of the hypervisor's libvirt networks (their ``<ip>`` elements)."""
    out = {}
    try:
        networks = client.conn.listAllNetworks(0)
    except Exception:  # pylint: disable=broad-except
        return out
    for net in networks:
        try:
            node = parse_xml(net.XMLDesc(0), what="network XML")
            name = net.name()
        except Exception:  # pylint: disable=broad-except
            continue
        nets = []
        for ip in node.findall("./ip"):
            address = ip.get("address")
            if not address:
                continue
            try:
                if ip.get("prefix"):
                    nets.append(ipaddress.ip_network("%s/%s" % (address, ip.get("prefix")), strict=False))
                elif ip.get("netmask"):
                    nets.append(ipaddress.ip_network("%s/%s" % (address, ip.get("netmask")), strict=False))
                else:
                    bits = 24 if ":" not in address else 64  # libvirt's defaults
                    nets.append(ipaddress.ip_network("%s/%d" % (address, bits), strict=False))
            except ValueError:
                continue
        out[name] = nets
    return out


def _inside(address, nets):
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in nets)


def merge_addresses(interfaces, replies, subnets=None):
    """Fill each interface's ``addresses`` from the first source that knows its MAC.

    ``replies`` is a list of ``(source, reply)`` in the order the sources were
    asked; ``reply`` is what ``virDomainInterfaceAddresses`` returned (or None).
    Addresses are matched to the guest's interfaces by MAC address. With
    ``subnets`` (see :func:`network_subnets`), lease and ARP addresses count
    only inside the subnets of the interface's own libvirt network (none for an
    interface on a host bridge); agent addresses are the guest's own word and
    are kept, with ``address_source: agent``.
    """
    normalized = [(source, _normalize_reply(reply)) for source, reply in replies]
    for iface in interfaces:
        if iface["addresses"]:
            continue
        for source, by_mac in normalized:
            found = by_mac.get(iface.get("mac") or "")
            if found and subnets is not None and source in CHECKED_SOURCES:
                nets = subnets.get(iface.get("network") or "") or []
                found = [a for a in found if _inside(a["address"], nets)]
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


class LeaseReplies:
    """The ``lease`` source for many guests, with each network's DHCP leases read once.

    :meth:`reply` answers what ``virDomainInterfaceAddresses(..., SRC_LEASE)``
    answers for one running guest (libvirt looks up the leases of each
    ``type='network'`` interface by MAC; the key is the host-side interface
    name), built from the leases of its networks read on first use. A guest
    whose network cannot be read that way (missing, or a driver without
    ``virNetworkGetDHCPLeases``) is asked on its own, as before.
    """

    def __init__(self, client):
        self.networks = _NetworkLeases(client, with_duration=False)
        self.single_queries = 0   # guests that needed their own virDomainInterfaceAddresses call

    def reply(self, dom, domain):
        """``{ifname: {"hwaddr", "addrs"}}`` of the running guest ``dom`` (its live ``Domain``), or None."""
        reply = {}
        for nic in domain.interfaces:
            if nic.type != "network":
                continue
            mac = (nic.normalized_mac() or "").lower()
            entry = self.networks.get(nic.source_network)
            if entry is None or not mac:
                self.single_queries += 1
                return interface_addresses(dom, "lease")
            leases = entry[0].get(mac)
            if leases:
                reply[nic.target_dev or mac] = {
                    "hwaddr": mac,
                    "addrs": [{"type": lease.get("type"), "addr": lease.get("ipaddr"), "prefix": lease.get("prefix")} for lease in leases],
                }
        return reply


# -- kvm_guest and kvm_guests: {mac: [addresses]} ------------------------------------
def guest_addresses(client, dom, name, started_at=None, use_agent=True):
    """``{mac: [addresses]}`` from DHCP leases, the guest agent and the ARP table.

    When this task started the guest (``started_at``), a lease counts only if it
    was obtained after the start (a lease from the previous boot is still valid
    for a while), and the ARP table, which may hold entries from that boot, is not used.
    """
    return guests_addresses(client, [(name, dom, started_at)], use_agent)[name]


def guests_addresses(client, guests, use_agent=True):
    """``{name: {mac: [addresses]}}`` of many guests: ``guests`` is a list of ``(name, dom, started_at)``.

    Each network's DHCP leases (and its lease duration) are read once for all
    the guests, not once per guest; the agent and ARP are asked per guest, as
    :func:`guest_addresses` describes.
    """
    result = {}
    lives = {}
    for name, dom, _started in guests:
        result[name] = {}
        if dom is None or not dom.isActive():
            continue
        try:
            lives[name] = Domain.from_xml(client.call("reading guest '%s'" % name, dom.XMLDesc, flag("VIR_DOMAIN_XML_SECURE")))
        except VirtError:
            lives[name] = None
    networks = _NetworkLeases(client)
    subnets = None  # each network's subnets, read once when ARP is asked
    for name, dom, started_at in guests:
        if name not in lives:
            continue
        found = result[name]
        live = lives[name]
        for mac, ip in _lease_addresses(networks, live, started_at):
            _add_address(found, mac, ip)
        sources = []
        if use_agent and live is not None and agent_connected(live):
            sources.append("agent")
        if started_at is None:
            sources.append("arp")
        nic_networks = {}
        if live is not None:
            for nic in live.interfaces:
                kind, net_name = nic.source
                nic_networks[nic.normalized_mac()] = net_name if kind == "network" else None
        for source in sources:
            if source == "arp" and subnets is None:
                subnets = network_subnets(client)
            for _ifname, info in (interface_addresses(dom, source) or {}).items():
                for addr in info.get("addrs") or []:
                    if source == "arp":
                        # a guest answers ARP for any address: only its own network's addresses count
                        nets = subnets.get(nic_networks.get((info.get("hwaddr") or "").lower()) or "") or []
                        try:
                            if not _inside(addr.get("addr") or "", nets):
                                continue
                        except ValueError:
                            continue
                    _add_address(found, info.get("hwaddr"), addr.get("addr"))
    return result


def _add_address(found, mac, ip):
    if not ip or ip.startswith("fe80:") or ip.startswith("169.254.") or ip.startswith("127.") or ip == "::1":
        return
    lst = found.setdefault((mac or "").lower(), [])
    if ip not in lst:
        lst.append(ip)


class _NetworkLeases:
    """The DHCP leases and lease duration of each libvirt network, read on first use."""

    def __init__(self, client, with_duration=True):
        self.client = client
        self.with_duration = with_duration
        self._leases = {}

    def get(self, net_name):
        """``(leases by MAC, lease duration)``, or None when the network is missing or unreadable."""
        if net_name not in self._leases:
            entry = None
            net = self.client.lookup_network(net_name)
            if net is not None:
                try:
                    by_mac = {}
                    for lease in net.DHCPLeases(None, 0) or []:
                        by_mac.setdefault((lease.get("mac") or "").lower(), []).append(lease)
                    entry = (by_mac, lease_duration(net) if self.with_duration else None)
                except Exception:  # pylint: disable=broad-except
                    entry = None
            self._leases[net_name] = entry
        return self._leases[net_name]


def _lease_addresses(networks, live, started_at):
    """(mac, ip) of the DHCP leases libvirt's networks hold for the guest's interfaces."""
    out = []
    for nic in [] if live is None else live.interfaces:
        kind, net_name = nic.source
        mac = nic.normalized_mac()
        if kind != "network" or not mac:
            continue
        entry = networks.get(net_name)
        if entry is None:
            continue
        by_mac, duration = entry
        for lease in by_mac.get(mac.lower(), []):
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
