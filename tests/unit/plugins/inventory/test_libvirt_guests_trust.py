# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory trusts nothing a guest says (issue 16): lease and ARP
addresses count only inside the guest's own libvirt network, agent addresses
are marked, and a guest cannot take over an existing inventory host's name."""
from __future__ import annotations

import pathlib

from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from ansible_collections.kvmops.virt.plugins.module_utils import _addresses as addr
from ansible_collections.kvmops.virt.tests.unit.plugins.inventory.test_libvirt_guests import (
    FIXTURES, HV1, PLUGIN, hostvars, hosts, parse, write_config)


def _iface(mac, network=None):
    return {"mac": mac, "network": network, "addresses": [], "address_source": None}


def test_lease_and_arp_addresses_outside_the_guest_network_are_dropped():
    subnets = addr.parse_subnets({"lab": ["10.0.0.0/24"]})
    interfaces = [_iface("52:54:00:00:00:01", "lab"), _iface("52:54:00:00:00:02", None), _iface("52:54:00:00:00:03", "lab")]
    arp = {
        "vnet0": {"hwaddr": "52:54:00:00:00:01", "addrs": [{"addr": "192.168.7.7", "prefix": 0, "type": 0},
                                                           {"addr": "10.0.0.9", "prefix": 0, "type": 0}]},
        "vnet1": {"hwaddr": "52:54:00:00:00:02", "addrs": [{"addr": "10.0.0.10", "prefix": 0, "type": 0}]},
    }
    agent = {"eth2": {"hwaddr": "52:54:00:00:00:03", "addrs": [{"addr": "203.0.113.5", "prefix": 24, "type": 0}]}}
    addr.merge_addresses(interfaces, [("lease", None), ("arp", arp), ("agent", agent)], subnets=subnets)
    assert [(i["address_source"], [a["address"] for a in i["addresses"]]) for i in interfaces] == [
        ("arp", ["10.0.0.9"]),   # the other managed machine's address is not taken
        (None, []),              # not on a libvirt network: ARP cannot be checked
        ("agent", ["203.0.113.5"]),  # the agent's word, marked as such
    ]


def test_ansible_host_source_is_a_host_variable(tmp_path):
    v = hostvars(parse(tmp_path, {"uris": [HV1], "names": ["web1"]}), "web1")
    assert v["ansible_host"] == "10.20.0.101"
    assert v["kvm_address_source"] == "lease"
    # web1's third interface is on host bridge br0: no libvirt network to check its lease or ARP address against
    assert v["libvirt_interfaces"][2]["addresses"] == []
    assert "192.168.0.3" not in v["libvirt_addresses"]


def _with_guest_named(tmp_path, new_name):
    text = pathlib.Path(FIXTURES, "hv1.xml").read_text()
    path = tmp_path / "hv-renamed.xml"
    path.write_text(text.replace("<name>web2</name>", "<name>%s</name>" % new_name, 1))
    return "test://%s" % path


def test_a_guest_named_localhost_never_becomes_localhost(tmp_path):
    uri = _with_guest_named(tmp_path, "localhost")
    inventory = parse(tmp_path, {"uris": [uri], "hypervisor_names": {uri: "hv1"}})
    assert "localhost" not in hosts(inventory)
    assert "localhost@hv1" in hosts(inventory)
    assert hostvars(inventory, "localhost@hv1")["libvirt_name"] == "localhost"


def test_a_guest_named_like_an_existing_host_is_renamed(tmp_path):
    path = write_config(tmp_path, {"uris": [HV1], "hypervisor_names": {HV1: "hv1"}})
    inventory = InventoryData()
    inventory.add_host("web1")  # from another inventory source, e.g. a managed machine
    inventory.set_variable("web1", "ansible_host", "192.0.2.1")
    plugin = inventory_loader.get(PLUGIN)
    plugin.parse(inventory, DataLoader(), path, cache=False)
    assert inventory.get_host("web1").get_vars()["ansible_host"] == "192.0.2.1"
    assert "libvirt_name" not in inventory.get_host("web1").get_vars()
    assert inventory.get_host("web1@hv1").get_vars()["libvirt_name"] == "web1"
