# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kvmops.virt.libvirt_guests inventory plugin, loaded through Ansible's
plugin loader, against libvirt's in-process test driver: test:///default and
node documents under fixtures/ (test:///<absolute path>). Nothing is mocked."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible.template import Templar, trust_as_template

from ansible_collections.kvmops.virt.plugins.module_utils import _addresses as addr
from ansible_collections.kvmops.virt.plugins.module_utils import _inventory as inv
from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
HV1 = "test://" + os.path.join(FIXTURES, "hv1.xml")
HV2 = "test://" + os.path.join(FIXTURES, "hv2.xml")
PLUGIN = "kvmops.virt.libvirt_guests"


def local_hostname(uri):
    """What libvirt reports as the host name of a local URI (the machine's name)."""
    with LibvirtClient(uri, readonly=True) as client:
        return client.conn.getHostname()


def unreachable(tmp_path):
    """A URI whose daemon socket does not exist (unique per test: warnings are de-duplicated)."""
    return "qemu:///system?socket=%s" % (tmp_path / "no-daemon.sock")


def write_config(tmp_path, config, name="inv.libvirt_guests.yml"):
    config = dict(config)
    config.setdefault("plugin", PLUGIN)
    path = tmp_path / name
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)


def parse(tmp_path, config, cache=True, name="inv.libvirt_guests.yml"):
    """Parse a configuration with the plugin from the real loader, as InventoryManager
    does (parse, write the cache, reconcile); return the InventoryData.

    ``cache=False`` is what ``ansible-inventory --flush-cache`` and ``meta: refresh_inventory`` pass."""
    path = write_config(tmp_path, config, name)
    plugin = inventory_loader.get(PLUGIN)
    assert plugin is not None
    assert plugin.verify_file(path)
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), path, cache=cache)
    try:
        plugin.update_cache_if_changed()
    except AttributeError:  # no cache plugin loaded (cache not enabled), as InventoryManager tolerates
        pass
    inventory.reconcile_inventory()
    return inventory


def hosts(inventory):
    return sorted(inventory.hosts)


def hostvars(inventory, host):
    return inventory.get_host(host).get_vars()


def members(inventory, group):
    if group not in inventory.groups:
        return None
    return sorted(h.name for h in inventory.groups[group].get_hosts())


# -- configuration file --------------------------------------------------------------
@pytest.mark.parametrize(
    "name, ok",
    [
        ("libvirt_guests.yml", True),
        ("libvirt_guests.yaml", True),
        ("prod.libvirt_guests.yml", True),
        ("lab-libvirt_guests.yaml", True),
        ("inventory.yml", False),
        ("libvirt_guests.json", False),
        ("libvirt.yml", False),
    ],
)
def test_verify_file_accepts_only_libvirt_guests_yaml_names(tmp_path, name, ok):
    path = tmp_path / name
    path.write_text("plugin: %s\n" % PLUGIN)
    assert inventory_loader.get(PLUGIN).verify_file(str(path)) is ok


def test_verify_file_rejects_missing_file(tmp_path):
    assert not inventory_loader.get(PLUGIN).verify_file(str(tmp_path / "missing.libvirt_guests.yml"))


def test_wrong_plugin_name_is_refused(tmp_path):
    path = write_config(tmp_path, {"plugin": "community.libvirt.libvirt", "uris": ["test:///default"]})
    with pytest.raises(AnsibleParserError, match="Incorrect plugin name"):
        inventory_loader.get(PLUGIN).parse(InventoryData(), DataLoader(), path)


def test_inventory_manager_loads_the_plugin_through_auto(tmp_path):
    """What ansible-inventory -i x.libvirt_guests.yml does: the auto plugin hands the file to us."""
    path = write_config(tmp_path, {"uris": ["test:///default"]})
    manager = InventoryManager(loader=DataLoader(), sources=[path])
    assert [h.name for h in manager.get_hosts()] == ["test"]
    assert manager.get_host("test").get_vars()["ansible_host"] == "192.168.122.3"


