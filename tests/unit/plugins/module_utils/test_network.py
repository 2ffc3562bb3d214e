# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virtio_network: golden XML per mode, round trips, validation, update
operations, and the module against libvirt's in-process test:///default
driver (a real libvirt driver, no mocks).

The test driver keeps its state while a connection is open and starts
afresh after the last one closes; each test holds its own connection, so
every test begins with the stock objects: network ``default`` (nat,
192.168.122.0/24) in use by the running guest ``test``, and interface ``eth1``.
"""
from __future__ import annotations

import gc
import json
import os

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._network import NetworkManager
from ansible_collections.kvmops.virt.plugins.module_utils._network_edit import apply_spec, build_network, update_ops
from ansible_collections.kvmops.virt.plugins.module_utils._network_spec import (
    EMPTY_SPEC,
    actual_spec,
    compare,
    desired_spec,
    updatable_families,
)
from ansible_collections.kvmops.virt.plugins.module_utils._network_xml import NetworkXML
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_network_name as check_name
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, parse_xml
from ansible_collections.kvmops.virt.plugins.modules import virtio_network

libvirt = pytest.importorskip("libvirt")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "network")
URI = "test:///default"
DUID = "00:01:00:01:2c:4d:5e:6f:52:54:00:10:00:06"


def params(**kwargs):
    """Module parameters as AnsibleModule hands them over (unset options are None)."""
    base = dict(mode="nat", bridge=None, interface=None, ipv4=None, ipv6=None, domain=None, dns_hosts=None, mtu=None)
    base.update(kwargs)
    return base


def ip(address, dhcp=None, hosts=None):
    return {"address": address, "dhcp": dhcp, "hosts": hosts}


def host(ip_, mac=None, name=None, id_=None):
    return {"ip": ip_, "mac": mac, "name": name, "id": id_}


# (golden file, module parameters)
CASES = [
    ("nat", params(
        mode="nat", bridge="virbr-kvmt", interface="eth1", mtu=9000, domain="lab.example",
        ipv4=ip("10.10.0.1/24", {"start": "10.10.0.100", "end": "10.10.0.199"}, [host("10.10.0.5", "52:54:00:10:00:05", "web1")]),
        ipv6=ip("fd00:10::1/64", {"start": "fd00:10::100", "end": "fd00:10::1ff"}, [host("fd00:10::5", name="web1"), host("fd00:10::6", id_=DUID)]),
        dns_hosts=[{"ip": "10.10.0.5", "hostnames": ["web1", "www"]}],
    )),
    ("route", params(mode="route", ipv4=ip("10.20.0.1/24", {"start": "10.20.0.10", "end": "10.20.0.20"}))),
    ("isolated", params(mode="isolated", ipv4=ip("192.168.210.1/24", hosts=[host("192.168.210.5", "52:54:00:21:00:05")]))),
    ("open", params(mode="open", bridge="virbr-open", ipv4=ip("10.30.0.1/16", {"start": None, "end": None}))),
    ("bridge", params(mode="bridge", bridge="br0")),
    ("macvtap", params(mode="macvtap", interface="eth1")),
]
IDS = [c[0] for c in CASES]


def golden(name):
    with open(os.path.join(FIXTURES, name + ".xml")) as f:
        return f.read()


@pytest.fixture
def conn():
    """A test:///default connection that keeps the driver's state for one test.

    libvirt objects (networks, domains) hold their connection until they are
    garbage collected; collecting before and after lets the driver start afresh.
    """
    gc.collect()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    c = libvirt.open(URI)
    yield c
    c.close()
    gc.collect()


@pytest.fixture
def run(run_module_main, conn):
    """Run the virtio_network module's main() against test:///default; return its JSON result."""

    def _run(check=False, **args):
        return run_module_main(virtio_network, check=check, **args)

    return _run


def snapshot(conn):
    """Every network with its XML and state: what bad input must leave alone."""
    return sorted((n.name(), n.isActive(), n.XMLDesc(0)) for n in conn.listAllNetworks())


def merged(base, **changes):
    """A copy of the argument dict ``base`` with ``changes`` applied."""
    result = {}
    result.update(base)
    result.update(changes)
    return result


def four_way(run, **args):
    """check, apply, check again, apply again; returns the first apply."""
    first = run(check=True, **args)
    applied = run(**args)
    assert not first.get("failed"), first
    assert not applied.get("failed"), applied
    assert first["changed"] == applied["changed"]
    assert first["diff"] == applied["diff"]
    assert first["actions"] == applied["actions"]
    again = run(check=True, **args)
    assert not again["changed"], again["diff"]
    last = run(**args)
    assert not last["changed"], last["diff"]
    assert last["actions"] == []
    return applied


