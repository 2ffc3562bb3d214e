# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage_pool: golden XML per pool type, validation, and the module against
libvirt's in-process test:///default driver (a real libvirt driver, no mocks).

Each test holds its own test:///default connection open; the driver keeps its
state while a connection is open and starts afresh after the last one closes,
so every test begins with the driver's stock objects only.
"""
from __future__ import annotations

import json
import os

import pytest


from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._pool import (
    normalize_source,
    validate_definition,
    validate_options,
)
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import PoolXML, pool_xml, set_pool_options
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, parse_xml
from ansible_collections.kvmops.virt.plugins.modules import storage_pool

libvirt = pytest.importorskip("libvirt")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pool")
URI = "test:///default"

# (golden file, name, type, path, source): the options a user would write
CASES = [
    ("dir", "images", "dir", "/var/lib/libvirt/images/lab", {}),
    ("fs", "fastdisk", "fs", "/srv/vm", {"device": ["/dev/nvme1n1p1"], "format": "ext4"}),
    ("netfs", "nfs-images", "netfs", "/var/lib/libvirt/nfs-images/", {"host": "nfs.example.com", "dir": "/exports/images", "format": "nfs"}),
    ("logical", "vg_guests", "logical", None, {"name": "vg_guests", "device": ["/dev/sdb", "/dev/sdc"]}),
    ("disk", "spare-disk", "disk", None, {"device": ["/dev/sdd"], "format": "gpt"}),
    ("iscsi", "san", "iscsi", None, {
        "host": "san.example.com", "port": 3260, "device": ["iqn.2024-01.com.example:storage.lun1"],
        "initiator": "iqn.2024-01.com.example:host1",
        "auth": {"type": "chap", "username": "libvirt", "secret_usage": "san-chap", "secret_uuid": None},
    }),
    ("rbd", "ceph", "rbd", None, {
        "host": "mon1.example.com", "port": 6789, "name": "rbd",
        "auth": {"type": "ceph", "username": "libvirt", "secret_uuid": "2ec115d7-3a88-3ceb-bc12-0ac909a6fd87", "secret_usage": None},
    }),
]


def golden(name):
    with open(os.path.join(FIXTURES, name + ".xml")) as f:
        return f.read()


def build(ptype, name, path, source):
    path = os.path.normpath(path) if path else path
    src = normalize_source(ptype, source)
    validate_options(ptype, path, src)
    model = pool_xml(name, ptype, path, src)
    validate_definition(model)
    return model


@pytest.fixture
def conn():
    """A test:///default connection that keeps the driver's state for one test."""
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def run(run_module_main, conn):
    """Run the storage_pool module's main() against test:///default; return its JSON result."""

    def _run(check=False, **args):
        return run_module_main(storage_pool, check=check, **args)

    return _run


def pool_names(conn):
    return sorted(p.name() for p in conn.listAllStoragePools())


# -- golden XML ------------------------------------------------------------------
@pytest.mark.parametrize("fixture, name, ptype, path, source", CASES, ids=[c[0] for c in CASES])
def test_pool_xml_matches_golden_file(fixture, name, ptype, path, source):
    model = build(ptype, name, path, source)
    assert canonical(model.node) == canonical(parse_xml(golden(fixture)))


@pytest.mark.parametrize("fixture, name, ptype, path, source", CASES, ids=[c[0] for c in CASES])
def test_golden_xml_is_accepted_by_libvirt(conn, fixture, name, ptype, path, source):
    """The test driver parses the XML with libvirt's own pool parser and gives the fields back."""
    pool = conn.storagePoolDefineXML(golden(fixture), 0)
    back = PoolXML.from_xml(pool.XMLDesc(0))
    expected = build(ptype, name, path, source)
    assert back.type == ptype
    assert back.name == name
    assert back.uuid  # libvirt generated one
    assert back.path == expected.path
    for key in ("device", "host", "port", "dir", "name", "format", "initiator"):
        if expected.source_value(key) is not None:  # libvirt fills defaults (format lvm2 for logical)
            assert back.source_value(key) == expected.source_value(key), key
    assert back.auth_username == expected.auth_username
    pool.create(0)
    assert pool.isActive()
    pool.destroy()
    pool.undefine()


def test_model_reads_back_what_it_wrote():
    model = build("iscsi", "san", None, CASES[5][4])
    again = PoolXML.from_xml(model.to_xml())
    assert again.source_host == "san.example.com"
    assert again.source_port == 3260
    assert again.source_device == ["iqn.2024-01.com.example:storage.lun1"]
    assert again.source_initiator == "iqn.2024-01.com.example:host1"
    assert (again.auth_type, again.auth_username, again.auth_secret_usage) == ("chap", "libvirt", "san-chap")


