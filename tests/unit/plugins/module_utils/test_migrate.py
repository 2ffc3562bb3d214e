# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_migrate: the pure decisions (where the guest is -> what to do, flags,
parameters, which disks move) and the preflight of the module against libvirt's
test driver: test:///default is the source (its stock guest ``test`` runs with
disk /guest/diskimage1 on network ``default``), a test driver file of the test
is the destination (no mocks).

The test driver cannot migrate (virDomainMigrate3 is not supported there); the
migrations themselves run against two real hosts in the lab stage.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain
from ansible_collections.kvmops.virt.plugins.module_utils._migrate import (
    decide,
    migrated_disks,
    migration_flags,
    migration_params,
)
from ansible_collections.kvmops.virt.plugins.modules import kvm_migrate

libvirt = pytest.importorskip("libvirt")

SOURCE = "test:///default"
NODE = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active><mhz>2000</mhz>
    <model>i686</model></cpu>
  <memory>%(memory)d</memory>
  %(extra)s
</node>"""
NETWORK = "<network><name>default</name><bridge name='virbr9'/><ip address='10.9.9.1' netmask='255.255.255.0'/></network>"
POOL = """<pool type='dir'><name>guests</name><target><path>/guest</path></target>%s</pool>"""
VOLUME = "<volume><name>diskimage1</name><capacity unit='MiB'>64</capacity></volume>"
MOVED = """<domain type='test'><name>%s</name><memory unit='MiB'>128</memory><os><type>hvm</type></os>
  <devices/></domain>"""


@pytest.fixture(autouse=True)
def collect():
    yield
    gc.collect()  # test:///default keeps state while objects of its connections live


@pytest.fixture
def destination(tmp_path):
    """``destination(extra, memory_kib)``: the URI of a test driver host with ``extra`` XML in its ``<node>``."""

    def make(extra="", memory=2097152):
        path = tmp_path / "node.xml"
        path.write_text(NODE % {"memory": memory, "extra": extra})
        return "test://" + str(path)

    return make


def migrate(run_module_main, check=True, **args):
    args.setdefault("name", "test")
    return run_module_main(kvm_migrate, check=check, **args)


# -- the decisions -------------------------------------------------------------
@pytest.mark.parametrize("live, source, dest, expected", [
    (True, "running", None, "migrate"),
    (True, "running", "defined", "migrate"),
    (True, None, "running", "done"),
    (True, "defined", "running", "done"),  # undefine_source: false left the source's definition
    (True, "running", "running", "both"),
    (True, "defined", None, "not running"),
    (True, None, None, "missing"),
    (True, None, "defined", "missing"),
    (False, "defined", None, "migrate"),
    (False, "defined", "defined", "migrate"),
    (False, None, "defined", "done"),
    (False, None, "running", "done"),
    (False, "running", None, "running"),
    (False, None, None, "missing"),
])
def test_decide(live, source, dest, expected):
    assert decide(live, source, dest) == expected


def test_flags_and_params():
    live = migration_flags(True, "all", True, True)
    assert live == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
                    | libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    assert migration_flags(False, "none", True, False) == libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PERSIST_DEST
    assert migration_flags(True, "none", False, False) == libvirt.VIR_MIGRATE_LIVE
    assert migration_params() == {}
    assert migration_params(10, "tcp://192.0.2.1", "0.0.0.0") == {
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 10,
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://192.0.2.1",
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "0.0.0.0",
    }


def test_migrated_disks_skip_cdroms_readonly_shared_and_network_disks():
    domain = Domain.from_xml("""<domain type='kvm'><name>g</name><devices>
      <disk type='file' device='disk'><source file='/i/a.qcow2'/><target dev='vda'/></disk>
      <disk type='volume' device='disk'><source pool='p' volume='b'/><target dev='vdb'/></disk>
      <disk type='file' device='cdrom'><source file='/i/x.iso'/><target dev='sda'/><readonly/></disk>
      <disk type='file' device='disk'><source file='/i/ro.img'/><target dev='vdc'/><readonly/></disk>
      <disk type='file' device='disk'><source file='/i/sh.img'/><target dev='vdd'/><shareable/></disk>
      <disk type='network' device='disk'><source protocol='rbd' name='r/x'/><target dev='vde'/></disk>
      <disk type='file' device='disk'><target dev='vdf'/></disk>
    </devices></domain>""")
    assert [d.target for d in migrated_disks(domain)] == ["vda", "vdb"]


# -- bad input: named options, nothing read ---------------------------------------
@pytest.mark.parametrize("args, message", [
    (dict(destination_uri=""), "destination_uri: must not be empty"),
    (dict(destination_uri=SOURCE), "destination_uri: is the source uri 'test:///default'"),
    (dict(timeout=0), "timeout: must be at least 1 second, got 0"),
    (dict(bandwidth=0), "bandwidth: must be at least 1 MiB/s, got 0"),
    (dict(live=False, persistent=False), "persistent: live: false moves the guest's definition"),
    (dict(migration_uri="192.0.2.1"), "migration_uri: must be a URI such as tcp://"),
    (dict(name="a/b"), "name: guest name 'a/b' must be a plain name"),
])
def test_bad_input(run_module_main, destination, args, message):
    args.setdefault("destination_uri", destination(NETWORK))
    result = migrate(run_module_main, check=False, **args)
    assert result["failed"] and result["msg"].startswith(message), result["msg"]
    assert "Traceback" not in result["msg"]


def test_peer_to_peer_needs_a_destination_the_source_host_reaches(capsys):
    args = dict(name="test", uri="qemu+ssh://root@kvm1.invalid/system?no_tty=1", destination_uri="qemu:///system")
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            kvm_migrate.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["msg"].startswith("peer_to_peer: destination_uri 'qemu:///system' names no host")


def test_unreachable_destination_names_the_option(run_module_main, tmp_path):
    result = migrate(run_module_main, destination_uri="test://%s/missing.xml" % tmp_path)
    assert result["failed"] and result["msg"].startswith("destination_uri: cannot connect to libvirt at uri"), result
    assert result["option"] == "destination_uri"


# -- preflight on the test driver ---------------------------------------------------
def test_missing_network_fails_in_check_mode_and_real_run(run_module_main, destination):
    uri = destination(POOL % VOLUME)
    for check in (True, False):
        result = migrate(run_module_main, check=check, destination_uri=uri)
        assert result["failed"]
        assert result["msg"] == ("destination_uri: network 'default' of guest 'test' (interface aa:bb:cc:dd:ee:ff) does "
                                 "not exist on uri '%s'; create and start it there first (kvmops.virt.virtio_network)" % uri)
    conn = libvirt.open(SOURCE)
    assert conn.lookupByName("test").isActive()  # still running on the source
    conn.close()


def test_disk_not_on_shared_storage(run_module_main, destination):
    uri = destination(NETWORK)
    result = migrate(run_module_main, destination_uri=uri)
    assert result["failed"] and result["option"] == "copy_storage"
    assert result["msg"].startswith("copy_storage: disk vda of guest 'test' (/guest/diskimage1) is not on storage that "
                                    "uri '%s' sees; use copy_storage: all" % uri)


def test_copy_storage_needs_a_pool_with_the_disk_directory(run_module_main, destination):
    uri = destination(NETWORK)
    result = migrate(run_module_main, destination_uri=uri, copy_storage="all")
    assert result["failed"] and result["msg"].startswith(
        "copy_storage: uri '%s' has no storage pool with the path /guest, where libvirt creates the copy of disk vda" % uri)


@pytest.mark.parametrize("copy_storage, volume", [("none", VOLUME), ("all", "")])
def test_check_mode_reports_the_plan(run_module_main, destination, copy_storage, volume):
    uri = destination(NETWORK + POOL % volume)
    result = migrate(run_module_main, destination_uri=uri, copy_storage=copy_storage, bandwidth=50)
    assert not result.get("failed"), result
    assert result["changed"]
    assert result["diff"] == {"before": {"uri": SOURCE}, "after": {"uri": uri}}
    assert result["migration"] == {"source": SOURCE, "destination": uri, "seconds": None, "live": True,
                                   "copied_storage": None}
    [action] = result["actions"]
    assert action.startswith("migrate running guest 'test' from uri '%s' to uri '%s' (live, peer to peer, " % (SOURCE, uri))
    assert ("copy storage: vda" in action) == (copy_storage == "all")
    assert "bandwidth 50 MiB/s" in action and action.endswith("timeout 600 s)")


def test_already_on_the_destination_is_ok(run_module_main, destination):
    uri = destination(MOVED % "kvmops-mig-moved")
    for check in (True, False):
        result = migrate(run_module_main, check=check, name="kvmops-mig-moved", destination_uri=uri)
        assert not result.get("failed"), result
        assert not result["changed"] and result["actions"] == []
        assert result["migration"]["seconds"] is None


def test_running_on_both_hosts_is_refused(run_module_main, destination):
    result = migrate(run_module_main, destination_uri=destination(NETWORK + MOVED % "test"))
    assert result["failed"] and result["msg"].startswith("name: guest 'test' is running on both uri")


def test_guest_nowhere(run_module_main, destination):
    result = migrate(run_module_main, name="kvmops-mig-none", destination_uri=destination(NETWORK))
    assert result["failed"] and result["msg"].startswith("name: guest 'kvmops-mig-none' exists neither on uri")


def test_live_false_refuses_a_running_guest(run_module_main, destination):
    result = migrate(run_module_main, live=False, destination_uri=destination(NETWORK))
    assert result["failed"] and result["msg"].startswith("live: guest 'test' is running on uri 'test:///default'; live: false")


def test_cpu_comparison_unsupported_is_a_warning(destination, tmp_path):
    """In a process of its own: once controller code is imported (the filter tests import ansible.errors),
    AnsibleModule.warn() prints warnings instead of returning them."""
    xml = """<domain type='test'><name>kvmops-mig-cpu</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>
      <cpu mode='custom'><model>qemu64</model></cpu><devices/></domain>"""
    # test:///default lives per process: the module's process defines and starts the guest first.
    script = tmp_path / "run.py"
    script.write_text(
        "import libvirt, runpy, sys\n"
        "c = libvirt.open('test:///default')\n"
        "c.defineXML(%r).create()\n"
        "sys.argv = ['kvm_migrate', sys.argv[1]]\n"
        "runpy.run_module('ansible_collections.kvmops.virt.plugins.modules.kvm_migrate', run_name='__main__')\n" % xml)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"name": "kvmops-mig-cpu", "uri": SOURCE,
                                                        "destination_uri": destination(), "_ansible_check_mode": True}}))
    proc = subprocess.run([sys.executable, str(script), str(args)], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    result = json.loads(proc.stdout)
    assert not result.get("failed"), result
    assert result["changed"]
    assert any("the CPU of guest 'kvmops-mig-cpu' was not compared" in str(w) for w in result["warnings"]), result


# -- offline moves with copy_storage: all (the module streams the volumes) ---------------
OFF = "kvmops-mig-off"
OFF_XML = """<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>
  <devices><disk type='file' device='disk'><source file='/default-pool/%s.qcow2'/><target dev='vda'/></disk></devices>