# -- golden XML ------------------------------------------------------------------
@pytest.mark.parametrize("fixture, args", CASES, ids=IDS)
def test_network_xml_matches_golden_file(fixture, args):
    model = build_network("kvmt-" + fixture, desired_spec(args))
    assert canonical(model.node) == canonical(parse_xml(golden(fixture)))


@pytest.mark.parametrize("fixture, args", CASES, ids=IDS)
def test_golden_xml_round_trips_through_libvirt(conn, fixture, args):
    """libvirt's own network parser accepts the XML, and what it gives back compares equal."""
    net = conn.networkDefineXML(golden(fixture))
    try:
        back = NetworkXML.from_xml(net.XMLDesc(0))
        assert back.uuid  # generated by libvirt
        assert back.name == "kvmt-" + fixture
        assert compare(desired_spec(args), actual_spec(back)) == []
        assert actual_spec(back) == actual_spec(NetworkXML.from_xml(golden(fixture)))
    finally:
        net.undefine()


@pytest.mark.parametrize("fixture, args", CASES, ids=IDS)
def test_model_reads_back_what_it_wrote(fixture, args):
    desired = desired_spec(args)
    model = build_network("x", desired)
    again = NetworkXML.from_xml(model.to_xml())
    assert canonical(again.node) == canonical(model.node)
    assert compare(desired, actual_spec(again)) == []


def test_actual_spec_normalizes_libvirt_formatting():
    spec = actual_spec(NetworkXML.from_xml(golden("existing-nat")))
    assert spec["mode"] == "nat"
    assert spec["interface"] == "eth1"
    assert spec["bridge"] == "virbr7"
    assert spec["ipv4"]["address"] == "10.10.0.1/24"  # netmask= read as a prefix
    assert spec["ipv6"]["address"] == "fd00:10::1/64"  # uncompressed IPv6 compressed
    assert spec["ipv4"]["dhcp"] == {"start": "10.10.0.100", "end": "10.10.0.199"}
    assert spec["ipv4"]["hosts"] == {
        "52:54:00:10:00:05": {"mac": "52:54:00:10:00:05", "name": "web1", "ip": "10.10.0.5"},
        "52:54:00:10:00:07": {"mac": "52:54:00:10:00:07", "ip": "10.10.0.7"},
    }
    assert spec["ipv6"]["hosts"] == {"web1": {"name": "web1", "ip": "fd00:10::5"}}
    assert spec["dns_hosts"] == {"10.10.0.5": ["web1"]}


def test_generated_values_never_count_as_changes():
    """uuid, bridge name and MAC, stp, NAT ports: libvirt's, not the user's."""
    existing = NetworkXML.from_xml(golden("existing-nat"))
    desired = desired_spec(params(mode="nat", ipv4=ip("10.10.0.1/24", {"start": "10.10.0.100", "end": "10.10.0.199"})))
    assert compare(desired, actual_spec(existing)) == []


def test_editing_keeps_what_the_model_does_not_know():
    existing = NetworkXML.from_xml(golden("existing-nat"))
    before = actual_spec(existing)
    desired = desired_spec(params(
        mode="nat",
        ipv4=ip("10.10.0.1/24", {"start": "10.10.0.50", "end": "10.10.0.60"},
                [host("10.10.0.5", "52:54:00:10:00:05", "web1"), host("10.10.0.8", "52:54:00:10:00:08")]),
        dns_hosts=[{"ip": "10.10.0.8", "hostnames": ["db"]}],
    ))
    apply_spec(existing, desired, before)
    text = existing.to_xml()
    node = parse_xml(text)
    assert node.find("uuid").text == "21080f4d-2304-415b-aa72-b46a260a0fce"
    assert node.find("mac").get("address") == "52:54:00:ce:e3:b2"
    assert node.find("bridge").get("stp") == "on"
    assert node.find("forward/nat/port").get("start") == "1024"
    assert node.find("dns/forwarder").get("addr") == "192.0.2.53"
    assert node.find("domain").get("localOnly") == "yes"
    assert node.find("ip/tftp").get("root") == "/srv/tftp"
    assert node.find("ip/dhcp/bootp").get("file") == "pxelinux.0"
    # the unchanged host keeps its <lease>; the one not listed is gone
    kept = [h for h in node.findall("ip/dhcp/host") if h.get("mac") == "52:54:00:10:00:05"][0]
    assert kept.find("lease").get("expiry") == "1"
    assert not [h for h in node.findall("ip/dhcp/host") if h.get("mac") == "52:54:00:10:00:07"]
    assert compare(desired, actual_spec(NetworkXML.from_xml(text))) == []