def test_editing_a_live_definition_keeps_what_the_model_does_not_know():
    live = PoolXML.from_xml(
        "<pool type='dir'><name>a</name><uuid>0f4b7f0e-8d3e-4b43-9d3c-4f7c2c9b6a11</uuid>"
        "<capacity unit='bytes'>100</capacity><source/><target><path>/a</path>"
        "<permissions><mode>0711</mode><owner>0</owner><group>0</group></permissions></target></pool>"
    )
    set_pool_options(live, "dir", "/b", {})
    assert live.path == "/b"
    assert live.uuid == "0f4b7f0e-8d3e-4b43-9d3c-4f7c2c9b6a11"
    assert live.find("./target/permissions/mode").text == "0711"


def test_xml_metacharacters_are_escaped_by_the_model():
    model = pool_xml("a<b&c'd", "dir", "/srv/x&y<z", {})
    text = model.to_xml()
    assert "<b&" not in text
    assert PoolXML.from_xml(text).name == "a<b&c'd"
    assert PoolXML.from_xml(text).path == "/srv/x&y<z"


# -- validation ------------------------------------------------------------------
@pytest.mark.parametrize("ptype, path, source, option, fragment", [
    ("dir", None, {}, "path", "required for a 'dir' pool"),
    ("fs", "/mnt/x", {}, "source.device", "required for a 'fs' pool"),
    ("netfs", "/mnt/x", {"host": "h"}, "source.dir", "required for a 'netfs' pool"),
    ("disk", None, {}, "source.device", "required"),
    ("iscsi", None, {"host": "h"}, "source.device", "required"),
    ("rbd", None, {"host": "h"}, "source.name", "required"),
])
def test_missing_required_options(ptype, path, source, option, fragment):
    with pytest.raises(InvalidArgument) as err:
        build(ptype, "p", path, source)
    assert err.value.option == option
    assert err.value.msg.startswith(option + ": ")
    assert fragment in err.value.msg


@pytest.mark.parametrize("ptype, path, source, option, fragment", [
    ("dir", "relative/dir", {}, "path", "absolute"),
    ("dir", "/x", {"device": ["/dev/sda"]}, "source.device", "not used by 'dir' pools"),
    ("fs", "/x", {"device": ["/dev/a", "/dev/b"]}, "source.device", "exactly one"),
    ("fs", "/x", {"device": ["sda"]}, "source.device", "absolute"),
    ("fs", "/x", {"device": ["/dev/a"], "format": "ntfs-3g"}, "source.format", "unknown format"),
    ("netfs", "/x", {"host": "h", "dir": "/e", "port": 70000}, "source.port", "between 1 and 65535"),
    ("rbd", "/x", {"host": "h", "name": "r"}, "path", "no target path"),
    ("rbd", None, {"host": "h", "name": "r", "auth": {"type": "chap", "username": "u"}}, "source.auth.type", "ceph"),
    ("logical", None, {"name": "vg/x"}, "source.name", "without '/'"),
])
def test_bad_options_name_the_option(ptype, path, source, option, fragment):
    with pytest.raises(InvalidArgument) as err:
        src = normalize_source(ptype, source)
        validate_options(ptype, path, src)
    assert err.value.option == option
    assert fragment in err.value.msg


@pytest.mark.parametrize("name", ["", "a/b", "..", "a\x00b", "a<b", "x&y", "it's", 'q"'])
def test_bad_names(name):
    with pytest.raises(InvalidArgument) as err:
        check_name(name, "name", "pool")
    assert err.value.option == "name"


# -- the module on test:///default -----------------------------------------------
def test_four_way_create_active_then_idempotent(run, conn):
    args = dict(name="kvmt-u-dir", path="/kvmt-u-dir", state="active", autostart=True)
    check = run(check=True, **args)
    real = run(**args)
    assert check["changed"] and real["changed"]
    assert check["diff"] == real["diff"]
    assert real["diff"]["after"] == {"state": "active", "type": "dir", "path": "/kvmt-u-dir", "autostart": True}
    assert check["actions"] == real["actions"]
    assert check["pool"]["uuid"] is None and real["pool"]["uuid"]
    for key in ("name", "type", "path", "active", "autostart"):
        assert check["pool"][key] == real["pool"][key], key
    again_check = run(check=True, **args)
    again = run(**args)
    assert not again_check["changed"] and not again["changed"]
    assert again_check["diff"] == again["diff"] == {"before": {}, "after": {}}
    pool = conn.storagePoolLookupByName("kvmt-u-dir")
    assert pool.isActive() and pool.autostart()
    assert real["pool"]["volumes"] == []
    assert real["restart_required"] is False


