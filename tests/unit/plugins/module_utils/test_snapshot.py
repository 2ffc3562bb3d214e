# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_snapshot: the snapshot XML model and the module against libvirt's
in-process test:///default driver (no mocks).

The test driver keeps snapshots as metadata only (no QEMU, no qcow2 files), so
these tests cover the planning: the disk checks, memory and quiesce rules,
descriptions updated in place, rotation, ordering, check mode and bad input.
Real snapshots, reverts and data run in the kvm_snapshot integration target.
"""
from __future__ import annotations

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils._snapshot_xml import SnapshotXML, new_snapshot_xml
from ansible_collections.kvmops.virt.plugins.modules import kvm_snapshot

libvirt = pytest.importorskip("libvirt")

PREFIX = "usnap"


def guest_xml(name, disks):
    devices = "".join(
        "<disk type='file' device='%s'><driver name='qemu' type='%s'/><source file='/var/tmp/%s-%s'/>"
        "<target dev='%s' bus='%s'/>%s</disk>"
        % (device, fmt, name, target, target, "sata" if device == "cdrom" else "virtio",
           "<readonly/>" if device == "cdrom" else "")
        for target, device, fmt in disks
    )
    return ("<domain type='test'><name>%s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><devices>%s</devices></domain>" % (name, devices))


@pytest.fixture
def guest(conn):
    """A shut-off test guest with a qcow2 disk and a cdrom."""
    name = PREFIX + "-g"
    dom = conn.defineXML(guest_xml(name, [("vda", "disk", "qcow2"), ("sda", "cdrom", "raw")]))
    yield name
    if dom.isActive():
        dom.destroy()
    for snap in dom.listAllSnapshots(0):
        snap.delete(0)


def snapshot_names(conn, name):
    return sorted(s.getName() for s in conn.lookupByName(name).listAllSnapshots(0))


def test_snapshot_xml_facts():
    snap = SnapshotXML.from_xml(
        "<domainsnapshot><name>s1</name><state>running</state><parent><name>s0</name></parent>"
        "<creationTime>1714658591</creationTime><memory snapshot='internal'/></domainsnapshot>")
    assert snap.facts("g", True) == {"name": "s1", "guest": "g", "created": "2024-05-02T14:03:11+00:00",
                                     "guest_state": "running", "current": True, "parent": "s0", "memory": True,
                                     "left_out": []}
    off = SnapshotXML.from_xml("<domainsnapshot><name>s2</name><state>shutoff</state><memory snapshot='no'/></domainsnapshot>")
    assert off.guest_state == "shutdown" and off.has_memory is False and off.created is None and off.parent is None


def test_new_snapshot_xml():
    snap = SnapshotXML.from_xml(new_snapshot_xml("s", "why", False, [("vda", "internal"), ("sda", "no")]))
    assert (snap.name, snap.description, snap.memory_snapshot) == ("s", "why", "no")
    assert [(d.name, d.snapshot) for d in snap.disks] == [("vda", "internal"), ("sda", "no")]


def test_present_four_way_description_and_absent(conn, guest, run_module_main):
    args = dict(guest=guest, name="s1", description="before")
    check = run_module_main(kvm_snapshot, check=True, **args)
    assert snapshot_names(conn, guest) == []  # check mode creates nothing
    apply = run_module_main(kvm_snapshot, **args)
    assert check["changed"] and apply["changed"]
    assert check["diff"] == apply["diff"] == {
        "before": {"state": "absent", "description": None, "memory": None, "snapshots": []},
        "after": {"state": "present", "description": "before", "memory": False, "snapshots": ["s1"]}}
    assert check["actions"] == apply["actions"]
    assert apply["snapshot"]["guest_state"] == "shutdown" and apply["snapshot"]["current"] is True
    assert apply["snapshot"]["memory"] is False and apply["snapshot"]["created"].endswith("+00:00")
    assert check["snapshot"]["created"] is None
    assert apply["snapshots"] == ["s1"]
    xml = conn.lookupByName(guest).snapshotLookupByName("s1", 0).getXMLDesc(0)
    assert "<disk name='sda' snapshot='no'/>" in xml  # the cdrom is left out, and says so
    assert check["snapshot"]["left_out"] == apply["snapshot"]["left_out"] == ["sda"]
    assert "leaves out sda" in str(apply["warnings"]) and "leaves out sda" in str(check["warnings"])
    for check_mode in (True, False):
        again = run_module_main(kvm_snapshot, check=check_mode, **args)
        assert not again["changed"] and again["diff"] == {"before": {}, "after": {}}

    # the description is updated in place: same snapshot, still current
    created = apply["snapshot"]["created"]
    upd = dict(args, description="after")
    check = run_module_main(kvm_snapshot, check=True, **upd)
    apply = run_module_main(kvm_snapshot, **upd)
    assert check["diff"] == apply["diff"] == {"before": {"description": "before"}, "after": {"description": "after"}}
    assert apply["snapshot"]["created"] == created and apply["snapshot"]["current"] is True
    assert "<description>after</description>" in conn.lookupByName(guest).snapshotLookupByName("s1", 0).getXMLDesc(0)
    assert not run_module_main(kvm_snapshot, **upd)["changed"]

    gone = dict(guest=guest, name="s1", state="absent")
    check = run_module_main(kvm_snapshot, check=True, **gone)
    apply = run_module_main(kvm_snapshot, **gone)
    assert check["diff"] == apply["diff"] == {
        "before": {"state": "present", "snapshots": ["s1"]}, "after": {"state": "absent", "snapshots": []}}
    assert snapshot_names(conn, guest) == [] and apply["snapshot"] == {}
    assert not run_module_main(kvm_snapshot, check=True, **gone)["changed"]
    assert not run_module_main(kvm_snapshot, **gone)["changed"]


def test_keep_rotates_the_oldest_and_order_is_oldest_first(conn, guest, run_module_main):
    for name in ("a", "b", "c"):
        run_module_main(kvm_snapshot, guest=guest, name=name)
    args = dict(guest=guest, name="d", keep=2)
    check = run_module_main(kvm_snapshot, check=True, **args)
    assert snapshot_names(conn, guest) == ["a", "b", "c"]
    apply = run_module_main(kvm_snapshot, **args)
    assert check["diff"] == apply["diff"]
    assert apply["diff"]["before"]["snapshots"] == ["a", "b", "c"] and apply["diff"]["after"]["snapshots"] == ["c", "d"]
    assert check["snapshots"] == apply["snapshots"] == ["c", "d"]
    assert snapshot_names(conn, guest) == ["c", "d"]
    assert apply["snapshot"]["parent"] == "c"
    assert not run_module_main(kvm_snapshot, **args)["changed"]


def test_revert_is_always_a_change(conn, guest, run_module_main):
    run_module_main(kvm_snapshot, guest=guest, name="a")
    run_module_main(kvm_snapshot, guest=guest, name="b")
    args = dict(guest=guest, name="a", state="reverted")
    check = run_module_main(kvm_snapshot, check=True, **args)
    assert conn.lookupByName(guest).snapshotCurrent(0).getName() == "b"  # check mode touches nothing
    apply = run_module_main(kvm_snapshot, **args)
    assert check["changed"] and apply["changed"] and check["diff"] == apply["diff"]
    assert apply["diff"] == {"before": {"reverted_to": None, "current": "b"}, "after": {"reverted_to": "a", "current": "a"}}
    assert apply["snapshot"]["current"] is True
    again = run_module_main(kvm_snapshot, **args)
    assert again["changed"] and again["diff"] == {"before": {"reverted_to": None}, "after": {"reverted_to": "a"}}


def test_raw_disk_is_named_and_nothing_is_created(conn, run_module_main):
    name = PREFIX + "-raw"
    conn.defineXML(guest_xml(name, [("vda", "disk", "qcow2"), ("vdb", "disk", "raw"), ("sda", "cdrom", "raw")]))
    for check in (True, False):
        out = run_module_main(kvm_snapshot, check=check, guest=name, name="s")
        assert out["failed"] and out["option"] == "guest"
        assert "vdb (/var/tmp/%s-vdb, raw)" % name in out["msg"] and "vda" not in out["msg"] and "sda" not in out["msg"]
        assert "nothing was created" in out["msg"]
    assert snapshot_names(conn, name) == []


def test_running_guest_needs_memory_and_quiesce_a_running_guest(conn, guest, run_module_main):
    conn.lookupByName(guest).create()
    out = run_module_main(kvm_snapshot, guest=guest, name="s")
    assert out["failed"] and out["option"] == "memory" and "set memory: true" in out["msg"]
    assert snapshot_names(conn, guest) == []
    conn.lookupByName(guest).destroy()
    out = run_module_main(kvm_snapshot, guest=guest, name="s", quiesce=True)
    assert out["failed"] and out["option"] == "quiesce" and "is shutdown" in out["msg"]
    out = run_module_main(kvm_snapshot, guest=guest, name="s", memory=True)
    assert out["changed"] and out["snapshot"]["memory"] is False and "holds its disks only" in str(out["warnings"])


@pytest.mark.parametrize("args, option", [
    (dict(name="a/b"), "name"),
    (dict(name=""), "name"),
    (dict(guest="x<y"), "guest"),
    (dict(keep=0), "keep"),
    (dict(keep=2, state="absent"), "keep"),
    (dict(memory=True, state="reverted"), "memory"),
    (dict(description="x", state="absent"), "description"),
    (dict(guest=PREFIX + "-missing"), "guest"),
    (dict(name="nope", state="reverted"), "name"),
])
def test_bad_input_names_the_option(conn, guest, run_module_main, args, option):
    out = run_module_main(kvm_snapshot, **dict(dict(guest=guest, name="s"), **args))
    assert out["failed"] and out["msg"].startswith(option + ":") and out["option"] == option
    assert snapshot_names(conn, guest) == []


def test_absent_with_a_missing_guest_warns(run_module_main):
    out = run_module_main(kvm_snapshot, guest=PREFIX + "-missing", name="s", state="absent")
    assert not out["changed"] and "does not exist" in str(out["warnings"])