def test_switching_to_bridge_mode_drops_what_a_host_bridge_network_cannot_have():
    existing = NetworkXML.from_xml(golden("existing-nat"))
    desired = desired_spec(params(mode="bridge", bridge="br0"))
    changes = {c.path: c for c in compare(desired, actual_spec(existing))}
    assert set(changes) == {"mode", "bridge", "domain", "ipv4", "ipv6", "dns_hosts"}
    assert changes["ipv4"].after is None
    apply_spec(existing, desired, actual_spec(NetworkXML.from_xml(golden("existing-nat"))))
    node = existing.node
    assert node.find("ip") is None and node.find("dns") is None and node.find("mac") is None
    assert node.find("forward").get("mode") == "bridge" and node.find("forward/nat") is None
    assert node.find("bridge").attrib == {"name": "br0"}
    assert actual_spec(existing)["mode"] == "bridge"


def test_switching_from_a_host_bridge_lets_libvirt_name_its_bridge():
    existing = build_network("x", desired_spec(params(mode="bridge", bridge="br0")))
    desired = desired_spec(params(mode="isolated", ipv4=ip("10.1.0.1/24")))
    apply_spec(existing, desired, actual_spec(existing))
    assert existing.bridge_name is None
    assert existing.forward_mode is None
    assert actual_spec(existing)["mode"] == "isolated"


def test_macvtap_mode_is_read_back_as_macvtap():
    model = NetworkXML.from_xml("<network><name>d</name><forward mode='bridge' dev='eth1'><interface dev='eth1'/></forward></network>")
    assert actual_spec(model)["mode"] == "macvtap"
    assert actual_spec(model)["interface"] == "eth1"


def test_xml_metacharacters_in_values_are_escaped_by_the_model():
    model = NetworkXML()
    model.name = "a<b&c'd"
    text = model.to_xml()
    assert "<b&" not in text
    assert NetworkXML.from_xml(text).name == "a<b&c'd"


# -- diff keys ----------------------------------------------------------------
def test_diff_paths_are_option_paths():
    existing = NetworkXML.from_xml(golden("existing-nat"))
    desired = desired_spec(params(
        mode="nat",
        ipv4=ip("10.10.0.1/24", hosts=[host("10.10.0.6", "52:54:00:10:00:05", "web1"), host("10.10.0.9", "52:54:00:10:00:09")]),
        dns_hosts=[{"ip": "10.10.0.5", "hostnames": ["web1", "www"]}],
    ))
    changes = {c.path: (c.before, c.after, c.family) for c in compare(desired, actual_spec(existing))}
    assert changes == {
        "ipv4.hosts[52:54:00:10:00:05].ip": ("10.10.0.5", "10.10.0.6", "ipv4"),
        "ipv4.hosts[52:54:00:10:00:07]": ({"mac": "52:54:00:10:00:07", "ip": "10.10.0.7"}, None, "ipv4"),
        "ipv4.hosts[52:54:00:10:00:09]": (None, {"mac": "52:54:00:10:00:09", "ip": "10.10.0.9"}, "ipv4"),
        "dns_hosts[10.10.0.5].hostnames": (["web1"], ["web1", "www"], "dns"),
    }


def test_a_new_network_diff_lists_what_the_user_specified():
    desired = desired_spec(CASES[0][1])
    paths = [c.path for c in compare(desired, EMPTY_SPEC)]
    assert paths[:5] == ["mode", "bridge", "interface", "mtu", "domain"]
    assert "ipv6.hosts[%s]" % DUID in paths and "ipv6.hosts[web1]" in paths
    assert "dns_hosts[10.10.0.5]" in paths


