# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage_volume: XML, names, image headers, the shared volume functions and
the module against libvirt's in-process test:///default driver (no mocks).

The test driver has no upload or resize; those run for real in the
storage_volume integration target. Here they show that their failures are
mapped to clear errors and that a half-made volume is deleted again.
"""
from __future__ import annotations

import gc
import json
import struct

import pytest


from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, OperationFailed
from ansible_collections.kvmops.virt.plugins.module_utils._storage_ops import (
    check_volume_name,
    create_volume,
    delete_volume,
    granularity,
    inspect_image,
    resolve_backing,
    round_up,
    upload_bytes,
    volume_facts,
)
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import VolumeXML, volume_xml
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, parse_xml
from ansible_collections.kvmops.virt.plugins.modules import storage_volume

libvirt = pytest.importorskip("libvirt")

URI = "test:///default"
POOL = "default-pool"  # the test driver's stock dir pool at /default-pool
MIB = 1024 * 1024


def qcow2_header(virtual_size, backing_offset=0):
    """The first 32 bytes of a qcow2 v3 image, as qemu-img writes them."""
    return b"QFI\xfb" + struct.pack(">IQIIQ", 3, backing_offset, 0, 16, virtual_size)


@pytest.fixture(autouse=True)
def fresh_test_driver():
    """Each test starts from the test driver's stock state.

    test:///default keeps its state (the volumes a test made) until the last
    object of its connections is freed, not when the connection is closed. A
    pool object referenced from a caught exception's traceback (a reference
    cycle through ``pytest.raises``) lives until the garbage collector runs,
    and its volumes would leak into the next test: collect it here.
    """
    yield
    gc.collect()


@pytest.fixture
def conn():
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def client(conn):
    with LibvirtClient(URI) as cl:
        yield cl


@pytest.fixture
def run(run_module_main, conn):
    """Run the storage_volume module's main() against test:///default; return its JSON result."""

    def _run(check=False, **args):
        return run_module_main(storage_volume, check=check, **args)

    return _run


def vol_names(conn, pool=POOL):
    p = conn.storagePoolLookupByName(pool)
    p.refresh(0)
    return sorted(p.listVolumes())


# -- XML ----------------------------------------------------------------------------
def test_volume_xml_plain_qcow2():
    expected = (
        "<volume><name>data.qcow2</name><capacity unit='bytes'>10737418240</capacity>"
        "<allocation unit='bytes'>0</allocation><target><format type='qcow2'/></target></volume>"
    )
    assert canonical(parse_xml(volume_xml("data.qcow2", 10 * 1024 ** 3))) == canonical(parse_xml(expected))


def test_volume_xml_overlay():
    text = volume_xml("web1.qcow2", 20 * 1024 ** 3, "qcow2", "/var/lib/libvirt/images/base.qcow2", "qcow2")
    expected = (
        "<volume><name>web1.qcow2</name><capacity unit='bytes'>21474836480</capacity>"
        "<allocation unit='bytes'>0</allocation><target><format type='qcow2'/></target>"
        "<backingStore><path>/var/lib/libvirt/images/base.qcow2</path><format type='qcow2'/></backingStore></volume>"
    )
    assert canonical(parse_xml(text)) == canonical(parse_xml(expected))


def test_volume_xml_block_volume_has_full_allocation_and_no_format():
    model = VolumeXML.from_xml(volume_xml("lv1", 8 * MIB, None, allocation_bytes=None))
    assert model.allocation is None and model.format is None and model.capacity == 8 * MIB


def test_volume_xml_escapes_metacharacters():
    text = volume_xml("a<b&c'd", 1024)
    assert "<b&" not in text
    assert VolumeXML.from_xml(text).name == "a<b&c'd"


# -- names and image headers --------------------------------------------------
@pytest.mark.parametrize("name", ["", "/", "a/b", "../x", "..", ".", "a\x00b", "tab\tname", "a<b", "a&b", "it's", 'a"b', "a>b"])
def test_volume_names_that_are_not_plain_file_names_are_refused(name):
    with pytest.raises(InvalidArgument) as err:
        check_volume_name(name)
    assert err.value.option == "name"
    assert err.value.msg.startswith("name: ")


@pytest.mark.parametrize("name", ["disk.qcow2", "web-1_data.img", "base image.raw", "..hidden", "a..b"])
def test_plain_file_names_are_accepted(name):
    assert check_volume_name(name) == name


