# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt virtual networks: the XML model, input validation and the manager.

Three layers, top to bottom:

* :class:`NetworkManager` (used by the ``virtio_network`` module) reads the
  network, compares it with what the user asked for and plans the steps.
* The *spec* functions turn module parameters (:func:`desired_spec`) and
  network XML (:func:`actual_spec`) into the same normalized dict, so that
  comparing the two is a plain ``==`` per option path (:func:`compare`).
* The XML model (:class:`NetworkXML` and friends) lives in ``_network_xml``.

Changes fall in two kinds. DHCP hosts and DNS host entries are changed with
libvirt's network update API (``virNetworkUpdate``), live and persistently,
without restarting the network. Everything else (forward mode, bridge,
addresses, DHCP range, MTU, domain) needs the network redefined and
restarted; a restart that would cut off running guests is done only with
``force``, otherwise the persistent definition is updated and the module
reports ``restart_required``.
"""

from __future__ import annotations

import ipaddress
import re
import time

from ansible_collections.kvmops.virt.plugins.module_utils._client import libvirt
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    OperationFailed,
    Refused,
    VirtError,
)
from ansible_collections.kvmops.virt.plugins.module_utils._network_xml import (
    DHCPHostXML,
    DNSHostXML,
    NetworkXML,
)
from ansible_collections.kvmops.virt.plugins.module_utils._xml import (
    XMLChildren,
    XMLObject,
    XMLProperty,
    canonical,
    parse_xml,
    to_string,
)

MODES = ("nat", "route", "isolated", "open", "bridge", "macvtap")
# Modes in which libvirt creates (and removes) the bridge device itself.
MANAGED_BRIDGE_MODES = ("nat", "route", "isolated", "open")
# Modes that attach guests to a host device libvirt does not manage.
HOST_DEVICE_MODES = ("bridge", "macvtap")
# Modes with an optional forward device (`interface`).
FORWARD_DEV_MODES = ("nat", "route")
FAMILIES = (("ipv4", 4), ("ipv6", 6))
STATES = ("present", "active", "inactive", "absent")

# Seconds to wait for a guest to release a hot-unplugged interface.
DETACH_TIMEOUT = 15.0


class GuestInterfaceXML(XMLObject):
    """A guest's ``<interface>`` device, as far as network restarts need it."""

    TAG = "interface"
    type = XMLProperty("@type")
    mac = XMLProperty("./mac/@address")
    source_network = XMLProperty("./source/@network")
    source_portid = XMLProperty("./source/@portid")
    source_bridge = XMLProperty("./source/@bridge")
    source_dev = XMLProperty("./source/@dev")
    source_mode = XMLProperty("./source/@mode")
    target_dev = XMLProperty("./target/@dev")
    alias = XMLProperty("./alias/@name")


class GuestXML(XMLObject):
    TAG = "domain"
    name = XMLProperty("./name")
    interfaces = XMLChildren(GuestInterfaceXML, "./devices/interface")


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