# -- update operations --------------------------------------------------------
def test_update_ops_delete_exactly_then_add():
    existing = NetworkXML.from_xml(golden("existing-nat"))
    desired = desired_spec(params(
        mode="nat",
        # web1 and the .7 host swap addresses: delete both first, then add both
        ipv4=ip("10.10.0.1/24", hosts=[host("10.10.0.7", "52:54:00:10:00:05", "web1"), host("10.10.0.5", "52:54:00:10:00:07")]),
        ipv6=ip("fd00:10::1/64", hosts=[host("fd00:10::5", name="web1"), host("fd00:10::6", id_=DUID)]),
        dns_hosts=[],
    ))
    families = updatable_families(existing, desired)
    assert families == {"ipv4", "ipv6", "dns"}
    ops = update_ops(existing, desired, families)
    summary = [(o.command, o.section, o.index) for o in ops]
    assert summary == [
        ("delete", "ip-dhcp-host", 0),
        ("delete", "ip-dhcp-host", 0),
        ("delete", "dns-host", -1),
        ("add-last", "ip-dhcp-host", 0),
        ("add-last", "ip-dhcp-host", 0),
        ("add-last", "ip-dhcp-host", 1),
    ]
    deleted = parse_xml(ops[0].xml)
    assert (deleted.get("mac"), deleted.get("name"), deleted.get("ip")) == ("52:54:00:10:00:05", "web1", "10.10.0.5")
    added = parse_xml(ops[5].xml)
    assert added.attrib == {"id": DUID, "ip": "fd00:10::6"}
    dns_delete = parse_xml(ops[2].xml)  # by address only: libvirt matches the address or any name
    assert dns_delete.attrib == {"ip": "10.10.0.5"} and len(dns_delete) == 0


def test_dns_hosts_sharing_a_name_need_a_redefinition():
    """libvirt's update API refuses a DNS host that shares a name with another one."""
    existing = NetworkXML.from_xml(golden("existing-nat"))
    desired = desired_spec(params(mode="nat", dns_hosts=[{"ip": "10.10.0.5", "hostnames": ["web1"]}, {"ip": "fd00:10::5", "hostnames": ["web1"]}]))
    assert "dns" not in updatable_families(existing, desired)
    desired = desired_spec(params(mode="nat", dns_hosts=[{"ip": "10.10.0.5", "hostnames": ["web1"]}, {"ip": "fd00:10::5", "hostnames": ["web1-v6"]}]))
    assert "dns" in updatable_families(existing, desired)


def test_hosts_of_a_readdressed_family_are_not_updated_live():
    existing = NetworkXML.from_xml(golden("existing-nat"))
    desired = desired_spec(params(mode="nat", ipv4=ip("10.11.0.1/24", hosts=[host("10.11.0.5", "52:54:00:10:00:05")])))
    assert "ipv4" not in updatable_families(existing, desired)


