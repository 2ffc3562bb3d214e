# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Growing disks (kvm_guest ``disks[].size``, storage_volume on a running guest's
volume) and ``console_tail``, on libvirt's in-process test:///default driver.

The test driver implements neither ``virStorageVolResize`` nor
``virDomainBlockResize`` (and reports 1 TiB for every disk of a running
guest), so the grows themselves run in the ``disk_grow`` integration target;
here: the plans (check mode), the refusals, and the errors a driver without
resize gives.
"""
from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient
from ansible_collections.kvmops.virt.plugins.module_utils._disk_resize import console_tail, plan_disk_grows
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.modules import kvm_guest, storage_volume

libvirt = pytest.importorskip("libvirt")

URI = "test:///default"
POOL = "default-pool"
PREFIX = "ut-grow-"  # the conftest's conn fixture removes these guests and volumes
MIB = 1024 * 1024


def run(capsys, module, args, check=False):
    args = dict(args, uri=URI, _ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = capsys.readouterr().out
    assert "Traceback" not in out
    return json.loads(out)


def guest(size, state="present"):
    return dict(name="ut-grow-a", state=state, memory=128, vcpus=1,
                disks=[dict(pool=POOL, volume="ut-grow-a.qcow2", size=size)])


def capacity(conn, name):
    pool = conn.storagePoolLookupByName(POOL)
    pool.refresh(0)
    return pool.storageVolLookupByName(name).info()[1]


# -- console_tail -----------------------------------------------------------------------
def test_console_tail_is_the_last_lines_with_secrets_masked(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(b"".join(b"line %d\r\n" % i for i in range(100)) + b"password is s3cret-value\r\n\r\n")
    tail = console_tail(str(log), secrets=["s3cret-value"])
    assert len(tail) == 40
    assert tail[0] == "line 61" and tail[-2] == "line 99"
    assert tail[-1] == "password is ********"
    assert console_tail(str(log), lines=3) == ["line 98", "line 99", "password is s3cret-value"]


def test_console_tail_without_a_log_is_empty(tmp_path):
    assert console_tail(None) == []
    assert console_tail(str(tmp_path / "missing.log")) == []


# -- kvm_guest ----------------------------------------------------------------------------
def test_block_device_sizes_are_refused_before_anything_is_read():
    disk = gs.DiskSpec(index=0, path="/dev/vg0/data", source_type="block")
    with LibvirtClient(URI) as client:
        with pytest.raises(InvalidArgument) as err:
            plan_disk_grows(client, [{"path": "/dev/vg0/data", "size": "2GiB"}], [disk], set(), None, None, None)
    assert err.value.option == "disks[0].size"
    assert "is a block device" in err.value.msg


def test_a_larger_size_plans_an_offline_grow_and_a_smaller_one_is_refused(conn, capsys):
    created = run(capsys, kvm_guest, guest("16MiB"))
    assert created["changed"] and not created.get("failed"), created.get("msg")
    # the same size again: nothing to do
    same = run(capsys, kvm_guest, guest("16MiB"))
    assert same["changed"] is False and same["diff"] == {"before": {}, "after": {}}
    # smaller: refused, naming the option, nothing changed
    shrink = run(capsys, kvm_guest, guest("8MiB"))
    assert shrink["failed"] and shrink["option"] == "disks[0].size"
    assert shrink["msg"] == ("disks[0].size: cannot shrink disk /default-pool/ut-grow-a.qcow2 from 16MiB to 8MiB; "
                             "shrinking is refused (nothing was changed)")
    assert capacity(conn, "ut-grow-a.qcow2") == 16 * MIB
    # larger: the check run plans the offline grow, with the size in the diff
    check = run(capsys, kvm_guest, guest("32MiB"), check=True)
    assert check["changed"] is True
    assert check["diff"] == {"before": {"disks[0].size": "16MiB"}, "after": {"disks[0].size": "32MiB"}}
    assert check["actions"] == ["grow volume 'ut-grow-a.qcow2' (disks[0]) from 16MiB to 32MiB"]
    assert check["reboot_required"] is False
    # the test driver cannot resize volumes: a clear error, not a traceback
    real = run(capsys, kvm_guest, guest("32MiB"))
    assert real["failed"] and real["msg"].startswith("resizing volume 'ut-grow-a.qcow2' failed on uri 'test:///default'")
    assert capacity(conn, "ut-grow-a.qcow2") == 16 * MIB


# -- storage_volume on a volume a running guest uses ---------------------------------------
def running_guest_on(conn, vol_name):
    pool = conn.storagePoolLookupByName(POOL)
    pool.createXML("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='qcow2'/></target></volume>"
                   % (vol_name, 16 * MIB), 0)
    dom = conn.defineXML(
        "<domain type='test'><name>ut-grow-run</name><memory>131072</memory><os><type>hvm</type></os><devices>"
        "<disk type='file' device='disk'><source file='/default-pool/%s'/><target dev='vda' bus='virtio'/></disk>"
        "</devices></domain>" % vol_name)
    dom.create()
    return dom


def test_growing_or_deleting_a_volume_of_a_running_guest_needs_force(conn, capsys):
    running_guest_on(conn, "ut-grow-v.qcow2")
    vol = dict(pool=POOL, name="ut-grow-v.qcow2")
    for check in (True, False):
        grow = run(capsys, storage_volume, dict(vol, capacity="32MiB"), check=check)
        assert grow["failed"] and grow["option"] == "capacity"
        assert grow["msg"].startswith("capacity: volume 'ut-grow-v.qcow2' is used by the running guest(s) ut-grow-run; set force: true")
        delete = run(capsys, storage_volume, dict(vol, state="absent"), check=check)
        assert delete["failed"] and delete["option"] == "state"
        assert delete["msg"].startswith("state: volume 'ut-grow-v.qcow2' is used by the running guest(s) ut-grow-run;")
    assert capacity(conn, "ut-grow-v.qcow2") == 16 * MIB
    # the same or a smaller capacity is no grow: nothing to refuse
    same = run(capsys, storage_volume, dict(vol, capacity="16MiB"))
    assert same["changed"] is False and not same.get("failed")
    # with force, the grow goes through the guest (the test driver has no blockResize: a clear error)
    check = run(capsys, storage_volume, dict(vol, capacity="32MiB", force=True), check=True)
    assert check["actions"] == ["grow volume 'ut-grow-v.qcow2' from 16MiB to 32MiB live through disk vda of the running guest 'ut-grow-run'"]
    assert check["diff"] == {"before": {"capacity": 16 * MIB}, "after": {"capacity": 32 * MIB}}
    real = run(capsys, storage_volume, dict(vol, capacity="32MiB", force=True))
    assert real["failed"] and real["msg"].startswith("growing disk vda of guest 'ut-grow-run' failed on uri 'test:///default'")
    # with force, the volume is deleted and the warning names the guest
    deleted = run(capsys, storage_volume, dict(vol, state="absent", force=True))
    assert deleted["changed"] and not deleted.get("failed")
    assert any("ut-grow-run" in str(w) for w in deleted.get("warnings", []))


def test_a_shut_off_guest_does_not_hold_its_volume(conn, capsys):
    dom = running_guest_on(conn, "ut-grow-w.qcow2")
    dom.destroy()
    check = run(capsys, storage_volume, dict(pool=POOL, name="ut-grow-w.qcow2", capacity="32MiB"), check=True)
    assert check["actions"] == ["grow volume 'ut-grow-w.qcow2' from 16MiB to 32MiB"]
    deleted = run(capsys, storage_volume, dict(pool=POOL, name="ut-grow-w.qcow2", state="absent"))
    assert deleted["changed"] and not deleted.get("failed")
