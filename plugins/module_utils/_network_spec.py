# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network specs: the pure logic between the module's parameters and the
network XML. No connection; plain data in and out.

* :func:`desired_spec` validates the module parameters and normalizes them;
  :func:`actual_spec` reads a :class:`NetworkXML` into the same form, so
  that :func:`compare` is a plain ``==`` per option path.
* :func:`updatable_families` says where ``virNetworkUpdate`` calls (DHCP and
  DNS hosts) reach a network without a restart.
* Editing the XML to a desired spec lives in ``_network_edit``.

The manager (``_network``) reads the network, calls these, and applies.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_hostname, check_ifname, normalize_mac

MODES = ("nat", "route", "isolated", "open", "bridge", "macvtap")
# Modes in which libvirt creates (and removes) the bridge device itself.
MANAGED_BRIDGE_MODES = ("nat", "route", "isolated", "open")
# Modes that attach guests to a host device libvirt does not manage.
HOST_DEVICE_MODES = ("bridge", "macvtap")
# Modes with an optional forward device (`interface`).
FORWARD_DEV_MODES = ("nat", "route")
FAMILIES = (("ipv4", 4), ("ipv6", 6))

_DUID_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2})+$", re.IGNORECASE)


# ---------------------------------------------------------------------------
# Addresses (all raise InvalidArgument naming the option)
# ---------------------------------------------------------------------------
def _version_word(version):
    return "IPv%d" % version


def parse_gateway(option, value, version):
    """``10.10.0.1/24`` -> IPv4Interface; the address must be a usable host address."""
    text = str(value).strip()
    example = "10.10.0.1/24" if version == 4 else "fd00:10::1/64"
    if "/" not in text:
        raise InvalidArgument(option, "%r needs a prefix length, for example %s" % (text, example))
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise InvalidArgument(option, "%r is not a valid %s address with prefix length (CIDR), for example %s" % (text, _version_word(version), example))
    if iface.version != version:
        raise InvalidArgument(option, "%s is an %s address; expected an %s one" % (text, _version_word(iface.version), _version_word(version)))
    net = iface.network
    max_prefix = 30 if version == 4 else 126
    if net.prefixlen > max_prefix:
        raise InvalidArgument(option, "prefix /%d leaves no addresses for guests; use /%d or shorter" % (net.prefixlen, max_prefix))
    if iface.ip == net.network_address:
        raise InvalidArgument(
            option, "%s is the network address of %s; use a host address such as %s/%d" % (iface.ip, net, next(net.hosts()), net.prefixlen)
        )
    if version == 4 and iface.ip == net.broadcast_address:
        raise InvalidArgument(option, "%s is the broadcast address of %s; use a host address" % (iface.ip, net))
    return iface


def parse_address(option, value, version=None):
    text = str(value).strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(option, "%r is not a valid IP address" % text)
    if version is not None and addr.version != version:
        raise InvalidArgument(option, "%s is an %s address; expected an %s one" % (text, _version_word(addr.version), _version_word(version)))
    return addr


def address_in(option, value, gateway, family):
    """An address inside the gateway's subnet that a guest can use."""
    addr = parse_address(option, value, gateway.version)
    net = gateway.network
    if addr not in net:
        raise InvalidArgument(option, "%s is outside the network %s of %s.address %s" % (addr, net, family, gateway))
    if addr == net.network_address:
        raise InvalidArgument(option, "%s is the network address of %s" % (addr, net))
    if gateway.version == 4 and addr == net.broadcast_address:
        raise InvalidArgument(option, "%s is the broadcast address of %s" % (addr, net))
    return addr


# ---------------------------------------------------------------------------
# Specs: the normalized form both sides are compared in
# ---------------------------------------------------------------------------
# spec = {
#   "mode": str, "bridge": str|None, "interface": str|None, "mtu": int|None, "domain": str|None,
#   "ipv4"/"ipv6": None | {"address": "10.0.0.1/24", "dhcp": None|{}|{"start", "end"}|[...], "hosts": None|{key: host}},
#   "dns_hosts": None | {ip: [hostnames]},
# }
# In a desired spec, None means "not specified: leave as it is". A dhcp of {}
# means "no DHCP range". Hosts are keyed by MAC (IPv4) or DUID (IPv6), else by name.


def host_key(host, version):
    if version == 4:
        return host.get("mac") or host.get("name")
    return host.get("id") or host.get("name")


def _compact(**values):
    return {k: v for k, v in values.items() if v is not None}