def test_present_defines_without_starting_and_leaves_power_state(run, conn):
    res = run(name="kvmt-u-p", path="/kvmt-u-p", state="present")
    assert res["changed"] and res["diff"]["after"]["state"] == "inactive"
    assert not conn.storagePoolLookupByName("kvmt-u-p").isActive()
    assert res["pool"]["capacity"] is None and res["pool"]["volumes"] is None
    conn.storagePoolLookupByName("kvmt-u-p").create(0)
    assert not run(name="kvmt-u-p", state="present")["changed"]
    assert conn.storagePoolLookupByName("kvmt-u-p").isActive()


def test_state_transitions_active_inactive(run, conn):
    run(name="kvmt-u-t", path="/kvmt-u-t")
    check = run(check=True, name="kvmt-u-t", state="inactive")
    real = run(name="kvmt-u-t", state="inactive")
    assert check["diff"] == real["diff"] == {"before": {"state": "active"}, "after": {"state": "inactive"}}
    assert not conn.storagePoolLookupByName("kvmt-u-t").isActive()
    assert not run(name="kvmt-u-t", state="inactive")["changed"]
    back = run(name="kvmt-u-t", state="active")
    assert back["diff"]["after"] == {"state": "active"} and back["pool"]["active"]


def test_autostart_toggles_and_is_compared_only_when_given(run, conn):
    run(name="kvmt-u-a", path="/kvmt-u-a", autostart=True)
    assert not run(name="kvmt-u-a")["changed"]
    res = run(name="kvmt-u-a", autostart=False)
    assert res["diff"] == {"before": {"autostart": True}, "after": {"autostart": False}}
    assert not conn.storagePoolLookupByName("kvmt-u-a").autostart()


def test_update_inactive_pool_redefines_with_same_uuid(run, conn):
    first = run(name="kvmt-u-m", path="/kvmt-u-m", state="inactive")
    check = run(check=True, name="kvmt-u-m", path="/kvmt-u-m2", state="inactive")
    real = run(name="kvmt-u-m", path="/kvmt-u-m2", state="inactive")
    assert check["diff"] == real["diff"] == {"before": {"path": "/kvmt-u-m"}, "after": {"path": "/kvmt-u-m2"}}
    assert real["actions"] == ["redefine storage pool 'kvmt-u-m' (path)"]
    assert real["pool"]["uuid"] == first["pool"]["uuid"]
    assert real["pool"]["path"] == "/kvmt-u-m2"
    assert real["restart_required"] is False
    assert not run(name="kvmt-u-m", path="/kvmt-u-m2/", state="inactive")["changed"]


def test_source_change_of_existing_fs_pool(run, conn):
    run(name="kvmt-u-fs", type="fs", path="/mnt/kvmt-u-fs", source=dict(device=["/dev/kvmt-a"], format="ext4"), state="inactive")
    res = run(name="kvmt-u-fs", source=dict(device="/dev/kvmt-b"), state="inactive")
    assert res["diff"] == {"before": {"source.device": ["/dev/kvmt-a"]}, "after": {"source.device": ["/dev/kvmt-b"]}}
    model = PoolXML.from_xml(conn.storagePoolLookupByName("kvmt-u-fs").XMLDesc(0))
    assert model.source_device == ["/dev/kvmt-b"] and model.source_format == "ext4"
    # the type defaults to the pool's own; the unspecified format stays
    assert not run(name="kvmt-u-fs", source=dict(device=["/dev/kvmt-b"]), state="inactive")["changed"]


def test_type_is_not_compared_when_not_given(run, conn):
    run(name="kvmt-u-rbd", type="rbd", source=dict(host="mon1", name="rbd"), state="present")
    res = run(name="kvmt-u-rbd", state="present")
    assert not res["changed"] and res["pool"]["type"] == "rbd"


def test_logical_pool_builds_only_when_the_volume_group_is_missing(run, conn):
    # the test driver reports volume groups testvg1 and testvg2
    existing = run(check=True, name="kvmt-u-lv", type="logical", source=dict(name="testvg1"))
    assert existing["actions"] == ["define storage pool 'kvmt-u-lv' (logical)", "start storage pool 'kvmt-u-lv'"]
    assert existing["pool"]["path"] == "/dev/testvg1"
    missing = run(name="kvmt-u-lv2", type="logical", source=dict(name="kvmt-newvg"))
    assert missing["failed"] and missing["option"] == "source.device"
    assert "volume group 'kvmt-newvg' does not exist" in missing["msg"]
    assert "kvmt-u-lv2" not in pool_names(conn)
    built = run(check=True, name="kvmt-u-lv3", type="logical", source=dict(name="kvmt-newvg", device=["/dev/kvmt-x"]))
    assert "build storage pool 'kvmt-u-lv3' (create volume group 'kvmt-newvg' on /dev/kvmt-x)" in built["actions"]