def test_update_ops_apply_on_the_test_driver(conn):
    net = conn.networkDefineXML(golden("nat"))
    try:
        net.create()
        model = NetworkXML.from_xml(net.XMLDesc(0))
        desired = desired_spec(params(
            mode="nat", ipv4=ip("10.10.0.1/24", hosts=[host("10.10.0.6", "52:54:00:10:00:05", "web1"), host("10.10.0.9", "52:54:00:10:00:09")]),
            dns_hosts=[{"ip": "10.10.0.9", "hostnames": ["db"]}],
        ))
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        for op in update_ops(model, desired, updatable_families(model, desired)):
            command = {"delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, "add-last": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST}[op.command]
            section = {"ip-dhcp-host": libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, "dns-host": libvirt.VIR_NETWORK_SECTION_DNS_HOST}[op.section]
            net.update(command, section, op.index, op.xml, flags)
        assert compare(desired, actual_spec(NetworkXML.from_xml(net.XMLDesc(0)))) == []
    finally:
        net.destroy()
        net.undefine()


# -- validation ----------------------------------------------------------------------
GW = "192.168.210.1/24"


@pytest.mark.parametrize("args, option, fragment", [
    (params(ipv4=ip("192.168.210.1")), "ipv4.address", "needs a prefix length"),
    (params(ipv4=ip("192.168.300.1/24")), "ipv4.address", "not a valid IPv4 address"),
    (params(ipv4=ip("192.168.210.1/33")), "ipv4.address", "not a valid IPv4 address"),
    (params(ipv4=ip("fd00::1/64")), "ipv4.address", "expected an IPv4"),
    (params(ipv4=ip("192.168.210.0/24")), "ipv4.address", "network address"),
    (params(ipv4=ip("192.168.210.255/24")), "ipv4.address", "broadcast address"),
    (params(ipv4=ip("192.168.210.1/31")), "ipv4.address", "leaves no addresses"),
    (params(ipv4=ip(GW, {"start": "192.168.211.10", "end": "192.168.211.20"})), "ipv4.dhcp.start", "outside the network 192.168.210.0/24"),
    (params(ipv4=ip(GW, {"start": "192.168.210.10", "end": "10.0.0.1"})), "ipv4.dhcp.end", "outside the network"),
    (params(ipv4=ip(GW, {"start": "192.168.210.50", "end": "192.168.210.10"})), "ipv4.dhcp", "must be ordered"),
    (params(ipv4=ip(GW, {"start": "192.168.210.1", "end": "192.168.210.10"})), "ipv4.dhcp", "includes the gateway"),
    (params(ipv4=ip(GW, {"start": "192.168.210.10", "end": None})), "ipv4.dhcp", "both start and end"),
    (params(ipv4=ip(GW, {"start": "192.168.210.0", "end": "192.168.210.9"})), "ipv4.dhcp.start", "network address"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52:54:00:zz:00:01")])), "ipv4.hosts[0].mac", "not a valid MAC"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52:54:00:00:01")])), "ipv4.hosts[0].mac", "not a valid MAC"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "525400110011")])), "ipv4.hosts[0].mac", "quote MAC addresses"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "01:00:5e:00:00:01")])), "ipv4.hosts[0].mac", "multicast"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52:54:00:00:00:01"), host("192.168.210.5", "52:54:00:00:00:02")])),
     "ipv4.hosts[1].ip", "duplicate host ip 192.168.210.5"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52:54:00:00:00:01"), host("192.168.210.6", "52:54:00:00:00:01")])),
     "ipv4.hosts[1].mac", "duplicate host mac"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", name="a"), host("192.168.210.6", name="A")])), "ipv4.hosts[1].name", "duplicate host name"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5")])), "ipv4.hosts[0]", "needs a mac or a name"),
    (params(ipv4=ip(GW, hosts=[host("192.168.9.5", "52:54:00:00:00:01")])), "ipv4.hosts[0].ip", "outside the network"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.1", "52:54:00:00:00:01")])), "ipv4.hosts[0].ip", "gateway"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52:54:00:00:00:01", "bad_name")])), "ipv4.hosts[0].name", "not a valid host name"),
    (params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52:54:00:00:00:01", id_=DUID)])), "ipv4.hosts[0].id", "only applies to ipv6"),
    (params(ipv6=ip("fd00:10::1/64", hosts=[host("fd00:10::5", "52:54:00:00:00:01")])), "ipv6.hosts[0].mac", "not by MAC"),
    (params(ipv6=ip("fd00:10::1/64", hosts=[host("fd00:10::5", id_="xyz")])), "ipv6.hosts[0].id", "DUID"),
    (params(ipv6=ip("fd00:10::1/64", hosts=[host("fd00:10::5")])), "ipv6.hosts[0]", "needs a name or an id"),
    (params(ipv6=ip("fd00:10::1/48", {"start": "fd00:10::10", "end": "fd00:10::20"})), "ipv6.address", "64 or longer"),
    (params(ipv6=ip("fd00:10::1/64", {"start": "fd00:11::10", "end": "fd00:11::20"})), "ipv6.dhcp.start", "outside"),
    (params(dns_hosts=[{"ip": "10.0.0.1", "hostnames": ["a"]}, {"ip": "10.0.0.1", "hostnames": ["b"]}]), "dns_hosts[1].ip", "duplicate"),
    (params(dns_hosts=[{"ip": "10.0.0.256", "hostnames": ["a"]}]), "dns_hosts[0].ip", "not a valid IP address"),
    (params(dns_hosts=[{"ip": "10.0.0.1", "hostnames": []}]), "dns_hosts[0].hostnames", "at least one"),
    (params(dns_hosts=[{"ip": "10.0.0.1", "hostnames": ["-x"]}]), "dns_hosts[0].hostnames[0]", "not a valid host name"),
    (params(domain="bad domain"), "domain", "not a valid host name"),
    (params(mode="bogus"), "mode", "not a network mode"),
    (params(mode="bridge"), "bridge", "required with mode bridge"),
    (params(mode="macvtap"), "interface", "required with mode macvtap"),
    (params(mode="macvtap", interface="eth1", bridge="br0"), "bridge", "not used with mode macvtap"),
    (params(mode="isolated", interface="eth1"), "interface", "not used with mode isolated"),
    (params(mode="bridge", bridge="br0", ipv4=ip(GW)), "ipv4", "not supported with mode bridge"),
    (params(mode="macvtap", interface="eth1", mtu=9000), "mtu", "not supported with mode macvtap"),
    (params(mode="bridge", bridge="br0", dns_hosts=[]), "dns_hosts", "not supported with mode bridge"),
    (params(bridge="this-name-is-too-long"), "bridge", "not a valid Linux network interface name"),
    (params(bridge="br/0"), "bridge", "not a valid Linux network interface name"),
    (params(mtu=10), "mtu", "not a usable MTU"),
    (params(mtu=1000, ipv6=ip("fd00:10::1/64")), "mtu", "at least 1280"),
])
def test_bad_input_names_the_option(args, option, fragment):
    with pytest.raises(InvalidArgument) as err:
        desired_spec(args)
    assert err.value.option == option
    assert err.value.msg.startswith(option + ": ")
    assert fragment in err.value.msg