def _ip_spec(option, value, version):
    if value is None:
        return None
    gateway = parse_gateway(option + ".address", value.get("address"), version)
    net = gateway.network
    dhcp = value.get("dhcp")
    dhcp_spec = None
    if dhcp is not None:
        start, end = dhcp.get("start"), dhcp.get("end")
        if start is None and end is None:
            dhcp_spec = {}
        elif start is None or end is None:
            raise InvalidArgument(option + ".dhcp", "set both start and end for a DHCP range, or neither (dhcp: {}) for none")
        else:
            first = address_in(option + ".dhcp.start", start, gateway, option)
            last = address_in(option + ".dhcp.end", end, gateway, option)
            if first > last:
                raise InvalidArgument(option + ".dhcp", "start %s comes after end %s; the range must be ordered" % (first, last))
            if first <= gateway.ip <= last:
                raise InvalidArgument(
                    option + ".dhcp", "the range %s - %s includes the gateway %s (%s.address); move the range off it" % (first, last, gateway.ip, option)
                )
            dhcp_spec = {"start": str(first), "end": str(last)}
    hosts = value.get("hosts")
    hosts_spec = None
    if hosts is not None:
        hosts_spec = {}
        seen = {}
        for index, host in enumerate(hosts):
            path = "%s.hosts[%d]" % (option, index)
            if not isinstance(host, dict):
                raise InvalidArgument(path, "must be a dictionary with ip and mac or name")
            addr = address_in(path + ".ip", host.get("ip"), gateway, option)
            if addr == gateway.ip:
                raise InvalidArgument(path + ".ip", "%s is the gateway address (%s.address)" % (addr, option))
            mac = host.get("mac")
            duid = host.get("id")
            name = host.get("name")
            if version == 4:
                mac = normalize_mac(mac, path + ".mac") if mac is not None else None
                if duid is not None:
                    raise InvalidArgument(path + ".id", "a DHCPv6 DUID only applies to ipv6 hosts; identify IPv4 hosts by mac or name")
                if mac is None and name is None:
                    raise InvalidArgument(path, "needs a mac or a name to identify the host")
            else:
                if mac is not None:
                    raise InvalidArgument(
                        path + ".mac", "libvirt identifies IPv6 DHCP hosts by name or id (DHCPv6 DUID), not by MAC address; set name or id instead"
                    )
                if duid is not None:
                    if not _DUID_RE.match(str(duid)):
                        raise InvalidArgument(path + ".id", "%r is not a DHCPv6 DUID (hex pairs separated by ':')" % (duid,))
                    duid = str(duid).lower()
                if duid is None and name is None:
                    raise InvalidArgument(path, "needs a name or an id (DHCPv6 DUID) to identify the host")
            if name is not None:
                name = check_hostname(name, path + ".name", allow_dots=False)
            entry = _compact(mac=mac, id=duid, name=name, ip=str(addr))
            for field in ("ip", "mac", "id", "name"):
                value_ = entry.get(field)
                if value_ is None:
                    continue
                other = seen.get((field, value_.lower()))
                if other is not None:
                    raise InvalidArgument(path + "." + field, "duplicate host %s %s (already used by %s)" % (field, value_, other))
                seen[(field, value_.lower())] = path
            hosts_spec[host_key(entry, version)] = entry
    if version == 6 and net.prefixlen < 64 and (dhcp_spec or hosts_spec):
        raise InvalidArgument(
            option + ".address", "DHCPv6 needs a prefix length of 64 or longer (dnsmasq refuses /%d); use a /64 network" % net.prefixlen
        )
    return {"address": str(gateway), "dhcp": dhcp_spec, "hosts": hosts_spec}


def _dns_spec(value):
    if value is None:
        return None
    spec = {}
    for index, host in enumerate(value):
        path = "dns_hosts[%d]" % index
        if not isinstance(host, dict):
            raise InvalidArgument(path, "must be a dictionary with ip and hostnames")
        addr = str(parse_address(path + ".ip", host.get("ip")))
        names = host.get("hostnames")
        if isinstance(names, str):
            names = [names]
        if not names:
            raise InvalidArgument(path + ".hostnames", "needs at least one host name")
        names = [check_hostname(n, "%s.hostnames[%d]" % (path, i)) for i, n in enumerate(names)]
        if addr in spec:
            raise InvalidArgument(path + ".ip", "duplicate DNS host address %s; list all its names in one entry" % addr)
        spec[addr] = names
    return spec


