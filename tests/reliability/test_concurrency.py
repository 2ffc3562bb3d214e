# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrency: two playbook runs converge the same guest, network and volume at
the same time, from absent, ten times. See docs/reliability.md, "Concurrency"."""
from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from lxml import etree

import relhelpers as rh
from conftest import ansible_playbook

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks", "converge.yml")
ROUNDS = 10
CHECK_ROUNDS = (1, 5, ROUNDS)  # a third run in check mode after these rounds


@pytest.fixture
def pool(prefix):
    name = prefix + "pool"
    path = os.path.join(rh.IMAGES, prefix.rstrip("-"))
    rh.dir_pool(name, path)
    yield name, path
    rh.cleanup(prefix, [path])


def _objects(conn, prefix):
    doms = [d for d in conn.listAllDomains() if d.name().startswith(prefix)]
    nets = [n for n in conn.listAllNetworks() if n.name().startswith(prefix)]
    return doms, nets


def _check_round(conn, name, pool_name, pool_path):
    """Exactly one guest, network and volume, and the guest's XML points at the other two."""
    doms, nets = _objects(conn, name)
    pool = conn.storagePoolLookupByName(pool_name)
    pool.refresh(0)
    vols = [v for v in pool.listVolumes() if v.startswith(name)]
    assert [d.name() for d in doms] == [name + "-vm"]
    assert [n.name() for n in nets] == [name + "-net"]
    assert vols == [name + "-disk.qcow2"]
    net = nets[0]
    assert net.isActive() and net.isPersistent()
    net_xml = etree.fromstring(net.XMLDesc(0).encode())
    assert net_xml.find("forward") is None, "an isolated network has no <forward>"
    vol = pool.storageVolLookupByName(name + "-disk.qcow2")
    vol_xml = etree.fromstring(vol.XMLDesc(0).encode())
    assert vol_xml.find("target/format").get("type") == "qcow2"
    assert int(vol_xml.findtext("capacity")) == 8 << 20
    dom = doms[0]
    assert dom.isPersistent() and not dom.isActive()
    dom_xml = etree.fromstring(dom.XMLDesc(0).encode())
    disks = dom_xml.findall("devices/disk[@device='disk']")
    assert [d.find("source").get("file") for d in disks] == [os.path.join(pool_path, name + "-disk.qcow2")]
    assert [d.find("driver").get("type") for d in disks] == ["qcow2"]
    ifaces = dom_xml.findall("devices/interface")
    assert [(i.get("type"), i.find("source").get("network")) for i in ifaces] == [("network", name + "-net")]
    assert dom_xml.get("type") == "qemu"


def _converge(barrier, extra, round_no, side):
    barrier.wait()  # both runs start together
    return ansible_playbook(PLAYBOOK, extra, label="concurrent-r%d-%s" % (round_no, side))


def test_two_runs_converge_the_same_objects(prefix, report, pool):
    pool_name, pool_path = pool
    conn = rh.connect()
    try:
        for round_no in range(1, ROUNDS + 1):
            name = "%sr%d" % (prefix, round_no)
            extra = {"rel_name": name, "rel_pool": pool_name}
            barrier = threading.Barrier(2)
            with ThreadPoolExecutor(2) as pool_exec:
                runs = list(pool_exec.map(functools.partial(_converge, barrier, extra, round_no), ("a", "b")))
            report.add("concurrent_runs", 2)
            for run in runs:
                assert not run.has_traceback, run.log
                assert run.rc == 0, "round %d: %s\n%s" % (round_no, run.log, run.output[-3000:])
                assert len(run.results) == 3, run.log
            # from absent, at least one of the two runs created each object
            for task in range(3):
                assert True in [r.results[task]["changed"] for r in runs], [r.log for r in runs]
            _check_round(conn, name, pool_name, pool_path)
            # and what they built is what the playbook asks for: a third run changes nothing
            if round_no in CHECK_ROUNDS:
                check = ansible_playbook(PLAYBOOK, extra, check=True, label="concurrent-r%d-check" % round_no)
                assert check.rc == 0 and not check.has_traceback, check.log
                assert [r["changed"] for r in check.results] == [False, False, False], check.log
            rh.cleanup(name)
            conn.storagePoolLookupByName(pool_name).storageVolLookupByName(name + "-disk.qcow2").delete(0)
    finally:
        conn.close()


# -- two *different* playbooks on one object (issue 16) ------------------------------

