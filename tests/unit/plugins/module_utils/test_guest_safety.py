# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_guest data safety (issue 16) on libvirt's test:///default driver:
never adopt or delete what the collection did not create, keep the record of
created volumes true, leave a guest bootable when libvirt rejects an update.
"""
from __future__ import annotations

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _storage_ops
from ansible_collections.kvmops.virt.plugins.module_utils._errors import VirtError

from ansible_collections.kvmops.virt.tests.unit.plugins.module_utils.test_guest import POOL, g, run, warnings

# The guests and volumes of this module; the conftest's conn fixture removes them afterwards.
PREFIX = "ut-"

BAD_XML = "<domain><devices><disk type='file' device='disk'><target dev='vdq' bus='nonsense'/></disk></devices></domain>"


@pytest.fixture
def uploads(monkeypatch):
    """The test driver has no virStorageVolUpload or Download: keep the uploaded bytes per volume name instead."""
    seen = {}

    def upload(client, vol, data, offset=0):
        if offset == 0:
            seen[vol.name()] = bytearray(data)
        else:
            seen[vol.name()][offset:offset + len(data)] = data

    def read(client, vol, offset, length):
        data = seen.get(vol.name())
        return None if data is None else bytes(data[offset:offset + length])

    monkeypatch.setattr(_storage_ops, "upload_bytes", upload)
    monkeypatch.setattr(_storage_ops, "read_bytes", read)
    return seen


def _vols(conn):  # noqa: F811
    return dict((v.name(), v.info()[1]) for v in conn.storagePoolLookupByName(POOL).listAllVolumes(0))


def _meta(conn, name):  # noqa: F811
    return dm.Domain.from_xml(conn.lookupByName(name).XMLDesc(0)).metadata()


def test_preexisting_seed_volume_is_never_adopted(conn, capsys, uploads):  # noqa: F811
    pool = conn.storagePoolLookupByName(POOL)
    pool.createXML("<volume><name>ut-s-cidata.iso</name><capacity>4096</capacity></volume>", 0)
    args = g(name="ut-s", disks=[dict(pool=POOL, volume="ut-s-root.qcow2", size="1MiB")], cloud_init=dict(user_data={"a": 1}))
    for check in (True, False):
        result, _out = run(capsys, args, check=check)
        assert result["failed"] is True
        assert result["msg"].startswith("cloud_init: volume 'ut-s-cidata.iso' already exists"), result["msg"]
    assert _vols(conn)["ut-s-cidata.iso"] == 4096
    assert "ut-s" not in [d.name() for d in conn.listAllDomains(0)]


def test_rejected_update_keeps_the_old_seed(conn, capsys, uploads):  # noqa: F811
    args = g(name="ut-s", disks=[dict(pool=POOL, volume="ut-s-root.qcow2", size="1MiB")], cloud_init=dict(user_data={"a": 1}))
    result, _out = run(capsys, args)
    assert not result.get("failed"), result.get("msg")
    before_xml = conn.lookupByName("ut-s").XMLDesc(0)
    before_vols = _vols(conn)
    before_seed = uploads["ut-s-cidata.iso"]
    result, _out = run(capsys, g(args, cloud_init=dict(user_data={"a": 2, "b": "longer user data"}), xml=BAD_XML))
    assert result["failed"] is True
    assert conn.lookupByName("ut-s").XMLDesc(0) == before_xml
    assert _vols(conn) == before_vols
    assert uploads["ut-s-cidata.iso"] == before_seed
    # the same change without the rejected xml goes through, seed and all
    result, _out = run(capsys, g(args, cloud_init=dict(user_data={"a": 2, "b": "longer user data"})))
    assert not result.get("failed"), result.get("msg")
    assert uploads["ut-s-cidata.iso"] != before_seed
    assert _meta(conn, "ut-s").seed["digest"] != dm.Domain.from_xml(before_xml).metadata().seed["digest"]


def test_detached_volume_leaves_the_record(conn, capsys):  # noqa: F811
    disks = [dict(pool=POOL, volume="ut-d-root.qcow2", size="1MiB"), dict(pool=POOL, volume="ut-d-data.qcow2", size="1MiB")]
    run(capsys, g(name="ut-d", disks=disks))
    result, _out = run(capsys, g(name="ut-d", disks=disks[:1]))
    assert not result.get("failed"), result.get("msg")
    assert [v["name"] for v in _meta(conn, "ut-d").volumes] == ["ut-d-root.qcow2"]
    result, _out = run(capsys, dict(name="ut-d", state="absent", remove_storage=True))
    assert "ut-d-data.qcow2" in _vols(conn) and "ut-d-root.qcow2" not in _vols(conn)


def test_record_is_never_taken_from_the_xml_option(conn, capsys):  # noqa: F811
    pool = conn.storagePoolLookupByName(POOL)
    pool.createXML("<volume><name>ut-x-other.raw</name><capacity>1048576</capacity></volume>", 0)
    path = pool.storageVolLookupByName("ut-x-other.raw").path()
    xml = ("<domain><metadata><kvmops:guest xmlns:kvmops='https://github.com/kvmops/kvmops.virt/guest/1'><kvmops:created-volumes>"
           "<kvmops:volume pool='%s' name='ut-x-other.raw' path='%s'/></kvmops:created-volumes></kvmops:guest></metadata></domain>" % (POOL, path))
    result, _out = run(capsys, g(name="ut-x", disks=[dict(pool=POOL, volume="ut-x-other.raw")], xml=xml))
    assert not result.get("failed"), result.get("msg")
    assert _meta(conn, "ut-x").volumes == []
    assert any("xml" in w and "metadata" in w for w in warnings(result))
    run(capsys, dict(name="ut-x", state="absent", remove_storage=True))
    assert "ut-x-other.raw" in _vols(conn)


def test_failed_definition_reports_left_behind(conn, capsys, monkeypatch):  # noqa: F811
    def refuse(client, vol):
        raise VirtError("deleting volume failed (injected)")

    monkeypatch.setattr(_storage_ops, "delete_volume", refuse)
    result, _out = run(capsys, g(name="ut-f", disks=[dict(pool=POOL, volume="ut-f.qcow2", size=1024)], xml=BAD_XML))
    assert result["failed"] is True
    assert result["left_behind"] == [{"pool": POOL, "volume": "ut-f.qcow2", "path": "/default-pool/ut-f.qcow2"}]
    assert "could not be deleted" in result["msg"]
    monkeypatch.undo()
    conn.storagePoolLookupByName(POOL).storageVolLookupByName("ut-f.qcow2").delete(0)


def test_in_use_guard_reads_the_persistent_definition_of_a_running_guest(conn, capsys):  # noqa: F811
    run(capsys, g(name="ut-p", disks=[dict(pool=POOL, volume="ut-p-root.qcow2", size="1MiB")]))
    run(capsys, g(name="ut-q", state="running"))
    # ut-q runs without the disk; its persistent definition (next boot) has it
    path = conn.storagePoolLookupByName(POOL).storageVolLookupByName("ut-p-root.qcow2").path()
    xml = conn.lookupByName("ut-q").XMLDesc(2)  # VIR_DOMAIN_XML_INACTIVE
    xml = xml.replace("</devices>", "<disk type='file' device='disk'><source file='%s'/><target dev='vdz' bus='virtio'/></disk></devices>" % path)
    conn.defineXML(xml)
    assert "vdz" not in conn.lookupByName("ut-q").XMLDesc(0)
    result, _out = run(capsys, dict(name="ut-p", state="absent", remove_storage=True))
    assert not result.get("failed"), result.get("msg")
    assert "ut-p-root.qcow2" in _vols(conn)
    assert any("used by another guest: ut-q" in w for w in warnings(result))


def test_same_file_compares_device_and_inode(tmp_path):
    real = tmp_path / "disk.qcow2"
    real.write_bytes(b"x")
    link = tmp_path / "link.qcow2"
    link.symlink_to(real)
    hard = tmp_path / "hard.qcow2"
    hard.hardlink_to(real)
    other = tmp_path / "other.qcow2"
    other.write_bytes(b"x")
    assert _storage_ops.same_file(str(real), str(link), local=True)
    assert _storage_ops.same_file(str(hard), str(link), local=True)
    assert not _storage_ops.same_file(str(real), str(other), local=True)
    assert not _storage_ops.same_file(str(real), str(link), local=False)  # a remote host's paths: strings only


def test_qcow2_backing_file_is_read_from_the_header(tmp_path):
    name = b"/srv/base.qcow2"
    header = bytearray(512)
    header[0:4] = b"QFI\xfb"
    header[4:8] = (3).to_bytes(4, "big")
    header[8:16] = (200).to_bytes(8, "big")
    header[16:20] = len(name).to_bytes(4, "big")
    header[200:200 + len(name)] = name
    (tmp_path / "ov.qcow2").write_bytes(bytes(header))
    (tmp_path / "raw.img").write_bytes(b"\0" * 512)
    assert _storage_ops.qcow2_backing_file(str(tmp_path / "ov.qcow2")) == "/srv/base.qcow2"
    assert _storage_ops.qcow2_backing_file(str(tmp_path / "raw.img")) is None
    assert _storage_ops.qcow2_backing_file(str(tmp_path / "missing")) is None


def test_console_log_never_takes_over_a_file_it_did_not_make(conn, capsys, tmp_path):  # noqa: F811
    precious = tmp_path / "notes.txt"
    precious.write_text("the user's data\n")
    for check in (True, False):
        result, _out = run(capsys, g(name="ut-c", console_log=str(precious)), check=check)
        assert result.get("failed") is True, result
        assert result["msg"].startswith("console_log: %s exists and is not a console log" % precious), result["msg"]
    assert precious.read_text() == "the user's data\n"
    assert "ut-c" not in [d.name() for d in conn.listAllDomains(0)]
    # a new path, then the same path again (the guest's own log by now), is accepted
    log = tmp_path / "ut-c.log"
    result, _out = run(capsys, g(name="ut-c", console_log=str(log)))
    assert not result.get("failed"), result.get("msg")
    log.write_text("boot messages\n")
    result, _out = run(capsys, g(name="ut-c", console_log=str(log)))
    assert not result.get("failed"), result.get("msg")
    # an empty file is nobody's data
    empty = tmp_path / "empty.log"
    empty.write_text("")
    result, _out = run(capsys, g(name="ut-c", console_log=str(empty)))
    assert not result.get("failed"), result.get("msg")


def test_user_data_digest_has_a_per_guest_salt(conn, capsys, uploads):  # noqa: F811
    user_data = {"password": "same-for-both"}
    for name in ("ut-h1", "ut-h2"):
        r, _o = run(capsys, g(name=name, disks=[dict(pool=POOL, volume=name + "-root.qcow2", size="1MiB")], cloud_init=dict(user_data=user_data)))
        assert not r.get("failed"), r.get("msg")
    seeds = [_meta(conn, name).seed for name in ("ut-h1", "ut-h2")]
    assert all(s.get("salt") and len(s["salt"]) == 32 for s in seeds)
    assert seeds[0]["salt"] != seeds[1]["salt"]
    assert seeds[0]["files"]["user-data"] != seeds[1]["files"]["user-data"]
    # unchanged content: no change, the salt stays
    args = g(name="ut-h1", disks=[dict(pool=POOL, volume="ut-h1-root.qcow2", size="1MiB")], cloud_init=dict(user_data=user_data))
    check, _o = run(capsys, args, check=True)
    assert check["changed"] is False, check["diff"]
    assert _meta(conn, "ut-h1").seed["salt"] == seeds[0]["salt"]


def test_a_seed_recorded_without_salt_reports_no_spurious_change(conn, capsys, uploads):  # noqa: F811
    from ansible_collections.kvmops.virt.plugins.module_utils import _cloudinit as ci
    args = g(name="ut-o", disks=[dict(pool=POOL, volume="ut-o-root.qcow2", size="1MiB")], cloud_init=dict(user_data={"a": 1}))
    run(capsys, args)
    # rewrite the record as a release before the salt wrote it: fixed-salt digests, no salt attribute
    dom = dm.Domain.from_xml(conn.lookupByName("ut-o").XMLDesc(2))
    meta = dom.metadata()
    seed = meta.seed
    files = ci.render_seed(user_data={"a": 1}, hostname="ut-o")
    seed["digest"] = ci.seed_digest(files)
    seed["files"] = dict((n, ci.seed_digest({n: c})) for n, c in files.items())
    seed.pop("salt", None)
    meta.seed = seed
    meta.write(dom)
    conn.defineXML(dom.to_xml())
    assert "salt" not in conn.lookupByName("ut-o").XMLDesc(2)
    check, _o = run(capsys, args, check=True)
    assert check["changed"] is False, check["diff"]
    changed, _o = run(capsys, g(args, cloud_init=dict(user_data={"a": 2})))
    assert changed["changed"] is True
    # the user data changed (and with it the instance-id in meta-data), nothing else
    assert sorted(changed["diff"]["after"]) == ["cloud_init.meta_data", "cloud_init.user_data"], changed["diff"]
    assert _meta(conn, "ut-o").seed.get("salt")


def test_a_new_salted_seed_shows_the_same_diff_in_check_mode(conn, capsys, uploads):  # noqa: F811
    args = g(name="ut-h3", disks=[dict(pool=POOL, volume="ut-h3-root.qcow2", size="1MiB")],
             cloud_init=dict(user_data={"a": 1}, meta_data={"x": "y"}))
    check, _o = run(capsys, args, check=True)
    real, _o = run(capsys, args)
    assert check["diff"] == real["diff"]
    again, _o = run(capsys, g(args, cloud_init=dict(user_data={"a": 1}, meta_data={"x": "z"})), check=True)
    real, _o = run(capsys, g(args, cloud_init=dict(user_data={"a": 1}, meta_data={"x": "z"})))
    assert again["diff"] == real["diff"] and "cloud_init.meta_data" in real["diff"]["after"]


def test_interrupted_seed_upload_is_built_again(conn, capsys, uploads):  # noqa: F811
    """A recorded seed whose upload did not finish (no volume descriptor) is rebuilt, not kept because it exists."""
    from ansible_collections.kvmops.virt.plugins.module_utils._iso9660 import PVD_OFFSET, SEED_HEAD, seed_state
    args = g(name="ut-i", disks=[dict(pool=POOL, volume="ut-i-root.qcow2", size="1MiB")], cloud_init=dict(user_data={"a": 1}))
    result, _out = run(capsys, args)
    assert not result.get("failed"), result.get("msg")
    complete = bytes(uploads["ut-i-cidata.iso"])
    assert seed_state(complete[:SEED_HEAD], "ut-i") == "complete"
    # the first write done, the second (the volume descriptor) never made
    uploads["ut-i-cidata.iso"][PVD_OFFSET:PVD_OFFSET + 2048] = bytes(2048)
    assert seed_state(bytes(uploads["ut-i-cidata.iso"][:SEED_HEAD]), "ut-i") == "interrupted"
    check, _out = run(capsys, args, check=True)
    real, _out = run(capsys, args)
    assert check["changed"] is True and real["changed"] is True, real
    assert check["diff"] == real["diff"] and real["diff"]["before"]["cloud_init.volume"] == "incomplete"
    assert bytes(uploads["ut-i-cidata.iso"]) == complete
    again, _out = run(capsys, args)
    assert again["changed"] is False, again


def test_interrupted_seed_of_a_new_guest_is_built_again(conn, capsys, uploads):  # noqa: F811
    """A new guest is defined after its seed: a seed volume that this collection began for this guest and
    did not finish is rebuilt (with a warning); a complete one, or one marked for another guest, is refused."""
    from ansible_collections.kvmops.virt.plugins.module_utils._iso9660 import seed_mark
    pool = conn.storagePoolLookupByName(POOL)
    args = g(name="ut-n", disks=[dict(pool=POOL, volume="ut-n-root.qcow2", size="1MiB")], cloud_init=dict(user_data={"a": 1}))
    for mark, refused in ((seed_mark("ut-other"), True), (b"", True), (seed_mark("ut-n"), False)):
        vol = pool.createXML("<volume><name>ut-n-cidata.iso</name><capacity>65536</capacity></volume>", 0)
        uploads["ut-n-cidata.iso"] = bytearray(mark + bytes(65536 - len(mark)))
        result, _out = run(capsys, args)
        if refused:
            assert result["failed"] is True and result["msg"].startswith("cloud_init: volume 'ut-n-cidata.iso' already exists")
            assert bytes(uploads["ut-n-cidata.iso"][:len(mark)]) == mark
            vol.delete(0)
            continue
        assert not result.get("failed"), result.get("msg")
        assert any("upload did not finish" in w for w in warnings(result)), result
        assert _meta(conn, "ut-n").seed["volume"] == "ut-n-cidata.iso"
        assert ("ut-n-cidata.iso" in [v["name"] for v in _meta(conn, "ut-n").volumes])