def desired_spec(params):
    """Validate the module parameters and normalize them into a spec.

    Only checks that need no libvirt connection; see
    :meth:`NetworkManager.check_host_devices` for the others.
    """
    mode = params.get("mode") or "nat"
    if mode not in MODES:
        raise InvalidArgument("mode", "%r is not a network mode; use one of %s" % (mode, ", ".join(MODES)))
    bridge = check_ifname(params.get("bridge"), "bridge")
    interface = check_ifname(params.get("interface"), "interface")
    mtu = params.get("mtu")
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InvalidArgument("mtu", "%d is not a usable MTU (68 to 65535)" % mtu)
    domain = params.get("domain")
    if domain is not None:
        domain = check_hostname(domain, "domain")
    if mode == "bridge" and not bridge:
        raise InvalidArgument("bridge", "required with mode bridge: the name of an existing host bridge")
    if mode == "macvtap":
        if not interface:
            raise InvalidArgument("interface", "required with mode macvtap: the host interface the guests' macvtap devices sit on")
        if bridge:
            raise InvalidArgument("bridge", "not used with mode macvtap (guests get macvtap devices on interface, no bridge)")
    if mode in ("isolated", "open", "bridge") and interface:
        raise InvalidArgument("interface", "not used with mode %s; it is the forward device of nat and route and the host interface of macvtap" % mode)
    if mode in HOST_DEVICE_MODES:
        for option in ("ipv4", "ipv6", "domain", "dns_hosts", "mtu"):
            if params.get(option) is not None:
                raise InvalidArgument(
                    option,
                    "not supported with mode %s: libvirt runs no DHCP/DNS and sets no addresses or MTU on a host device; "
                    "configure them on the host or its network" % mode,
                )
    spec = {
        "mode": mode,
        "bridge": bridge,
        "interface": interface,
        "mtu": mtu,
        "domain": domain,
        "dns_hosts": _dns_spec(params.get("dns_hosts")),
    }
    for family, version in FAMILIES:
        spec[family] = _ip_spec(family, params.get(family), version)
    if mtu is not None and mtu < 1280 and spec["ipv6"] is not None:
        raise InvalidArgument("mtu", "IPv6 needs an MTU of at least 1280, got %d" % mtu)
    return spec


# -- reading XML into a spec -------------------------------------------------
def _ip_version(ipel):
    if ipel.address and ":" in ipel.address:
        return 6
    return 6 if (ipel.family or "ipv4") == "ipv6" else 4


def first_ip(model, version):
    """(index among all <ip> elements, IPXML) of the first one of ``version``."""
    for index, ipel in enumerate(model.ips):
        if _ip_version(ipel) == version:
            return index, ipel
    return None, None


def _prefix_of(ipel, version):
    if ipel.prefix is not None:
        return ipel.prefix
    if ipel.netmask:
        try:
            return ipaddress.IPv4Network("0.0.0.0/%s" % ipel.netmask).prefixlen
        except ValueError:
            return None
    if version == 6:
        return 64
    # libvirt's classful default for an IPv4 address without prefix or netmask
    first = int((ipel.address or "0").split(".")[0] or 0)
    return 8 if first < 128 else 16 if first < 192 else 24