@pytest.mark.parametrize("name", ["", "  ", "a/b", "..", "a b", "a\tb", "a<b", "x&y", "it's", 'q"', "x>y", "a\x00b"])
def test_bad_names(name):
    with pytest.raises(InvalidArgument) as err:
        check_name(name)
    assert err.value.option == "name"


def test_macs_are_normalized():
    spec = desired_spec(params(ipv4=ip(GW, hosts=[host("192.168.210.5", "52-54-00-AA-BB-CC")])))
    assert list(spec["ipv4"]["hosts"]) == ["52:54:00:aa:bb:cc"]


# -- the module on test:///default -----------------------------------------------
def test_argument_spec_covers_the_documented_options():
    assert set(virtio_network.ARGUMENT_SPEC) == {
        "uri", "name", "state", "mode", "bridge", "interface", "ipv4", "ipv6", "domain", "dns_hosts", "mtu", "autostart", "force",
    }


NAT = dict(name="kvmt-u-nat", mode="nat", ipv4=dict(address="10.40.0.1/24", dhcp=dict(start="10.40.0.10", end="10.40.0.99")))


def test_four_way_create_active(run, conn):
    applied = four_way(run, autostart=True, **NAT)
    assert applied["diff"]["before"]["state"] == "absent"
    assert applied["diff"]["after"]["state"] == "active"
    assert applied["diff"]["after"]["ipv4.address"] == "10.40.0.1/24"
    net = conn.networkLookupByName("kvmt-u-nat")
    assert net.isActive() and net.autostart()
    assert applied["network"]["uuid"] == net.UUIDString()
    assert applied["network"]["active"] is True
    assert applied["network"]["leases"] == []  # the test driver has no lease API
    assert applied["restart_required"] is False


def test_check_mode_changes_nothing_and_predicts(run, conn):
    before = snapshot(conn)
    result = run(check=True, **NAT)
    assert result["changed"]
    assert result["network"]["state"] == "active" and result["network"]["uuid"] is None
    assert snapshot(conn) == before


@pytest.mark.parametrize("state, active", [("present", False), ("inactive", False), ("active", True)])
def test_four_way_states_from_nothing(run, conn, state, active):
    four_way(run, state=state, **NAT)
    net = conn.networkLookupByName("kvmt-u-nat")
    assert bool(net.isActive()) is active


def test_four_way_state_transitions(run, conn):
    four_way(run, state="present", **NAT)
    four_way(run, state="active", **NAT)
    result = four_way(run, state="present", **NAT)  # present keeps it running
    assert result is not None and conn.networkLookupByName("kvmt-u-nat").isActive()
    stopped = four_way(run, state="inactive", **NAT)
    assert stopped["diff"] == {"before": {"state": "active"}, "after": {"state": "inactive"}}
    four_way(run, state="absent", name="kvmt-u-nat")
    assert "kvmt-u-nat" not in [n.name() for n in conn.listAllNetworks()]


@pytest.mark.parametrize("fixture, args", CASES, ids=IDS)
def test_four_way_every_mode(run, conn, fixture, args):
    conn.interfaceDefineXML(
        "<interface type='bridge' name='br0'><start mode='none'/><bridge stp='off'>"
        "<interface type='ethernet' name='eth9'><mac address='52:54:00:00:09:09'/></interface></bridge></interface>"
    )
    module_args = {k: v for k, v in args.items() if v is not None}
    four_way(run, name="kvmt-u-" + fixture, **module_args)
    net = conn.networkLookupByName("kvmt-u-" + fixture)
    assert compare(desired_spec(args), actual_spec(NetworkXML.from_xml(net.XMLDesc(0)))) == []


def test_changing_modes_in_place(run, conn):
    four_way(run, **NAT)
    for mode in ("route", "open", "isolated", "nat"):
        result = four_way(run, **merged(NAT, mode=mode))
        assert "mode" in result["diff"]["after"]
        assert result["actions"] == ["restart network 'kvmt-u-nat' with the new settings"]
    conn.interfaceDefineXML("<interface type='bridge' name='br0'><start mode='none'/><bridge/></interface>")
    result = four_way(run, name="kvmt-u-nat", mode="bridge", bridge="br0")
    assert result["diff"]["after"]["ipv4"] is None
    result = four_way(run, **NAT)
    assert result["diff"]["before"]["mode"] == "bridge"