def test_inspect_qcow2_raw_overlay(tmp_path):
    q = tmp_path / "a.qcow2"
    q.write_bytes(qcow2_header(5 * MIB) + b"\0" * 1000)
    assert inspect_image(str(q)) == ("qcow2", 5 * MIB, 1032, False)
    o = tmp_path / "o.qcow2"
    o.write_bytes(qcow2_header(5 * MIB, backing_offset=512) + b"\0" * 100)
    assert inspect_image(str(o))[3] is True
    r = tmp_path / "r.img"
    r.write_bytes(b"x" * 3000)
    assert inspect_image(str(r)) == ("raw", 3000, 3000, False)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"QFI\xfb")  # too short to be a qcow2 header
    assert inspect_image(str(tiny))[0] == "raw"


def test_inspect_refuses_directories_and_missing_files(tmp_path):
    with pytest.raises(InvalidArgument) as err:
        inspect_image(str(tmp_path), "source")
    assert err.value.option == "source"
    with pytest.raises(InvalidArgument):
        inspect_image(str(tmp_path / "missing"), "source")


def test_granularity_and_rounding():
    assert granularity("dir") == 1024 and granularity("logical") == 4 * MIB
    assert round_up(1000000, 1024) == 1000448
    assert round_up(4096, 1024) == 4096


# -- shared functions on the test driver ----------------------------------------------
def test_create_facts_delete(client, conn):
    pool = client.require_pool(POOL)
    vol = create_volume(client, pool, volume_xml("kvmt-u-a.qcow2", 2 * MIB))
    facts = volume_facts(client, vol, POOL)
    assert facts == {
        "name": "kvmt-u-a.qcow2", "pool": POOL, "path": "/default-pool/kvmt-u-a.qcow2", "format": "qcow2",
        "capacity": 2 * MIB, "allocation": facts["allocation"], "backing": None,
    }
    delete_volume(client, vol)
    assert "kvmt-u-a.qcow2" not in vol_names(conn)


def test_create_volume_maps_errors(client):
    pool = client.require_pool(POOL)
    create_volume(client, pool, volume_xml("kvmt-u-dup", MIB))
    with pytest.raises(OperationFailed) as err:
        create_volume(client, pool, volume_xml("kvmt-u-dup", MIB))
    assert "creating volume 'kvmt-u-dup' in storage pool 'default-pool' failed on uri 'test:///default'" in err.value.msg


def test_resolve_backing_by_name_path_and_file(client, tmp_path):
    pool = client.require_pool(POOL)
    create_volume(client, pool, volume_xml("kvmt-u-base.qcow2", 3 * MIB))
    assert resolve_backing(client, pool, "kvmt-u-base.qcow2") == ("/default-pool/kvmt-u-base.qcow2", "qcow2", 3 * MIB)
    assert resolve_backing(client, None, "/default-pool/kvmt-u-base.qcow2") == ("/default-pool/kvmt-u-base.qcow2", "qcow2", 3 * MIB)
    plain = tmp_path / "base.qcow2"
    plain.write_bytes(qcow2_header(7 * MIB) + b"\0" * 64)
    assert resolve_backing(client, pool, str(plain)) == (str(plain), "qcow2", 7 * MIB)
    raw = tmp_path / "base.raw"
    raw.write_bytes(b"\1" * 4096)
    assert resolve_backing(client, pool, str(raw)) == (str(raw), "raw", 4096)


@pytest.mark.parametrize("backing, fragment", [
    ("kvmt-missing.qcow2", "does not exist in storage pool 'default-pool'"),
    ("/nonexistent/kvmt/base.qcow2", "does not exist"),
    ("sub/dir.qcow2", "without '/'"),
    ("", "must name a volume"),
])
def test_resolve_backing_missing_names_the_option(client, backing, fragment):
    pool = client.require_pool(POOL)
    with pytest.raises(InvalidArgument) as err:
        resolve_backing(client, pool, backing, option="disks[1].backing_volume")
    assert err.value.option == "disks[1].backing_volume"
    assert fragment in err.value.msg


def test_upload_errors_are_mapped(client):
    """The test driver has no upload: the failure must be a clear, typed error."""
    pool = client.require_pool(POOL)
    vol = create_volume(client, pool, volume_xml("kvmt-u-up.img", 4096, "raw"))
    with pytest.raises(OperationFailed) as err:
        upload_bytes(client, vol, b"x" * 4096)
    assert "into volume 'kvmt-u-up.img'" in err.value.msg