def norm_ip(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def host_spec(hostel):
    return _compact(
        mac=hostel.mac.lower() if hostel.mac else None,
        id=hostel.duid.lower() if hostel.duid else None,
        name=hostel.name,
        ip=norm_ip(hostel.ip) if hostel.ip else None,
    )


def ip_actual(ipel, version):
    address = None
    if ipel.address:
        try:
            address = str(ipaddress.ip_interface("%s/%s" % (ipel.address, _prefix_of(ipel, version))))
        except ValueError:
            address = ipel.address
    ranges = [{"start": norm_ip(r.start), "end": norm_ip(r.end)} for r in ipel.ranges]
    dhcp = {} if not ranges else ranges[0] if len(ranges) == 1 else ranges
    hosts = {}
    for hostel in ipel.hosts:
        entry = host_spec(hostel)
        hosts[host_key(entry, version)] = entry
    return {"address": address, "dhcp": dhcp, "hosts": hosts}


def mode_of(model):
    forward = model.forward_mode
    if forward is None:
        return "isolated"
    if forward == "bridge":
        if model.bridge_name is None and (model.forward_dev or len(model.forward_interfaces)):
            return "macvtap"
        return "bridge"
    return forward


def forward_device(model):
    if model.forward_dev:
        return model.forward_dev
    for iface in model.forward_interfaces:
        if iface.dev:
            return iface.dev
    return None


def actual_spec(model):
    spec = {
        "mode": mode_of(model),
        "bridge": model.bridge_name,
        "interface": forward_device(model),
        "mtu": model.mtu,
        "domain": model.domain_name,
        "dns_hosts": {},
    }
    for family, version in FAMILIES:
        _index, ipel = first_ip(model, version)
        spec[family] = ip_actual(ipel, version) if ipel is not None else None
    for dnsel in model.dns_hosts:
        if dnsel.ip:
            spec["dns_hosts"][norm_ip(dnsel.ip)] = [h.value for h in dnsel.hostnames if h.value]
    return spec


EMPTY_SPEC = {"mode": None, "bridge": None, "interface": None, "mtu": None, "domain": None, "ipv4": None, "ipv6": None, "dns_hosts": {}}
EMPTY_IP = {"address": None, "dhcp": {}, "hosts": {}}


# ---------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------
class Change:
    """One difference at an option path.

    ``family`` is set for DHCP host changes (``ipv4``/``ipv6``), and
    ``"dns"`` for DNS host changes: those can be applied with the network
    update API. Everything else (``family`` None) needs a redefinition and
    a restart of an active network.
    """

    __slots__ = ("path", "before", "after", "family")

    def __init__(self, path, before, after, family=None):
        self.path = path
        self.before = before
        self.after = after
        self.family = family

    @property
    def updatable(self):
        return self.family is not None

    def __repr__(self):
        return "Change(%s: %r -> %r)" % (self.path, self.before, self.after)


def _show_dhcp(value):
    return None if value == {} else value


def _ip_summary(ip):
    return {"address": ip["address"], "dhcp": _show_dhcp(ip["dhcp"]), "hosts": list(ip["hosts"].values())}


def compare(desired, actual):
    """The differences from ``actual`` to ``desired``, as a list of Change."""
    changes = []

    def add(path, before, after, family=None):
        if before != after:
            changes.append(Change(path, before, after, family))

    add("mode", actual["mode"], desired["mode"])
    for key in ("bridge", "interface", "mtu", "domain"):
        if desired[key] is not None:
            add(key, actual[key], desired[key])
    if desired["mode"] in HOST_DEVICE_MODES:
        # Such networks have no addresses, DNS or MTU: whatever exists goes.
        for key in ("mtu", "domain"):
            if desired[key] is None and actual[key] is not None:
                add(key, actual[key], None)
        for family, _version in FAMILIES:
            if actual[family] is not None:
                add(family, _ip_summary(actual[family]), None)
        if actual["dns_hosts"]:
            add("dns_hosts", [{"ip": ip, "hostnames": names} for ip, names in actual["dns_hosts"].items()], None)
        return changes
    for family, _version in FAMILIES:
        want = desired[family]
        if want is None:
            continue
        have = actual[family] or EMPTY_IP
        add(family + ".address", have["address"], want["address"])
        if want["dhcp"] is not None:
            add(family + ".dhcp", _show_dhcp(have["dhcp"]), _show_dhcp(want["dhcp"]))
        if want["hosts"] is not None:
            for key, host in have["hosts"].items():
                if key not in want["hosts"]:
                    add("%s.hosts[%s]" % (family, key), host, None, family)
            for key, host in want["hosts"].items():
                old = have["hosts"].get(key)
                path = "%s.hosts[%s]" % (family, key)
                if old is None:
                    add(path, None, host, family)
                    continue
                for field in ("mac", "id", "name", "ip"):
                    add("%s.%s" % (path, field), old.get(field), host.get(field), family)
    if desired["dns_hosts"] is not None:
        have = actual["dns_hosts"] or {}
        for ip, names in have.items():
            if ip not in desired["dns_hosts"]:
                add("dns_hosts[%s]" % ip, {"ip": ip, "hostnames": names}, None, "dns")
        for ip, names in desired["dns_hosts"].items():
            if ip not in have:
                add("dns_hosts[%s]" % ip, None, {"ip": ip, "hostnames": names}, "dns")
            else:
                add("dns_hosts[%s].hostnames" % ip, have[ip], names, "dns")
    return changes


def _shared_dns_names(dns_hosts):
    """Host names that more than one DNS host entry has.

    libvirt's update API matches DNS hosts by address *or* any name, so it
    refuses to add an entry that shares a name with another one (a name
    with both an IPv4 and an IPv6 address, say); such lists are applied by
    redefining the network.
    """
    seen, shared = set(), set()
    for names in (dns_hosts or {}).values():
        for name in set(names):
            (shared if name in seen else seen).add(name)
    return shared


def updatable_families(model, desired):
    """Families whose DHCP hosts can be changed with virNetworkUpdate on ``model``.

    The network must already have that family's ``<ip>`` with the desired
    address; a new or readdressed subnet needs a redefinition anyway.
    DNS hosts (``"dns"``) can be updated unless two entries share a name.
    """
    families = set()
    if desired["mode"] in HOST_DEVICE_MODES or mode_of(model) in HOST_DEVICE_MODES:
        return families
    if not _shared_dns_names(desired["dns_hosts"]):
        families.add("dns")
    for family, version in FAMILIES:
        want = desired[family]
        _index, ipel = first_ip(model, version)
        if want is not None and ipel is not None and ip_actual(ipel, version)["address"] == want["address"]:
            families.add(family)
    return families