def test_dns_hosts_sharing_a_name_are_applied_by_a_restart(run, conn):
    four_way(run, **NAT)
    result = four_way(run, dns_hosts=[dict(ip="10.40.0.5", hostnames=["web1"]), dict(ip="fd00:40::5", hostnames=["web1"])], **NAT)
    assert result["actions"] == ["restart network 'kvmt-u-nat' with the new settings"]


def test_dhcp_host_and_dns_changes_use_the_update_api(run, conn):
    four_way(run, **NAT)
    args = merged(NAT, ipv4=merged(NAT["ipv4"], hosts=[dict(mac="52:54:00:40:00:05", ip="10.40.0.5", name="web1")]),
                  dns_hosts=[dict(ip="10.40.0.5", hostnames=["web1", "www"])])
    result = four_way(run, **args)
    assert result["actions"] == ["update network 'kvmt-u-nat' (live and persistent): add-last ip-dhcp-host, add-last dns-host"]
    assert result["diff"]["after"]["ipv4.hosts[52:54:00:40:00:05]"] == {"mac": "52:54:00:40:00:05", "ip": "10.40.0.5", "name": "web1"}
    # change one, remove the other
    args["ipv4"]["hosts"][0]["ip"] = "10.40.0.6"
    args["dns_hosts"] = []
    result = four_way(run, **args)
    assert result["diff"] == {
        "before": {"ipv4.hosts[52:54:00:40:00:05].ip": "10.40.0.5", "dns_hosts[10.40.0.5]": {"ip": "10.40.0.5", "hostnames": ["web1", "www"]}},
        "after": {"ipv4.hosts[52:54:00:40:00:05].ip": "10.40.0.6", "dns_hosts[10.40.0.5]": None},
    }
    assert "restart" not in " ".join(result["actions"])


def test_hosts_on_an_inactive_network_update_the_definition(run, conn):
    four_way(run, state="inactive", **NAT)
    args = merged(NAT, state="inactive", ipv4=merged(NAT["ipv4"], hosts=[dict(mac="52:54:00:40:00:05", ip="10.40.0.5")]))
    result = four_way(run, **args)
    assert result["actions"] == ["update network 'kvmt-u-nat' (persistent): add-last ip-dhcp-host"]
    assert not conn.networkLookupByName("kvmt-u-nat").isActive()


def test_a_change_needing_a_restart_is_done_directly_without_guests(run, conn):
    four_way(run, **NAT)
    result = four_way(run, **merged(NAT, ipv4=merged(NAT["ipv4"], dhcp=dict(start="10.40.0.100", end="10.40.0.200"))))
    assert result["actions"] == ["restart network 'kvmt-u-nat' with the new settings"]
    assert result["restart_required"] is False


# The stock network 'default' is used by the stock running guest 'test'.
DEFAULT = dict(name="default", mode="nat", ipv4=dict(address="192.168.122.1/24", dhcp=dict(start="192.168.122.2", end="192.168.122.254")))


def test_stock_default_network_is_unchanged_by_its_own_settings(run):
    result = run(check=True, **DEFAULT)
    assert not result["changed"], result["diff"]


def run_manager(check=False, **args):
    """The manager's result before the module edge: it still carries the warnings."""
    args = dict(args, uri=URI, _ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args):
        module = AnsibleModule(argument_spec=virtio_network.ARGUMENT_SPEC, supports_check_mode=True)
    client = LibvirtClient(URI)
    try:
        return NetworkManager(module, client).run()
    finally:
        client.close()


def test_restart_required_when_a_running_guest_uses_the_network(run, conn):
    """Without force, only the persistent definition changes.

    The test driver cannot show a pending definition (no
    VIR_NETWORK_XML_INACTIVE), so the second pair of the four-way test
    runs in the integration tests against the real daemon.
    """
    args = merged(DEFAULT, ipv4=merged(DEFAULT["ipv4"], dhcp=dict(start="192.168.122.100", end="192.168.122.200")))
    check = run(check=True, **args)
    result = run_manager(**args)
    assert check["changed"] and result["changed"]
    assert check["diff"] == result["diff"]
    assert result["restart_required"] is True and check["restart_required"] is True
    assert result["pending_changes"] == ["ipv4.dhcp"]
    assert result["actions"] == ["define network 'default' with the new settings"]
    assert result["reconnected_guests"] == [] and result["disconnected_guests"] == []
    assert any("force: true" in w and "ipv4.dhcp" in w for w in result["warnings"])
    assert conn.networkLookupByName("default").isActive()
    assert conn.lookupByName("test").isActive()