# -- the module on test:///default -------------------------------------------------------
def test_four_way_present_and_absent(run, conn):
    args = dict(name="kvmt-u-4.qcow2", pool=POOL, capacity="8MiB")
    check = run(check=True, **args)
    real = run(**args)
    assert check["changed"] and real["changed"]
    assert check["diff"] == real["diff"] == {
        "before": {"state": "absent", "format": None, "capacity": None},
        "after": {"state": "present", "format": "qcow2", "capacity": 8 * MIB},
    }
    for key in ("name", "pool", "path", "format", "capacity", "backing"):
        assert check["volume"][key] == real["volume"][key], key
    assert real["volume"]["path"] == "/default-pool/kvmt-u-4.qcow2"
    assert not run(check=True, **args)["changed"]
    assert not run(**args)["changed"]
    # capacity as an integer in bytes is the same size
    assert not run(name="kvmt-u-4.qcow2", pool=POOL, capacity=8 * MIB)["changed"]

    gone = dict(name="kvmt-u-4.qcow2", pool=POOL, state="absent")
    check = run(check=True, **gone)
    real = run(**gone)
    assert check["diff"] == real["diff"] == {"before": {"state": "present"}, "after": {"state": "absent"}}
    assert real["volume"] == {}
    assert "kvmt-u-4.qcow2" not in vol_names(conn)
    assert not run(check=True, **gone)["changed"]
    assert not run(**gone)["changed"]


def test_raw_format(run):
    res = run(name="kvmt-u-r.img", pool=POOL, capacity=MIB, format="raw")
    assert res["volume"]["format"] == "raw"


def test_overlay_on_a_volume_of_the_pool(run, conn):
    run(name="kvmt-u-base.qcow2", pool=POOL, capacity="16MiB")
    args = dict(name="kvmt-u-ov.qcow2", pool=POOL, backing_volume="kvmt-u-base.qcow2")
    check = run(check=True, **args)
    real = run(**args)
    assert check["diff"] == real["diff"]
    assert real["diff"]["after"]["backing_volume"] == "/default-pool/kvmt-u-base.qcow2"
    assert real["volume"]["backing"] == "/default-pool/kvmt-u-base.qcow2"
    assert real["volume"]["capacity"] == 16 * MIB  # defaults to the backing volume's size
    xml = VolumeXML.from_xml(conn.storagePoolLookupByName(POOL).storageVolLookupByName("kvmt-u-ov.qcow2").XMLDesc(0))
    assert (xml.backing_path, xml.backing_format, xml.format) == ("/default-pool/kvmt-u-base.qcow2", "qcow2", "qcow2")
    assert not run(**args)["changed"]
    other = run(name="kvmt-u-ov.qcow2", pool=POOL, backing_volume="kvmt-u-other.qcow2")
    assert other["failed"] and other["option"] == "backing_volume"


def test_overlay_refusals(run, conn):
    run(name="kvmt-u-b2.qcow2", pool=POOL, capacity="16MiB")
    small = run(name="kvmt-u-o2.qcow2", pool=POOL, backing_volume="kvmt-u-b2.qcow2", capacity="8MiB")
    assert small["failed"] and small["msg"].startswith("capacity: an overlay cannot be smaller")
    raw = run(name="kvmt-u-o2.qcow2", pool=POOL, backing_volume="kvmt-u-b2.qcow2", format="raw")
    assert raw["failed"] and raw["msg"].startswith("format: ")
    assert "kvmt-u-o2.qcow2" not in vol_names(conn)


def test_grow_is_planned_and_shrink_refused(run, conn):
    run(name="kvmt-u-g.qcow2", pool=POOL, capacity="4MiB")
    grow = run(check=True, name="kvmt-u-g.qcow2", pool=POOL, capacity="6MiB")
    assert grow["diff"] == {"before": {"capacity": 4 * MIB}, "after": {"capacity": 6 * MIB}}
    assert grow["volume"]["capacity"] == 6 * MIB
    shrink = run(name="kvmt-u-g.qcow2", pool=POOL, capacity="2MiB")
    assert shrink["failed"]
    assert shrink["msg"] == "capacity: cannot shrink volume 'kvmt-u-g.qcow2' from 4MiB to 2MiB; shrinking is refused"
    # rounding within libvirt's granularity is not a shrink
    assert not run(name="kvmt-u-g.qcow2", pool=POOL, capacity=4 * MIB - 100)["changed"]


def test_format_of_existing_volume_is_not_converted(run):
    run(name="kvmt-u-f", pool=POOL, capacity=MIB, format="raw")
    res = run(name="kvmt-u-f", pool=POOL, format="qcow2")
    assert res["failed"] and res["msg"].startswith("format: volume 'kvmt-u-f' exists with format raw")


def test_failed_import_deletes_the_new_volume(run, conn, tmp_path):
    src = tmp_path / "src.img"
    src.write_bytes(b"k" * 65536)
    res = run(name="kvmt-u-imp.img", pool=POOL, source=str(src))
    assert res["failed"]
    assert "was deleted again" in res["msg"]
    assert "kvmt-u-imp.img" not in vol_names(conn)