</domain>""" % (OFF, OFF)
OFF_POOL = "<pool type='dir'><name>dp</name><target><path>/default-pool</path></target>%s</pool>"


@pytest.fixture
def shut_off_guest():
    """A shut-off guest on test:///default whose disk is a volume of its pool default-pool."""
    conn = libvirt.open(SOURCE)
    vol = conn.storagePoolLookupByName("default-pool").createXML(
        "<volume><name>%s.qcow2</name><capacity unit='MiB'>64</capacity><target><format type='qcow2'/></target>"
        "</volume>" % OFF, 0)
    dom = conn.defineXML(OFF_XML)
    yield
    dom.undefine()
    vol.delete(0)
    conn.close()


def test_offline_copy_storage_plans_the_copy_in_check_mode(run_module_main, destination, shut_off_guest):
    uri = destination(OFF_POOL % "")
    result = migrate(run_module_main, name=OFF, live=False, copy_storage="all", destination_uri=uri)
    assert not result.get("failed"), result
    assert result["changed"] and result["migration"]["live"] is False
    [action] = result["actions"]
    assert action.startswith("migrate shut-off guest '%s' from uri '%s' to uri '%s' (offline, " % (OFF, SOURCE, uri))
    assert "copy storage: vda" in action
    conn = libvirt.open(uri)
    assert conn.storagePoolLookupByName("dp").listVolumes() == []  # check mode copies nothing
    conn.close()


def test_offline_copy_never_overwrites_a_volume_on_the_destination(run_module_main, destination, shut_off_guest):
    uri = destination(OFF_POOL % ("<volume><name>%s.qcow2</name><capacity unit='MiB'>8</capacity></volume>" % OFF))
    for check in (True, False):
        result = migrate(run_module_main, check=check, name=OFF, live=False, copy_storage="all", destination_uri=uri)
        assert result["failed"] and result["option"] == "copy_storage"
        assert result["msg"] == (
            "copy_storage: disk vda of guest '%s' (/default-pool/%s.qcow2) already exists on uri '%s'; an offline copy "
            "never overwrites a volume: remove it there, or use copy_storage: none to use it" % (OFF, OFF, uri))