def test_force_restarts_and_reports_guests_it_could_not_reconnect(run, conn):
    """The test driver cannot update or hot-plug devices: the guest is reported as disconnected."""
    args = merged(DEFAULT, force=True, ipv4=merged(DEFAULT["ipv4"], dhcp=dict(start="192.168.122.100", end="192.168.122.200")))
    check = run(check=True, **args)
    assert check["reconnected_guests"] == ["test"]
    result = run_manager(**args)
    assert result["changed"] and result["diff"] == check["diff"]
    assert result["actions"] == ["restart network 'default' with the new settings", "reconnect guests test"]
    assert result["restart_required"] is False
    assert result["disconnected_guests"] == ["test"]
    assert result["reconnected_guests"] == []
    assert any("guest 'test' lost its link" in w for w in result["warnings"])
    assert not run(check=True, **args)["changed"]
    assert not run(**args)["changed"]


def test_dhcp_hosts_are_updated_live_under_a_running_guest(run, conn):
    args = merged(DEFAULT, ipv4=merged(DEFAULT["ipv4"], hosts=[dict(mac="aa:bb:cc:dd:ee:fe", ip="192.168.122.50", name="guest")]))
    result = four_way(run, **args)
    assert result["restart_required"] is False
    assert result["actions"] == ["update network 'default' (live and persistent): add-last ip-dhcp-host"]
    assert conn.lookupByName("test").isActive()


@pytest.mark.parametrize("state", ["absent", "inactive"])
def test_stopping_a_network_in_use_is_refused_without_force(run, conn, state):
    before = snapshot(conn)
    result = run(**merged(DEFAULT, state=state))
    assert result["failed"]
    assert "used by running guests (test)" in result["msg"] and "force: true" in result["msg"]
    assert snapshot(conn) == before
    forced = run(**merged(DEFAULT, state=state, force=True))
    assert forced["changed"] and forced["disconnected_guests"] == ["test"]


BAD_INPUT = [
    (dict(name="kvmt-bad", ipv4=dict(address="10.50.0.1/33")), "ipv4.address"),
    (dict(name="kvmt-bad", ipv4=dict(address="10.50.0.1/24", dhcp=dict(start="10.51.0.10", end="10.51.0.20"))), "ipv4.dhcp.start"),
    (dict(name="kvmt-bad", ipv4=dict(address="10.50.0.1/24", hosts=[dict(mac="52:54:00:xx:00:01", ip="10.50.0.5")])), "ipv4.hosts[0].mac"),
    (dict(name="kvmt-bad", ipv4=dict(address="10.50.0.1/24", hosts=[dict(mac="52:54:00:00:00:01", ip="10.50.0.5"),
                                                                    dict(mac="52:54:00:00:00:02", ip="10.50.0.5")])), "ipv4.hosts[1].ip"),
    (dict(name="kvmt-bad", mode="bogus"), "mode"),
    (dict(name="kvmt-bad", mode="bridge", bridge="kvmtnosuchbr"), "bridge"),
    (dict(name="kvmt-bad", mode="bridge", bridge="eth1"), "bridge"),
    (dict(name="kvmt-bad", mode="macvtap", interface="kvmtnosuch"), "interface"),
    (dict(name="kvmt<bad>&'\""), "name"),
    # the same against an existing network: it must stay as it is
    (dict(name="default", ipv4=dict(address="192.168.122.1/24", dhcp=dict(start="192.168.122.200", end="192.168.122.100"))), "ipv4.dhcp"),
    (dict(name="default", ipv4=dict(address="192.168.122.1/24", hosts=[dict(mac="52:54:00:00:00:01", ip="192.168.123.5")])), "ipv4.hosts[0].ip"),
]


@pytest.mark.parametrize("args, option", BAD_INPUT, ids=[str(i) for i in range(len(BAD_INPUT))])
def test_bad_input_fails_cleanly_and_changes_nothing(run, conn, args, option):
    before = snapshot(conn)
    result = run(**args)
    assert result["failed"]
    assert option in result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert snapshot(conn) == before
    checked = run(check=True, **args)
    assert checked["failed"]


def test_unreachable_uri_fails_with_a_message(capsys):
    args = dict(name="x", uri="qemu+unix:///system?socket=/nonexistent/kvmt.sock",
                _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            virtio_network.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "uri" in result["msg"]