def test_import_plan_in_check_mode(run, tmp_path):
    src = tmp_path / "src.qcow2"
    src.write_bytes(qcow2_header(32 * MIB) + b"\0" * 4064)
    res = run(check=True, name="kvmt-u-imp.qcow2", pool=POOL, source=str(src))
    assert res["diff"]["after"] == {"state": "present", "format": "qcow2", "capacity": 32 * MIB, "source": str(src)}
    assert res["volume"]["format"] == "qcow2" and res["volume"]["capacity"] == 32 * MIB
    assert res["actions"][1].startswith("upload '%s'" % src)
    mismatch = run(check=True, name="kvmt-u-imp.qcow2", pool=POOL, source=str(src), format="raw")
    assert mismatch["failed"] and mismatch["msg"].startswith("format: ")
    small = run(check=True, name="kvmt-u-imp.qcow2", pool=POOL, source=str(src), capacity="1MiB")
    assert small["failed"] and small["msg"].startswith("capacity: ")
    overlay = tmp_path / "overlay.qcow2"
    overlay.write_bytes(qcow2_header(32 * MIB, backing_offset=4096) + b"\0" * 100)
    refused = run(check=True, name="kvmt-u-imp.qcow2", pool=POOL, source=str(overlay))
    assert refused["failed"] and refused["msg"].startswith("source: ") and "backing file" in refused["msg"]


def test_bad_input_fails_cleanly_and_changes_nothing(run, conn, tmp_path):
    before = vol_names(conn)
    pools_before = sorted(p.name() for p in conn.listAllStoragePools())
    cases = [
        (dict(name="kvmt-u-x", pool="kvmt-no-such-pool", capacity="1MiB"), "pool"),
        (dict(name="kvmt-u-x", pool=POOL, capacity="-1MiB"), "capacity"),
        (dict(name="kvmt-u-x", pool=POOL, capacity=-5), "capacity"),
        (dict(name="kvmt-u-x", pool=POOL, capacity="lots"), "capacity"),
        (dict(name="kvmt-u-x", pool=POOL, capacity="10 parsecs"), "capacity"),
        (dict(name="kvmt-u-x", pool=POOL, capacity=0), "capacity"),
        (dict(name="kvmt-u-x", pool=POOL), "capacity"),
        (dict(name="kvmt-u-x", pool=POOL, source=str(tmp_path / "missing.img")), "source"),
        (dict(name="kvmt-u-x", pool=POOL, source="relative.img"), "source"),
        (dict(name="kvmt-u-x", pool=POOL, backing_volume="kvmt-no-such-base.qcow2"), "backing_volume"),
        (dict(name="kvmt-u-x", pool=POOL, backing_volume="/nonexistent/kvmt/base.qcow2"), "backing_volume"),
        (dict(name="../kvmt-u-x", pool=POOL, capacity="1MiB"), "name"),
        (dict(name="a/b", pool=POOL, capacity="1MiB"), "name"),
        (dict(name="", pool=POOL, capacity="1MiB"), "name"),
        (dict(name="..", pool=POOL, capacity="1MiB"), "name"),
        (dict(name="kvmt-u-<x>", pool=POOL, capacity="1MiB"), "name"),
        (dict(name="kvmt-u-&x", pool=POOL, capacity="1MiB"), "name"),
        (dict(name="kvmt-u-'x", pool=POOL, capacity="1MiB"), "name"),
    ]
    for args, option in cases:
        res = run(**args)
        assert res.get("failed"), args
        assert res["msg"].startswith(option + ": "), (args, res["msg"])
        assert "Traceback" not in json.dumps(res)
    # Ansible rejects an unknown format itself, naming the option
    res = run(name="kvmt-u-x", pool=POOL, capacity="1MiB", format="vhdx-ish")
    assert res["failed"] and "format" in res["msg"]
    res = run(name="kvmt-u-x", pool=POOL, source="/etc/hostname", backing_volume="b")
    assert res["failed"] and "mutually exclusive" in res["msg"]
    assert vol_names(conn) == before
    assert sorted(p.name() for p in conn.listAllStoragePools()) == pools_before


def test_inactive_pool_is_reported(run, conn):
    conn.storagePoolLookupByName(POOL).destroy()
    res = run(name="kvmt-u-x", pool=POOL, capacity="1MiB")
    assert res["failed"] and res["msg"].startswith("pool: storage pool 'default-pool' is not active")


def test_absent_with_missing_pool_warns(run):
    res = run(name="kvmt-u-x", pool="kvmt-no-such-pool", state="absent")
    assert not res["changed"] and "does not exist" in json.dumps(res["warnings"])
