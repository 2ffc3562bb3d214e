# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils._errors import VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._xml import (
    XMLChildren,
    XMLFlag,
    XMLObject,
    XMLProperty,
    canonical,
    parse_xml,
)


class Host(XMLObject):
    TAG = "host"
    mac = XMLProperty("@mac")
    ip = XMLProperty("@ip")


class Net(XMLObject):
    TAG = "network"
    name = XMLProperty("./name")
    mode = XMLProperty("./forward/@mode")
    mtu = XMLProperty("./mtu/@size", kind="int")
    stp = XMLProperty("./bridge/@stp", kind="onoff")
    ipv6 = XMLProperty("@ipv6", kind="bool")
    dhcp_start = XMLProperty("./ip[@family='ipv4']/dhcp/range/@start")
    hosts = XMLChildren(Host, "./ip/dhcp/host")
    acpi = XMLFlag("./features/acpi")


def test_properties_create_paths_and_read_back():
    net = Net()
    net.name = "lab"
    net.mode = "nat"
    net.mtu = 9000
    net.stp = True
    net.ipv6 = False
    assert (net.name, net.mode, net.mtu, net.stp, net.ipv6) == ("lab", "nat", 9000, True, False)
    xml = net.to_xml()
    assert "<forward mode=\"nat\"/>" in xml
    assert "stp=\"on\"" in xml and "ipv6=\"no\"" in xml


def test_predicate_steps_are_created_with_their_attribute():
    net = Net()
    net.dhcp_start = "10.0.0.10"
    assert net.find("./ip").get("family") == "ipv4"
    assert net.dhcp_start == "10.0.0.10"


def test_setting_none_removes_and_prunes_empty_parents():
    net = Net.from_xml("<network><name>a</name><forward mode='nat'/><mtu size='1500'/></network>")
    net.mode = None
    net.mtu = None
    assert net.find("./forward") is None
    assert net.find("./mtu") is None
    assert net.name == "a"


def test_unmodeled_elements_survive_round_trip():
    text = "<network><name>a</name><custom xmlns:x='urn:x'><x:thing k='v'>t</x:thing></custom><forward mode='route'/></network>"
    net = Net.from_xml(text)
    net.mode = "nat"
    again = Net.from_xml(net.to_xml())
    assert again.find("./custom") is not None
    assert again.mode == "nat"
    assert canonical(again.find("./custom")) == canonical(parse_xml(text).find("./custom"))


def test_children_add_iterate_remove():
    net = Net()
    net.hosts.add(mac="52:54:00:00:00:01", ip="10.0.0.2")
    net.hosts.add(mac="52:54:00:00:00:02", ip="10.0.0.3")
    assert [h.ip for h in net.hosts] == ["10.0.0.2", "10.0.0.3"]
    net.hosts.remove(net.hosts[0])
    assert len(net.hosts) == 1 and net.hosts[0].mac == "52:54:00:00:00:02"
    net.hosts.clear()
    assert len(net.hosts) == 0


def test_flags():
    net = Net()
    assert net.acpi is False
    net.acpi = True
    assert net.acpi is True and net.find("./features/acpi") is not None
    net.acpi = False
    assert net.find("./features/acpi") is None


def test_metacharacters_are_escaped_not_injected():
    net = Net()
    net.name = "a<b>&'\"c"
    xml = net.to_xml()
    assert "<b>" not in xml
    assert Net.from_xml(xml).name == "a<b>&'\"c"


def test_malformed_and_wrong_root_are_clear_errors():
    with pytest.raises(VirtError, match="not well-formed"):
        Net.from_xml("<network><name>")
    with pytest.raises(VirtError, match="expected <network> XML, got <domain>"):
        Net.from_xml("<domain/>")


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    text = '<!DOCTYPE n [<!ENTITY e SYSTEM "file://%s">]><network><name>&e;</name></network>' % secret
    net = Net.from_xml(text)
    assert "TOPSECRET" not in net.to_xml()


def test_equality_ignores_attribute_order_and_whitespace():
    a = Net.from_xml("<network><forward mode='nat' dev='eth0'/></network>")
    b = Net.from_xml("<network>\n  <forward dev='eth0' mode='nat'/>\n</network>")
    assert a == b
    assert a.copy() == a and a.copy() is not a