def test_absent_refused_while_volumes_remain_and_forced(run, conn):
    run(name="kvmt-u-v", path="/kvmt-u-v")
    pool = conn.storagePoolLookupByName("kvmt-u-v")
    pool.createXML("<volume><name>disk1.qcow2</name><capacity>1048576</capacity></volume>", 0)
    refused = run(name="kvmt-u-v", state="absent")
    assert refused["failed"] and refused["option"] == "force"
    assert "still holds 1 volume(s) (disk1.qcow2)" in refused["msg"]
    assert "kvmt-u-v" in pool_names(conn) and pool.isActive()

    check = run(check=True, name="kvmt-u-v", state="absent", force=True, delete_storage=True)
    real = run(name="kvmt-u-v", state="absent", force=True, delete_storage=True)
    assert check["diff"] == real["diff"] == {
        "before": {"state": "active", "volumes": ["disk1.qcow2"]},
        "after": {"state": "absent", "volumes": []},
    }
    assert real["actions"][0] == "delete volume 'disk1.qcow2' of storage pool 'kvmt-u-v'"
    assert real["pool"] == {}
    assert "kvmt-u-v" not in pool_names(conn)
    assert not run(name="kvmt-u-v", state="absent")["changed"]


def test_absent_force_without_delete_storage_keeps_volumes_and_warns(run, conn):
    run(name="kvmt-u-k", path="/kvmt-u-k")
    conn.storagePoolLookupByName("kvmt-u-k").createXML("<volume><name>keep.img</name><capacity>1024</capacity></volume>", 0)
    res = run(name="kvmt-u-k", state="absent", force=True)
    assert res["changed"]
    assert res["actions"] == ["stop storage pool 'kvmt-u-k'", "undefine storage pool 'kvmt-u-k'"]
    assert "stay on the storage" in json.dumps(res["warnings"])


def test_absent_of_inactive_pool_needs_force(run, conn):
    run(name="kvmt-u-i", path="/kvmt-u-i", state="inactive")
    refused = run(name="kvmt-u-i", state="absent")
    assert refused["failed"] and "is inactive" in refused["msg"] and "force: true" in refused["msg"]
    assert "kvmt-u-i" in pool_names(conn)
    res = run(name="kvmt-u-i", state="absent", force=True)
    assert res["diff"] == {"before": {"state": "inactive"}, "after": {"state": "absent"}}
    assert "kvmt-u-i" not in pool_names(conn)


def test_delete_storage_refused_for_types_libvirt_cannot_delete(run, conn):
    run(name="kvmt-u-is", type="iscsi", source=dict(host="san", device="iqn.2024-01.com.example:t"))
    res = run(name="kvmt-u-is", state="absent", delete_storage=True)
    assert res["failed"] and res["option"] == "delete_storage"
    assert "kvmt-u-is" in pool_names(conn)


def test_bad_input_fails_cleanly_and_changes_nothing(run, conn):
    before = pool_names(conn)
    cases = [
        (dict(name="kvmt-u-bad"), "path"),
        (dict(name="kvmt-u-bad", path="rel/dir"), "path"),
        (dict(name="kvmt-u-<bad>", path="/x"), "name"),
        (dict(name="kvmt-u-b&d", path="/x"), "name"),
        (dict(name="kvmt-u-bad'", path="/x"), "name"),
        (dict(name="kvmt-u-bad", type="fs", path="/x"), "source.device"),
        (dict(name="kvmt-u-bad", path="/x", source=dict(device=["/dev/sda"])), "source.device"),
        (dict(name="kvmt-u-bad", path="/x", delete_storage=True), "delete_storage"),
    ]
    for args, option in cases:
        res = run(**args)
        assert res["failed"], args
        assert res["msg"].startswith(option + ": "), (args, res["msg"])
        assert "Traceback" not in json.dumps(res)
    # Ansible itself rejects wrong choices and types, naming the option
    res = run(name="kvmt-u-bad", path="/x", type="zfs-ish")
    assert res["failed"] and "type" in res["msg"]
    res = run(name="kvmt-u-bad", path="/x", source=dict(port="not-a-number", host="h"))
    assert res["failed"] and "port" in res["msg"]
    assert pool_names(conn) == before


def test_conflicting_source_fails_cleanly(run, conn):
    # libvirt refuses a second pool on the same source device
    run(name="kvmt-u-r1", type="disk", source=dict(device="/dev/kvmt-same"))
    res = run(name="kvmt-u-r2", type="disk", source=dict(device="/dev/kvmt-same"))
    assert res["failed"] and "kvmt-u-r1" in res["msg"]
    assert "kvmt-u-r2" not in pool_names(conn)