def _module_together(calls):
    """Run ``[(module, args, label)]`` at the same moment; their Runs in order."""
    barrier = threading.Barrier(len(calls))

    def one(call):
        from conftest import ansible_module  # pylint: disable=import-outside-toplevel
        barrier.wait()
        return ansible_module(call[0], call[1], label=call[2])

    with ThreadPoolExecutor(len(calls)) as pool_exec:
        return list(pool_exec.map(one, calls))


def test_two_playbooks_race_on_one_networks_dhcp_hosts(prefix, report):
    """Each run declares its own DHCP host list: one wins whole, nothing is mixed or lost half-way."""
    net = prefix + "dhcp"
    base = {"name": net, "mode": "isolated", "state": "active"}
    conn = rh.connect()
    try:
        for round_no in range(1, 4):
            ip_a = {"address": "10.233.%d.1/24" % round_no,
                    "hosts": [{"mac": "52:54:00:aa:%02x:01" % round_no, "ip": "10.233.%d.11" % round_no, "name": "ha"}]}
            ip_b = {"address": "10.233.%d.1/24" % round_no,
                    "hosts": [{"mac": "52:54:00:bb:%02x:01" % round_no, "ip": "10.233.%d.12" % round_no, "name": "hb"},
                              {"mac": "52:54:00:bb:%02x:02" % round_no, "ip": "10.233.%d.13" % round_no, "name": "hb2"}]}
            runs = _module_together([("virtio_network", dict(base, ipv4=ip_a), "race-dhcp-r%d-a" % round_no),
                                     ("virtio_network", dict(base, ipv4=ip_b), "race-dhcp-r%d-b" % round_no)])
            report.add("concurrent_runs", 2)
            for run in runs:
                assert not run.has_traceback, run.log
            assert any(run.rc == 0 for run in runs), [r.log for r in runs]
            xml = etree.fromstring(conn.networkLookupByName(net).XMLDesc(0).encode())
            macs = sorted(h.get("mac") for h in xml.findall("ip/dhcp/host"))
            want_a = sorted(h["mac"] for h in ip_a["hosts"])
            want_b = sorted(h["mac"] for h in ip_b["hosts"])
            assert macs in (want_a, want_b), "mixed DHCP host lists: %s" % macs
            rh.cleanup(net)
    finally:
        conn.close()
        rh.cleanup(prefix)


def test_two_playbooks_race_on_the_same_guests_disks(prefix, report, pool):
    """Two runs give one guest different disk lists: one list wins whole, every volume made stays (data is never lost)."""
    pool_name, pool_path = pool
    guest = prefix + "g"
    disks_a = [{"pool": pool_name, "volume": prefix + "a.qcow2", "size": "4MiB"}]
    disks_b = [{"pool": pool_name, "volume": prefix + "b.qcow2", "size": "4MiB"},
               {"pool": pool_name, "volume": prefix + "b2.qcow2", "size": "4MiB"}]
    base = {"name": guest, "state": "present", "virt_type": "qemu", "memory": 64}
    runs = _module_together([("kvm_guest", dict(base, disks=disks_a), "race-disks-a"),
                             ("kvm_guest", dict(base, disks=disks_b), "race-disks-b")])
    report.add("concurrent_runs", 2)
    for run in runs:
        assert not run.has_traceback, run.log
    assert any(run.rc == 0 for run in runs), [r.log for r in runs]
    conn = rh.connect()
    try:
        xml = etree.fromstring(conn.lookupByName(guest).XMLDesc(2).encode())
        paths = sorted(d.find("source").get("file") for d in xml.findall("devices/disk[@device='disk']"))
        want_a = sorted(os.path.join(pool_path, d["volume"]) for d in disks_a)
        want_b = sorted(os.path.join(pool_path, d["volume"]) for d in disks_b)
        assert paths in (want_a, want_b), "mixed disk lists: %s" % paths
        # the record names only volumes the winning definition uses
        recorded = sorted(v.get("path") for v in xml.iter("{https://github.com/kvmops/kvmops.virt/guest/1}volume"))
        assert set(recorded) <= set(paths), (recorded, paths)
    finally:
        conn.close()
    # whatever the loser created is still there (never deleted behind its back)
    for vol in disks_a + disks_b:
        path = os.path.join(pool_path, vol["volume"])
        assert os.path.exists(path) or not any(r.rc == 0 and vol["volume"] in str(r.result.get("actions")) for r in runs), path
