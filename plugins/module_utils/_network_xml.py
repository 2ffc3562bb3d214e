# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt ``<network>`` XML model: :class:`NetworkXML` and its parts
(``<ip>`` with its DHCP ranges and hosts, DNS host entries, forward
interfaces).

Declarative views on the XML (``_xml.XMLProperty``): parse, edit in place,
serialize. Elements the model does not name are kept untouched. No
connection, no validation, no comparison: those live in ``_network_spec``.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._xml import XMLChildren, XMLObject, XMLProperty


class DHCPHostXML(XMLObject):
    """``<ip><dhcp><host mac= id= name= ip=/>``"""

    TAG = "host"
    mac = XMLProperty("@mac")
    duid = XMLProperty("@id")
    name = XMLProperty("@name")
    ip = XMLProperty("@ip")


class DHCPRangeXML(XMLObject):
    TAG = "range"
    start = XMLProperty("@start")
    end = XMLProperty("@end")


class IPXML(XMLObject):
    """``<ip family= address= prefix= netmask=>`` with its ``<dhcp>``."""

    TAG = "ip"
    family = XMLProperty("@family")
    address = XMLProperty("@address")
    prefix = XMLProperty("@prefix", kind="int")
    netmask = XMLProperty("@netmask")
    ranges = XMLChildren(DHCPRangeXML, "./dhcp/range")
    hosts = XMLChildren(DHCPHostXML, "./dhcp/host")


class HostnameXML(XMLObject):
    TAG = "hostname"
    value = XMLProperty(".")


class DNSHostXML(XMLObject):
    """``<dns><host ip=><hostname>..</hostname></host>``"""

    TAG = "host"
    ip = XMLProperty("@ip")
    hostnames = XMLChildren(HostnameXML, "./hostname")


class ForwardInterfaceXML(XMLObject):
    TAG = "interface"
    dev = XMLProperty("@dev")


class NetworkXML(XMLObject):
    """A libvirt ``<network>`` definition."""

    TAG = "network"
    name = XMLProperty("./name")
    uuid = XMLProperty("./uuid")
    forward_mode = XMLProperty("./forward/@mode")
    forward_dev = XMLProperty("./forward/@dev")
    forward_interfaces = XMLChildren(ForwardInterfaceXML, "./forward/interface")
    bridge_name = XMLProperty("./bridge/@name")
    mtu = XMLProperty("./mtu/@size", kind="int")
    domain_name = XMLProperty("./domain/@name")
    ips = XMLChildren(IPXML, "./ip")
    dns_hosts = XMLChildren(DNSHostXML, "./dns/host")
