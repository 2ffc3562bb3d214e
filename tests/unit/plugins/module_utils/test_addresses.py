# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_addresses.LeaseReplies: the lease source of many guests from each network's leases read once.

libvirt's test driver has no virNetworkGetDHCPLeases, so the network here is a
small stand-in that counts its calls; the guests are real Domain models."""
from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils import _addresses as addr
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain

GUEST = """<domain type='kvm'><name>%s</name><devices>
<interface type='network'><mac address='%s'/><source network='lab'/><target dev='%s'/></interface>
<interface type='bridge'><mac address='52:54:00:00:00:99'/><source bridge='br0'/></interface>
</devices></domain>"""


class Net:
    def __init__(self, leases):
        self.leases = leases
        self.calls = 0

    def DHCPLeases(self, mac, flags):  # noqa: N802 (libvirt's name)
        self.calls += 1
        return self.leases

    def XMLDesc(self, flags):  # noqa: N802
        return "<network><name>lab</name></network>"


class Client:
    def __init__(self, nets):
        self.nets = nets

    def lookup_network(self, name):
        return self.nets.get(name)


class Dom:
    def __init__(self):
        self.asked = 0

    def interfaceAddresses(self, source, flags):  # noqa: N802
        self.asked += 1
        return {"vnet9": {"hwaddr": "52:54:00:00:00:09", "addrs": [{"type": 0, "addr": "10.9.9.9", "prefix": 24}]}}


def test_each_network_is_read_once_for_all_guests():
    net = Net([
        {"mac": "52:54:00:00:00:01", "ipaddr": "10.0.0.11", "prefix": 24, "type": 0},
        {"mac": "52:54:00:00:00:02", "ipaddr": "10.0.0.12", "prefix": 24, "type": 0},
        {"mac": "52:54:00:00:00:02", "ipaddr": "fd00::12", "prefix": 64, "type": 1},
    ])
    replies = addr.LeaseReplies(Client({"lab": net}))
    one = replies.reply(Dom(), Domain.from_xml(GUEST % ("g1", "52:54:00:00:00:01", "vnet0")))
    two = replies.reply(Dom(), Domain.from_xml(GUEST % ("g2", "52:54:00:00:00:02", "vnet1")))
    three = replies.reply(Dom(), Domain.from_xml(GUEST % ("g3", "52:54:00:00:00:03", "vnet2")))
    assert net.calls == 1
    assert replies.single_queries == 0
    # The shape of virDomainInterfaceAddresses(SRC_LEASE): host-side interface name, MAC, one entry per lease.
    assert one == {"vnet0": {"hwaddr": "52:54:00:00:00:01", "addrs": [{"type": 0, "addr": "10.0.0.11", "prefix": 24}]}}
    assert [a["addr"] for a in two["vnet1"]["addrs"]] == ["10.0.0.12", "fd00::12"]
    assert three == {}


def test_a_network_without_readable_leases_asks_the_guest():
    replies = addr.LeaseReplies(Client({}))
    dom = Dom()
    reply = replies.reply(dom, Domain.from_xml(GUEST % ("g1", "52:54:00:00:00:01", "vnet0")))
    assert dom.asked == 1 and replies.single_queries == 1
    assert reply["vnet9"]["addrs"][0]["addr"] == "10.9.9.9"