# ---------------------------------------------------------------------------
# Validation helpers (all raise InvalidArgument naming the option)
# ---------------------------------------------------------------------------
_NAME_FORBIDDEN = "<>&'\"/"
_IFNAME_RE = re.compile(r"^[^/:\s]{1,15}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$", re.IGNORECASE)
_DUID_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2})+$", re.IGNORECASE)
_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def check_name(name):
    """A network name libvirt, dnsmasq and the host's file names all accept."""
    if name is None or not str(name).strip():
        raise InvalidArgument("name", "must not be empty")
    bad = sorted({c for c in name if c in _NAME_FORBIDDEN or c.isspace() or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise InvalidArgument(
            "name",
            "%r contains characters that are not allowed in a network name (%s); "
            "use letters, digits, '-', '_' and '.'" % (name, " ".join(repr(c) for c in bad)),
        )
    if name in (".", ".."):
        raise InvalidArgument("name", "%r is not a usable network name" % name)
    return name


def check_ifname(option, value):
    if value is None:
        return None
    if not _IFNAME_RE.match(value) or value in (".", ".."):
        raise InvalidArgument(
            option, "%r is not a valid Linux network interface name (1 to 15 characters, no '/', ':' or whitespace)" % value
        )
    return value


def normalize_mac(option, value):
    text = str(value).strip()
    if not _MAC_RE.match(text):
        hint = ""
        if text.isdigit():
            hint = " (quote MAC addresses in YAML: an unquoted 52:54:00:11:22:33 is read as a number)"
        raise InvalidArgument(option, "%r is not a valid MAC address; expected six hex pairs such as 52:54:00:aa:bb:cc%s" % (text, hint))
    mac = text.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise InvalidArgument(option, "%s is a multicast MAC address; a guest interface needs a unicast one" % mac)
    return mac


def check_hostname(option, value, allow_dots=True):
    text = str(value).strip().rstrip(".") if value is not None else ""
    labels = text.split(".") if allow_dots else [text]
    if not text or len(text) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidArgument(
            option, "%r is not a valid host name (letters, digits and '-' in dot-separated labels of at most 63 characters)" % (value,)
        )
    return text


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
                mac = normalize_mac(path + ".mac", mac) if mac is not None else None
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
                name = check_hostname(path + ".name", name, allow_dots=False)
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
        names = [check_hostname("%s.hostnames[%d]" % (path, i), n) for i, n in enumerate(names)]
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
    bridge = check_ifname("bridge", params.get("bridge"))
    interface = check_ifname("interface", params.get("interface"))
    mtu = params.get("mtu")
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InvalidArgument("mtu", "%d is not a usable MTU (68 to 65535)" % mtu)
    domain = params.get("domain")
    if domain is not None:
        domain = check_hostname("domain", domain)
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


def _norm_ip(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def host_spec(hostel):
    return _compact(
        mac=hostel.mac.lower() if hostel.mac else None,
        id=hostel.duid.lower() if hostel.duid else None,
        name=hostel.name,
        ip=_norm_ip(hostel.ip) if hostel.ip else None,
    )


def ip_actual(ipel, version):
    address = None
    if ipel.address:
        try:
            address = str(ipaddress.ip_interface("%s/%s" % (ipel.address, _prefix_of(ipel, version))))
        except ValueError:
            address = ipel.address
    ranges = [{"start": _norm_ip(r.start), "end": _norm_ip(r.end)} for r in ipel.ranges]
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
            spec["dns_hosts"][_norm_ip(dnsel.ip)] = [h.value for h in dnsel.hostnames if h.value]
    return spec


EMPTY_SPEC = {"mode": None, "bridge": None, "interface": None, "mtu": None, "domain": None, "ipv4": None, "ipv6": None, "dns_hosts": {}}
_EMPTY_IP = {"address": None, "dhcp": {}, "hosts": {}}


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
        have = actual[family] or _EMPTY_IP
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
    have = ip_actual(ipel, version) if ipel is not None else _EMPTY_IP
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
        ip = _norm_ip(dnsel.ip) if dnsel.ip else None
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
                existing.setdefault(_norm_ip(dnsel.ip), dnsel)
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


def _libvirt_const(name, default=None):
    return getattr(libvirt, name, default) if libvirt is not None else default


_COMMANDS = {"delete": "VIR_NETWORK_UPDATE_COMMAND_DELETE", "add-last": "VIR_NETWORK_UPDATE_COMMAND_ADD_LAST"}
_SECTIONS = {"ip-dhcp-host": "VIR_NETWORK_SECTION_IP_DHCP_HOST", "dns-host": "VIR_NETWORK_SECTION_DNS_HOST"}


# ---------------------------------------------------------------------------
# The manager
# ---------------------------------------------------------------------------
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
                return net.XMLDesc(_libvirt_const("VIR_NETWORK_XML_INACTIVE", 1))
        except OperationFailed as e:
            # drivers without the flag (the test driver) have one definition
            if e.code in (_libvirt_const("VIR_ERR_INVALID_ARG"), _libvirt_const("VIR_ERR_NO_SUPPORT")):
                return self.client.call("reading network '%s'" % self.name, net.XMLDesc, 0)
            raise

    def guests_using(self):
        """Running guests with an interface on this network, by name."""
        flags = _libvirt_const("VIR_CONNECT_LIST_DOMAINS_ACTIVE", 1)
        domains = self.client.call("listing running guests", self.client.conn.listAllDomains, flags)
        guests = []
        for dom in domains:
            try:
                with self.client.errors("reading guest"):
                    text = dom.XMLDesc(0)
            except NotFound:
                continue  # stopped and removed meanwhile
            guest = GuestXML.from_xml(text)
            ifaces = [(i.mac, plug_xml(i)) for i in guest.interfaces if i.type == "network" and i.source_network == self.name]
            if ifaces:
                guests.append(Guest(guest.name, ifaces))
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
            if e.code == _libvirt_const("VIR_ERR_NO_SUPPORT"):
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
        check_name(self.name)
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
            flags |= _libvirt_const("VIR_NETWORK_UPDATE_AFFECT_LIVE", 1)
        if config:
            flags |= _libvirt_const("VIR_NETWORK_UPDATE_AFFECT_CONFIG", 2)
        for op in ops:
            with self.client.errors("updating network '%s' (%s %s)" % (self.name, op.command, op.section)):
                self.net.update(_libvirt_const(_COMMANDS[op.command]), _libvirt_const(_SECTIONS[op.section]), op.index, op.xml, flags)

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
        affect_live = _libvirt_const("VIR_DOMAIN_AFFECT_LIVE", 1)
        what = "interface %s of guest '%s'" % (mac, name)
        try:
            if bridge:
                via_bridge = GuestInterfaceXML.from_xml(xml)
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
                ifaces = GuestXML.from_xml(dom.XMLDesc(0)).interfaces
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
            if e.code == _libvirt_const("VIR_ERR_NO_SUPPORT"):
                return []
            raise
        ipv6 = _libvirt_const("VIR_IP_ADDR_TYPE_IPV6", 1)
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