# -- test:///default -------------------------------------------------------------------
def test_default_driver_guest_variables_and_groups(tmp_path):
    inventory = parse(tmp_path, {"uris": ["test:///default"]})
    assert hosts(inventory) == ["test"]
    hv = local_hostname("test:///default")
    v = hostvars(inventory, "test")
    assert v["ansible_host"] == "192.168.122.3"
    assert v["libvirt_name"] == "test"
    assert v["libvirt_uuid"] == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert v["libvirt_state"] == "running"
    assert v["libvirt_active"] is True
    assert v["libvirt_vcpus"] == 2
    assert v["libvirt_max_vcpus"] == 2
    assert v["libvirt_memory_mb"] == 2048  # current, like kvm_guest's guest.memory_mb
    assert v["libvirt_max_memory_mb"] == 8192
    assert v["libvirt_virt_type"] == "test"
    assert v["libvirt_persistent"] is True
    assert v["libvirt_autostart"] is False
    assert v["libvirt_id"] == 1
    assert v["libvirt_uri"] == "test:///default"
    assert v["libvirt_hypervisor"] == hv
    assert v["libvirt_tags"] == []
    assert v["libvirt_networks"] == ["default"]
    assert v["libvirt_addresses"] == ["192.168.122.3"]
    assert v["libvirt_interfaces"] == [
        {
            "mac": "aa:bb:cc:dd:ee:ff",
            "type": "network",
            "network": "default",
            "bridge": None,
            "direct": None,
            "model": None,
            "ip": "192.168.122.3",
            "ips": ["192.168.122.3"],
            "addresses": [{"address": "192.168.122.3", "prefix": 24, "family": "ipv4", "guest_interface": "testnet0"}],
            "address_source": "lease",
        }
    ]
    assert v["libvirt_disks"] == [
        {
            "target": "vda",
            "device": "disk",
            "bus": "virtio",
            "path": "/guest/diskimage1",
            "format": None,
            "type": "file",
            "pool": None,
            "volume": None,
        }
    ]
    assert members(inventory, inv.safe_group_name("libvirt_hypervisor_" + hv)) == ["test"]
    assert members(inventory, "libvirt_state_running") == ["test"]
    assert members(inventory, "libvirt_network_default") == ["test"]


def test_uris_default_to_libvirt_default_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("KVMOPS_LIBVIRT_URIS", raising=False)
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", HV2)
    inventory = parse(tmp_path, {})
    assert hosts(inventory) == ["app1", "web1"]
    assert hostvars(inventory, "web1")["libvirt_uri"] == HV2


def test_uris_from_kvmops_libvirt_uris_comma_separated(tmp_path, monkeypatch):
    """What an AWX credential injects; it wins over LIBVIRT_DEFAULT_URI, the file wins over both."""
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    monkeypatch.setenv("KVMOPS_LIBVIRT_URIS", "%s, %s" % (HV1, HV2))
    inventory = parse(tmp_path, {"hypervisor_names": {HV1: "hv1", HV2: "hv2"}})
    assert hosts(inventory) == ["app1", "web1", "web1@hv2", "web2"]
    assert hosts(parse(tmp_path, {"uris": ["test:///default"]})) == ["test"]


