# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage_pool delete_storage never deletes what guests use or what libvirt
did not create (issue 16), on libvirt's test:///default driver."""
from __future__ import annotations

import json

from ansible_collections.kvmops.virt.tests.unit.plugins.module_utils.test_pool import conn, pool_names, run  # noqa: F401  pylint: disable=unused-import


def _guest(conn, name, path):  # noqa: F811
    conn.defineXML("<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os><devices>"
                   "<disk type='file' device='disk'><source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>" % (name, path))


def test_delete_storage_refused_while_a_guest_uses_a_volume(run, conn):  # noqa: F811
    run(name="kvmt-s-u", path="/kvmt-s-u")
    pool = conn.storagePoolLookupByName("kvmt-s-u")
    vol = pool.createXML("<volume><name>used.qcow2</name><capacity>1048576</capacity></volume>", 0)
    _guest(conn, "kvmt-s-guest", vol.path())
    try:
        for check in (True, False):
            res = run(check=check, name="kvmt-s-u", state="absent", force=True, delete_storage=True)
            assert res.get("failed") and res["option"] == "delete_storage", res
            assert "kvmt-s-guest" in res["msg"] and "used.qcow2" in res["msg"]
        assert "kvmt-s-u" in pool_names(conn) and pool.isActive()
        assert [v.name() for v in pool.listAllVolumes(0)] == ["used.qcow2"]
    finally:
        conn.lookupByName("kvmt-s-guest").undefine()
    res = run(name="kvmt-s-u", state="absent", force=True, delete_storage=True)
    assert not res.get("failed"), res.get("msg")


def test_delete_storage_of_a_logical_pool_never_deletes_its_volumes(run, conn):  # noqa: F811
    # the test driver's testvg1 holds logical volumes libvirt did not create here
    run(name="kvmt-s-lv", type="logical", source=dict(name="testvg1"))
    pool = conn.storagePoolLookupByName("kvmt-s-lv")
    pool.createXML("<volume><name>lv1</name><capacity>1048576</capacity></volume>", 0)
    res = run(check=True, name="kvmt-s-lv", state="absent", force=True, delete_storage=True)
    assert res.get("failed") and res["option"] == "delete_storage", res
    assert "lv1" in res["msg"]
    assert not any(a.startswith("delete volume") for a in res.get("actions", []))


def test_delete_storage_of_an_fs_pool_never_empties_the_device(run, conn):  # noqa: F811
    run(name="kvmt-s-fs", type="fs", path="/mnt/kvmt-s-fs", source=dict(device=["/dev/kvmt-s"], format="ext4"))
    pool = conn.storagePoolLookupByName("kvmt-s-fs")
    pool.createXML("<volume><name>on-device.img</name><capacity>1024</capacity></volume>", 0)
    res = run(check=True, name="kvmt-s-fs", state="absent", force=True, delete_storage=True)
    assert not res.get("failed"), res.get("msg")
    assert not any(a.startswith("delete volume") for a in res["actions"]), res["actions"]
    assert "stay on /dev/kvmt-s" in json.dumps(res["warnings"])
    res = run(name="kvmt-s-fs", state="absent", force=True)
    assert not res.get("failed"), res.get("msg")


def test_a_name_too_long_for_a_file_name_is_refused_in_check_mode_too(run, conn):  # noqa: F811
    # found by the bad-input corpus in check mode: libvirt keeps <name>.xml, so the real run failed but check mode did not
    for check in (True, False):
        res = run(check=check, name="p" * 300, path="/kvmt-s-long")
        assert res.get("failed") and res["msg"].startswith("name: pool name is 300 bytes long"), res
    assert "p" * 300 not in pool_names(conn)