def test_uris_in_the_file_may_be_templates(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMOPS_TEST_NODE", os.path.join(FIXTURES, "hv2.xml"))
    inventory = parse(tmp_path, {"uris": ["test://{{ lookup('ansible.builtin.env', 'KVMOPS_TEST_NODE') }}"]})
    assert hosts(inventory) == ["app1", "web1"]
    assert hostvars(inventory, "web1")["libvirt_uri"] == HV2


# -- the custom node document -------------------------------------------------------------
def test_only_running_guests_by_default(tmp_path):
    inventory = parse(tmp_path, {"uris": [HV1]})
    assert hosts(inventory) == ["web1", "web2"]
    assert members(inventory, "libvirt_state_running") == ["web1", "web2"]
    assert members(inventory, "libvirt_state_shutdown") is None


@pytest.mark.parametrize(
    "states, expected",
    [
        (["all"], ["cache1", "db1", "web1", "web2"]),
        (["shutdown"], ["db1"]),
        (["shutoff"], ["db1"]),  # virsh's name
        (["paused", "stopped"], ["cache1", "db1"]),
        (["Running"], ["web1", "web2"]),
        (["running", "all"], ["cache1", "db1", "web1", "web2"]),
        (["crashed"], []),
    ],
)
def test_state_filter(tmp_path, states, expected):
    assert hosts(parse(tmp_path, {"uris": [HV1], "states": states})) == expected


def test_unknown_state_is_a_clear_error(tmp_path):
    with pytest.raises(AnsibleParserError, match=r"states: unknown state\(s\) sleeping, nostate; use crashed, paused"):
        parse(tmp_path, {"uris": [HV1], "states": ["running", "sleeping", "nostate"]})


@pytest.mark.parametrize(
    "names, exclude, expected",
    [
        (["web*"], [], ["web1", "web2"]),
        (["web?", "db*"], [], ["db1", "web1", "web2"]),
        (["*"], ["*2"], ["cache1", "db1", "web1"]),
        (["WEB*"], [], []),  # case-sensitive
        (["db[0-9]"], [], ["db1"]),
        (["web1"], ["web*"], []),
    ],
)
def test_name_filters_are_fnmatch_patterns(tmp_path, names, exclude, expected):
    config = {"uris": [HV1], "states": ["all"], "names": names, "exclude_names": exclude}
    assert hosts(parse(tmp_path, config)) == expected


def test_interfaces_networks_addresses_disks_and_tags(tmp_path):
    inventory = parse(tmp_path, {"uris": [HV1]})
    v = hostvars(inventory, "web1")
    # The test driver hands out addresses from each network's range, by domain id.
    assert [(i["mac"], i["type"], i["network"], i["bridge"], i["model"]) for i in v["libvirt_interfaces"]] == [
        ("52:54:00:00:01:01", "network", "lab", None, "virtio"),
        ("52:54:00:00:01:02", "network", "backend", None, "virtio"),
        ("52:54:00:00:01:03", "bridge", None, "br0", "e1000"),
    ]
    assert [[a["address"] for a in i["addresses"]] for i in v["libvirt_interfaces"]] == [
        ["10.20.0.101"],
        ["fd00:20::3"],
        ["192.168.0.3"],
    ]
    assert [a["family"] for i in v["libvirt_interfaces"] for a in i["addresses"]] == ["ipv4", "ipv6", "ipv4"]
    assert [i["ip"] for i in v["libvirt_interfaces"]] == ["10.20.0.101", "fd00:20::3", "192.168.0.3"]
    assert v["libvirt_networks"] == ["lab", "backend"]
    assert v["libvirt_addresses"] == ["10.20.0.101", "192.168.0.3", "fd00:20::3"]
    assert v["ansible_host"] == "10.20.0.101"
    assert v["libvirt_memory_mb"] == 768
    assert v["libvirt_max_memory_mb"] == 1024
    assert v["libvirt_vcpus"] == 2
    assert v["libvirt_uuid"] == "11111111-0000-0000-0000-000000000001"
    # Only kvm_guest's namespace counts; other applications' metadata is ignored.
    assert v["libvirt_tags"] == ["web", "prod-eu"]
    assert [(d["target"], d["device"], d["bus"], d["format"], d["path"]) for d in v["libvirt_disks"]] == [
        ("vda", "disk", "virtio", "qcow2", "/var/lib/libvirt/images/web1.qcow2"),
        ("sda", "cdrom", "sata", None, "/var/lib/libvirt/images/web1-seed.iso"),
    ]
    web2 = hostvars(inventory, "web2")
    assert web2["libvirt_tags"] == []
    # A disk given as pool + volume gets the volume's path from the pool.
    assert web2["libvirt_disks"] == [
        {
            "target": "vda",
            "device": "disk",
            "bus": "virtio",
            "path": "/var/lib/kvmops-test/images/web2.qcow2",
            "format": "qcow2",
            "type": "volume",
            "pool": "images",
            "volume": "web2.qcow2",
        }
    ]


def test_stopped_guests_have_no_address_and_no_ansible_host(tmp_path):
    inventory = parse(tmp_path, {"uris": [HV1], "states": ["shutdown", "paused"]})
    db1 = hostvars(inventory, "db1")
    assert db1["libvirt_state"] == "shutdown"
    assert db1["libvirt_active"] is False
    assert db1["libvirt_id"] is None
    assert db1["libvirt_addresses"] == []
    assert db1["libvirt_interfaces"][0]["addresses"] == []
    assert db1["libvirt_interfaces"][0]["address_source"] is None
    assert db1["libvirt_interfaces"][0]["ip"] is None
    assert "ansible_host" not in db1
    assert "ansible_host" not in hostvars(inventory, "cache1")


def test_prefer_ipv4(tmp_path):
    # app1's first interface has only an IPv6 address, its second an IPv4 one.
    inventory = parse(tmp_path, {"uris": [HV2], "names": ["app1"]})
    assert hostvars(inventory, "app1")["ansible_host"] == "10.30.0.122"
    assert hostvars(inventory, "app1")["libvirt_addresses"] == ["10.30.0.122", "fd00:30::16"]
    inventory = parse(tmp_path, {"uris": [HV2], "names": ["app1"], "prefer_ipv4": False})
    assert hostvars(inventory, "app1")["ansible_host"] == "fd00:30::16"
    assert hostvars(inventory, "app1")["libvirt_addresses"] == ["fd00:30::16", "10.30.0.122"]


def test_default_groups(tmp_path):
    inventory = parse(tmp_path, {"uris": [HV1], "states": ["all"], "hypervisor_names": {HV1: "kvm1.example.com"}})
    assert members(inventory, "libvirt_hypervisor_kvm1_example_com") == ["cache1", "db1", "web1", "web2"]
    assert members(inventory, "libvirt_state_running") == ["web1", "web2"]
    assert members(inventory, "libvirt_state_shutdown") == ["db1"]
    assert members(inventory, "libvirt_state_paused") == ["cache1"]
    assert members(inventory, "libvirt_network_lab") == ["db1", "web1", "web2"]
    assert members(inventory, "libvirt_network_backend") == ["web1"]
    assert members(inventory, "libvirt_tag_web") == ["web1"]
    assert members(inventory, "libvirt_tag_prod_eu") == ["web1"]
    assert members(inventory, "libvirt_tag_db") == ["db1"]
    assert hostvars(inventory, "web1")["libvirt_hypervisor"] == "kvm1.example.com"


def test_default_groups_can_be_chosen_or_disabled(tmp_path):
    inventory = parse(tmp_path, {"uris": [HV1], "default_groups": ["tag"]})
    assert sorted(g for g in inventory.groups if g.startswith("libvirt_")) == ["libvirt_tag_prod_eu", "libvirt_tag_web"]
    inventory = parse(tmp_path, {"uris": [HV1], "default_groups": []})
    assert sorted(inventory.groups) == ["all", "ungrouped"]
    assert members(inventory, "ungrouped") == ["web1", "web2"]
    with pytest.raises(AnsibleError, match="default_groups"):
        parse(tmp_path, {"uris": [HV1], "default_groups": ["labels"]})


# -- constructed options -------------------------------------------------------------------
def test_compose_groups_and_keyed_groups(tmp_path):
    config = {
        "uris": [HV1],
        "compose": {
            "ansible_connection": "'local'",
            "ansible_host": "libvirt_addresses | last",
            "mem_gb": "libvirt_max_memory_mb / 1024",
        },
        "groups": {"webservers": "'web' in libvirt_tags", "small": "libvirt_max_memory_mb < 1024"},
        "keyed_groups": [
            {"key": "libvirt_tags", "prefix": "kvm"},
            {"key": "libvirt_networks", "prefix": "net", "separator": "-"},
        ],
    }
    inventory = parse(tmp_path, config)
    web1 = hostvars(inventory, "web1")
    assert web1["ansible_connection"] == "local"
    assert web1["ansible_host"] == "fd00:20::3"  # compose overrides the plugin's choice
    assert web1["mem_gb"] == 1
    assert members(inventory, "webservers") == ["web1"]
    assert members(inventory, "small") == ["web2"]
    assert members(inventory, "kvm_web") == ["web1"]
    assert members(inventory, "kvm_prod_eu") == ["web1"]
    assert members(inventory, "net_lab") == ["web1", "web2"]
    assert members(inventory, "net_backend") == ["web1"]


def test_strict_compose_errors(tmp_path):
    config = {"uris": [HV1], "compose": {"x": "libvirt_no_such_var.attr"}}
    inventory = parse(tmp_path, config)
    assert "x" not in hostvars(inventory, "web1")
    config["strict"] = True
    with pytest.raises(AnsibleError, match="Could not set x"):
        parse(tmp_path, config)


def test_values_from_libvirt_are_never_templated(tmp_path):
    # web2's <title> is "{{ 6 * 7 }}": it must stay text, even when composed.
    inventory = parse(tmp_path, {"uris": [HV1], "compose": {"copied_title": "libvirt_title"}})
    assert hostvars(inventory, "web2")["libvirt_title"] == "{{ 6 * 7 }}"
    assert hostvars(inventory, "web2")["copied_title"] == "{{ 6 * 7 }}"
    templar = Templar(loader=DataLoader(), variables=hostvars(inventory, "web2"))
    assert templar.template(trust_as_template("{{ copied_title }}")) == "{{ 6 * 7 }}"
    assert templar.template(trust_as_template("{{ libvirt_title }}")) == "{{ 6 * 7 }}"


# -- several hypervisors -----------------------------------------------------------------------
def test_duplicate_guest_names_across_uris(tmp_path):
    names = {HV1: "hv1", HV2: "hv2"}
    inventory = parse(tmp_path, {"uris": [HV1, HV2], "hypervisor_names": names})
    assert hosts(inventory) == ["app1", "web1", "web1@hv2", "web2"]
    assert hostvars(inventory, "web1")["libvirt_uuid"] == "11111111-0000-0000-0000-000000000001"
    assert hostvars(inventory, "web1")["libvirt_hypervisor"] == "hv1"
    second = hostvars(inventory, "web1@hv2")
    assert second["libvirt_uuid"] == "22222222-0000-0000-0000-000000000001"
    assert second["libvirt_name"] == "web1"
    assert second["libvirt_uri"] == HV2
    assert second["ansible_host"] == "10.30.0.101"
    assert members(inventory, "libvirt_hypervisor_hv1") == ["web1", "web2"]
    assert members(inventory, "libvirt_hypervisor_hv2") == ["app1", "web1@hv2"]
    assert members(inventory, "libvirt_tag_web") == ["web1", "web1@hv2"]
    # The same network name on two hypervisors is one group.
    assert members(inventory, "libvirt_network_lab") == ["app1", "web1", "web1@hv2", "web2"]

    # The order of uris decides who keeps the plain name.
    inventory = parse(tmp_path, {"uris": [HV2, HV1], "hypervisor_names": names})
    assert hosts(inventory) == ["app1", "web1", "web1@hv1", "web2"]
    assert hostvars(inventory, "web1")["libvirt_uri"] == HV2


def test_duplicates_are_counted_after_filtering(tmp_path):
    # hv1's web1 is filtered out, so hv2's web1 keeps the plain name.
    config = {"uris": [HV1, HV2], "hypervisor_names": {HV1: "hv1", HV2: "hv2"}, "exclude_names": ["web1"]}
    assert hosts(parse(tmp_path, config)) == ["app1", "web2"]
    config = {"uris": [HV1, HV2], "hypervisor_names": {HV1: "hv1", HV2: "hv2"}, "states": ["paused"]}
    assert hosts(parse(tmp_path, config)) == ["cache1"]


def test_qualified_names(tmp_path):
    config = {"uris": [HV1, HV2], "hypervisor_names": {HV1: "hv1", HV2: "hv2"}, "qualified_names": True}
    assert hosts(parse(tmp_path, config)) == ["app1@hv2", "web1@hv1", "web1@hv2", "web2@hv1"]


def test_hypervisor_names_default_to_the_reported_host_name_made_unique(tmp_path):
    # Both test URIs are local, so both report this machine's host name.
    hostname = local_hostname(HV1)
    inventory = parse(tmp_path, {"uris": [HV1, HV2]})
    assert hostvars(inventory, "web1")["libvirt_hypervisor"] == hostname
    assert hostvars(inventory, "app1")["libvirt_hypervisor"] == hostname + "_2"
    assert "web1@%s_2" % hostname in inventory.hosts


def test_same_uri_twice_is_read_once(tmp_path):
    inventory = parse(tmp_path, {"uris": [HV2, HV2, " " + HV2 + " "]})
    assert hosts(inventory) == ["app1", "web1"]


# -- unreachable hypervisors ----------------------------------------------------------------------
def test_unreachable_uri_warns_and_the_others_still_load(tmp_path, capsys):
    bad = unreachable(tmp_path)
    inventory = parse(tmp_path, {"uris": [HV1, bad, HV2], "hypervisor_names": {HV1: "hv1", HV2: "hv2"}})
    assert hosts(inventory) == ["app1", "web1", "web1@hv2", "web2"]
    err = capsys.readouterr().err
    assert "[WARNING]" in err
    assert "skipping uri '%s'" % bad in err
    assert "cannot connect to libvirt" in err


def test_unreachable_uri_is_an_error_with_strict(tmp_path):
    bad = unreachable(tmp_path)
    with pytest.raises(AnsibleParserError) as err:
        parse(tmp_path, {"uris": [HV1, bad], "strict": True})
    assert "cannot connect to libvirt at uri '%s'" % bad in str(err.value)


def test_malformed_uri_warns(tmp_path, capsys):
    inventory = parse(tmp_path, {"uris": ["bogus-driver-%s:///nowhere" % tmp_path.name, HV2]})
    assert hosts(inventory) == ["app1", "web1"]
    assert "skipping uri 'bogus-driver-" in capsys.readouterr().err


# -- address sources -----------------------------------------------------------------------------
def test_address_sources(tmp_path):
    # The test driver answers every source the same way; what differs is which is asked first.
    for source in ("lease", "arp", "agent"):
        inventory = parse(tmp_path, {"uris": [HV1], "names": ["web1"], "address_source": source})
        interfaces = hostvars(inventory, "web1")["libvirt_interfaces"]
        assert [i["address_source"] for i in interfaces] == [source] * 3
        assert hostvars(inventory, "web1")["ansible_host"] == "10.20.0.101"


def test_agent_needs_a_read_write_connection(tmp_path):
    # Explicitly read-only: the agent is skipped and the fallback gives the lease addresses.
    config = {"uris": [HV1], "names": ["web1"], "address_source": "agent", "readonly": True, "address_fallback": True}
    with pytest.raises(AnsibleParserError, match="address_source: agent needs a read-write connection"):
        parse(tmp_path, config)
    config = {"uris": [HV1], "names": ["web1"], "address_source": "lease", "readonly": True}
    interfaces = hostvars(parse(tmp_path, config), "web1")["libvirt_interfaces"]
    assert [i["address_source"] for i in interfaces] == ["lease"] * 3


def test_address_sources_order():
    assert addr.address_sources("lease") == ["lease", "arp", "agent"]
    assert addr.address_sources("arp") == ["arp", "lease", "agent"]
    assert addr.address_sources("agent") == ["agent", "lease", "arp"]
    assert addr.address_sources("lease", agent_allowed=False) == ["lease", "arp"]
    assert addr.address_sources("agent", fallback=False) == ["agent"]
    assert addr.address_sources("lease", fallback=False) == ["lease"]


def _iface(mac):
    return {"mac": mac, "addresses": [], "address_source": None}


def test_fallback_fills_each_interface_from_the_first_source_that_knows_it():
    """Replies as libvirt returns them from virDomainInterfaceAddresses (recorded shapes)."""
    interfaces = [_iface("52:54:00:00:00:01"), _iface("52:54:00:00:00:02"), _iface("52:54:00:00:00:03")]
    lease = {"vnet0": {"hwaddr": "52:54:00:00:00:01", "addrs": [{"addr": "10.0.0.5", "prefix": 24, "type": 0}]}}
    arp = {
        "vnet0": {"hwaddr": "52:54:00:00:00:01", "addrs": [{"addr": "10.0.0.99", "prefix": 0, "type": 0}]},
        "vnet1": {"hwaddr": "52:54:00:00:00:02", "addrs": [{"addr": "192.168.1.7", "prefix": 0, "type": 0}]},
    }
    agent = {
        "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"addr": "127.0.0.1", "prefix": 8, "type": 0}, {"addr": "::1", "prefix": 128, "type": 1}]},
        "eth2": {
            "hwaddr": "52:54:00:00:00:03",
            "addrs": [{"addr": "fe80::5054:ff:fe00:3", "prefix": 64, "type": 1}, {"addr": "172.16.0.3", "prefix": 16, "type": 0}],
        },
        "docker0": {"hwaddr": "02:42:ac:11:00:01", "addrs": [{"addr": "172.17.0.1", "prefix": 16, "type": 0}]},
    }
    addr.merge_addresses(interfaces, [("lease", lease), ("arp", arp), ("agent", agent)])
    assert [(i["address_source"], [a["address"] for a in i["addresses"]]) for i in interfaces] == [
        ("lease", ["10.0.0.5"]),  # arp's answer for the same MAC is not used
        ("arp", ["192.168.1.7"]),
        ("agent", ["fe80::5054:ff:fe00:3", "172.16.0.3"]),
    ]
    # Link-local addresses are kept on the interface but never used as ansible_host.
    assert addr.ordered_addresses(interfaces) == ["10.0.0.5", "192.168.1.7", "172.16.0.3"]
    # A source with nothing (None: no lease, no agent) is skipped.
    interfaces = [_iface("52:54:00:00:00:01")]
    addr.merge_addresses(interfaces, [("lease", None), ("arp", {}), ("agent", lease)])
    assert interfaces[0]["address_source"] == "agent"


def test_mac_matching_ignores_case():
    interfaces = [_iface("52:54:00:ab:cd:ef")]
    addr.merge_addresses(interfaces, [("lease", {"vnet0": {"hwaddr": "52:54:00:AB:CD:EF", "addrs": [{"addr": "10.1.1.1", "prefix": 24, "type": 0}]}})])
    assert interfaces[0]["addresses"][0]["address"] == "10.1.1.1"


# -- caching ------------------------------------------------------------------------------------------
def _cache_config(tmp_path, uris):
    return {
        "uris": uris,
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"),
        "cache_timeout": 3600,
    }


def test_cache_is_used_and_refreshed(tmp_path):
    node = tmp_path / "node.xml"
    shutil.copy(os.path.join(FIXTURES, "hv2.xml"), str(node))
    uri = "test://" + str(node)
    config = _cache_config(tmp_path, [uri])

    # cache=True with an empty cache reads libvirt and fills the cache.
    assert hosts(parse(tmp_path, config, cache=True)) == ["app1", "web1"]
    assert os.listdir(str(tmp_path / "cache"))

    # The hypervisor changes (app1 is gone): the cached inventory is still served ...
    node.write_text(node.read_text().replace("<name>app1</name>", "<name>app2</name>"))
    assert hosts(parse(tmp_path, config, cache=True)) == ["app1", "web1"]
    # ... filters and names are applied to the cached data on every run ...
    assert hosts(parse(tmp_path, dict(config, names=["web*"]), cache=True)) == ["web1"]
    # ... and a refresh (ansible-inventory --flush-cache passes cache=False) reads libvirt again and updates it.
    assert hosts(parse(tmp_path, config, cache=False)) == ["app2", "web1"]
    assert hosts(parse(tmp_path, config, cache=True)) == ["app2", "web1"]


def test_cache_is_ignored_when_the_uris_change(tmp_path):
    config = _cache_config(tmp_path, [HV2])
    assert hosts(parse(tmp_path, config)) == ["app1", "web1"]
    config["uris"] = [HV1]
    assert hosts(parse(tmp_path, config)) == ["web1", "web2"]


def test_nothing_is_cached_when_a_uri_failed(tmp_path, capsys):
    config = _cache_config(tmp_path, [HV2, unreachable(tmp_path)])
    assert hosts(parse(tmp_path, config)) == ["app1", "web1"]
    assert "skipping uri" in capsys.readouterr().err
    cache_dir = tmp_path / "cache"
    assert not cache_dir.exists() or not os.listdir(str(cache_dir))


def test_without_cache_option_nothing_is_written(tmp_path):
    parse(tmp_path, {"uris": [HV2], "cache_connection": str(tmp_path / "cache"), "cache_plugin": "ansible.builtin.jsonfile"})
    assert not (tmp_path / "cache").exists()


# -- pure helpers ---------------------------------------------------------------------------------------
def test_assign_host_names():
    pairs = [("web1", "a"), ("web2", "a"), ("web1", "b"), ("web1", "c"), ("web1@c", "d"), ("web1", "c")]
    assert inv.assign_host_names(pairs) == ["web1", "web2", "web1@b", "web1@c", "web1@c@d", "web1@c#2"]
    assert inv.assign_host_names([("x", "a"), ("x", "b")], qualified=True) == ["x@a", "x@b"]


def test_hypervisor_names():
    hvs = [
        {"uri": "qemu+ssh://root@kvm1.example.com:2222/system", "hostname": "kvm1"},
        {"uri": "qemu:///system", "hostname": "ctl"},
        {"uri": "qemu:///session", "hostname": "ctl"},
        {"uri": "qemu+tcp://kvm1.example.com/system", "hostname": "kvm1"},
        {"uri": "test:///default", "hostname": ""},
    ]
    assert inv.hypervisor_names(hvs) == ["kvm1.example.com", "ctl", "ctl_2", "kvm1.example.com_2", "localhost"]
    assert inv.hypervisor_names(hvs, {"qemu:///session": "mine"})[2] == "mine"


@pytest.mark.parametrize(
    "raw, safe",
    [("libvirt_tag_prod-eu", "libvirt_tag_prod_eu"), ("a.b c/d", "a_b_c_d"), ("9lives", "_9lives"), ("ok_1", "ok_1")],
)
def test_safe_group_name(raw, safe):
    assert inv.safe_group_name(raw) == safe


def test_tags_parsing_ignores_other_namespaces_and_duplicates():
    xml = """<domain type='kvm'><name>x</name><metadata>
      <kvmops:guest xmlns:kvmops="https://github.com/kvmops/kvmops.virt/guest/1">
        <kvmops:tags><kvmops:tag> web </kvmops:tag><kvmops:tag>web</kvmops:tag><kvmops:tag/><kvmops:tag>db</kvmops:tag></kvmops:tags>
      </kvmops:guest>
      <tags><tag>unqualified</tag></tags>
    </metadata><memory unit='KiB'>1000</memory></domain>"""
    guest = inv.parse_domain(xml)
    assert guest["tags"] == ["web", "db"]
    assert guest["memory_mb"] == 1  # rounded up to whole MiB
    assert inv.parse_domain("<domain><name>y</name></domain>")["tags"] == []
