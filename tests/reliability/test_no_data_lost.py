# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""No data lost: removing things never deletes data the user did not ask to delete.

Known random bytes go into base images, user disks, overlays and pool volumes;
their sha256 is compared before and after every removal. A file the user asked
to delete (``remove_storage``, ``delete_storage``) is taken off the list when
the module deletes it; every other byte must survive. See docs/reliability.md,
"No data lost".
"""
from __future__ import annotations

import os

import pytest

import relhelpers as rh
from conftest import ansible_module

MIB = 1 << 20


@pytest.fixture
def area(prefix, report):
    """A pool with a shared raw base image and a user volume, and a user directory outside every pool."""
    root = os.path.join(rh.IMAGES, prefix.rstrip("-"))
    pool_dir = os.path.join(root, "pool")
    user_dir = os.path.join(root, "user")
    sums = rh.Checksums(report)
    rh.write_random(os.path.join(pool_dir, "base.img"), 4 * MIB)
    rh.write_random(os.path.join(pool_dir, "user.img"), 2 * MIB)
    rh.write_random(os.path.join(user_dir, "disk.img"), 1 * MIB)
    rh.write_random(os.path.join(user_dir, "unrelated.txt"), 64 * 1024)
    rh.dir_pool(prefix + "pool", pool_dir)
    sums.keep(*(os.path.join(pool_dir, n) for n in ("base.img", "user.img")))
    sums.keep(*(os.path.join(user_dir, n) for n in ("disk.img", "unrelated.txt")))
    yield {"pool": prefix + "pool", "pool_dir": pool_dir, "user_dir": user_dir, "sums": sums, "root": root}
    rh.cleanup(prefix, [root])


def _ok(run):
    assert run.rc == 0, run.output
    assert not run.has_traceback
    return run.result


def _guest(name, area, overlay, **extra):
    args = {"name": name, "state": "present", "virt_type": "qemu", "memory": 128, "vcpus": 1,
            "disks": [{"pool": area["pool"], "volume": overlay, "backing_volume": "base.img"},
                      {"pool": area["pool"], "volume": "user.img", "format": "raw"},
                      {"path": os.path.join(area["user_dir"], "disk.img"), "format": "raw"}]}
    args.update(extra)
    return args


def test_guest_removal_keeps_base_and_user_disks(prefix, area):
    sums = area["sums"]
    pool, pool_dir = area["pool"], area["pool_dir"]
    # a second overlay on the shared base, made by the user
    _ok(ansible_module("storage_volume", {"name": "other.qcow2", "pool": pool, "backing_volume": "base.img"}))
    sums.keep(os.path.join(pool_dir, "other.qcow2"))

    # without remove_storage: the guest goes, every disk stays, its own overlay too
    guest_a = _guest(prefix + "a", area, "a-root.qcow2")
    created = _ok(ansible_module("kvm_guest", guest_a, label="nodata-guest-a"))
    assert [v["name"] for v in created["guest"]["created_volumes"]] == ["a-root.qcow2"]
    sums.keep(os.path.join(pool_dir, "a-root.qcow2"))
    _ok(ansible_module("kvm_guest", {"name": guest_a["name"], "state": "absent"}, label="nodata-guest-a-absent"))
    assert sums.verify() == []

    # with remove_storage: only the overlay the module created for the guest goes
    guest_b = _guest(prefix + "b", area, "b-root.qcow2")
    _ok(ansible_module("kvm_guest", guest_b, label="nodata-guest-b"))
    overlay = os.path.join(pool_dir, "b-root.qcow2")
    assert os.path.exists(overlay)
    check = ansible_module("kvm_guest", {"name": guest_b["name"], "state": "absent", "remove_storage": True},
                           check=True, label="nodata-guest-b-absent-check")
    assert _ok(check)["changed"] is True and os.path.exists(overlay)
    assert sums.verify() == []
    removed = _ok(ansible_module("kvm_guest", {"name": guest_b["name"], "state": "absent", "remove_storage": True},
                                 label="nodata-guest-b-absent"))
    assert removed["actions"] == check.result["actions"]
    assert not os.path.exists(overlay), "remove_storage kept the guest's own overlay"
    assert [a for a in removed["actions"] if a.startswith("delete volume")] == [
        "delete volume 'b-root.qcow2' from storage pool '%s'" % pool]
    assert sums.verify() == []


def test_pool_removal_keeps_volumes_unless_asked(prefix, area):
    sums = area["sums"]
    pool, pool_dir, user_dir = area["pool"], area["pool_dir"], area["user_dir"]
    # an overlay in the pool on a base image outside it: removing the pool's storage must not reach the base
    ext_base = os.path.join(user_dir, "ext-base.img")
    rh.write_random(ext_base, 2 * MIB)
    sums.keep(ext_base)
    _ok(ansible_module("storage_volume", {"name": "ext.qcow2", "pool": pool, "backing_volume": ext_base}))
    sums.keep(os.path.join(pool_dir, "ext.qcow2"))
    volumes = ["base.img", "ext.qcow2", "user.img"]

    # refused: no force, with or without delete_storage, in check mode and not
    for extra in ({}, {"delete_storage": True}):
        for check in (True, False):
            run = ansible_module("storage_pool", dict({"name": pool, "state": "absent"}, **extra), check=check,
                                 label="nodata-pool-refused")
            assert run.rc != 0 and not run.has_traceback, run.output
            assert "force" in run.result["msg"] and "3 volume(s)" in run.result["msg"], run.output
            assert sums.verify() == []
    # force without delete_storage: the pool goes, its files stay
    gone = ansible_module("storage_pool", {"name": pool, "state": "absent", "force": True}, label="nodata-pool-force")
    assert _ok(gone)["changed"] is True
    assert "3 volume(s) stay on the storage at %s" % pool_dir in gone.output
    assert sums.verify() == []
    # defined again on the same directory, the volumes are all there
    back = _ok(ansible_module("storage_pool", {"name": pool, "path": pool_dir, "state": "active"}, label="nodata-pool-back"))
    assert back["pool"]["volumes"] == volumes
    assert sums.verify() == []
    # force and delete_storage: the user asked for the pool's volumes and directory to go; nothing else may
    deleted = _ok(ansible_module("storage_pool", {"name": pool, "state": "absent", "force": True, "delete_storage": True},
                                 label="nodata-pool-delete-storage"))
    assert deleted["changed"] is True
    for name in volumes:
        sums.forget(os.path.join(pool_dir, name))
    assert not os.path.exists(pool_dir)
    assert sums.verify() == []
    assert sorted(os.listdir(user_dir)) == ["disk.img", "ext-base.img", "unrelated.txt"]


def test_refused_shrink_keeps_data(prefix, area):
    del prefix
    sums = area["sums"]
    pool, pool_dir = area["pool"], area["pool_dir"]
    for name, fmt in (("shrink.raw", "raw"), ("shrink.qcow2", "qcow2")):
        _ok(ansible_module("storage_volume", {"name": name, "pool": pool, "capacity": "8MiB", "format": fmt}))
        path = os.path.join(pool_dir, name)
        if fmt == "raw":
            with open(path, "r+b") as handle:  # data up to the last byte
                handle.seek(0)
                handle.write(os.urandom(8 * MIB))
        sums.keep(path)
        size = os.path.getsize(path)
        for check in (True, False):
            run = ansible_module("storage_volume", {"name": name, "pool": pool, "capacity": "4MiB"}, check=check,
                                 label="nodata-shrink-" + fmt)
            assert run.rc != 0 and not run.has_traceback, run.output
            assert run.result["msg"].startswith("capacity: cannot shrink volume '%s'" % name), run.output
            assert os.path.getsize(path) == size
            assert sums.verify() == []
        steady = _ok(ansible_module("storage_volume", {"name": name, "pool": pool, "capacity": "8MiB"}))
        assert steady["changed"] is False and steady["volume"]["capacity"] == 8 * MIB


def test_network_removed_under_a_running_guest(prefix, area, report):
    """The network of a running guest is removed: refused without force; with force the
    network goes, the guest keeps running and no disk loses a byte."""
    del report
    sums = area["sums"]
    net = prefix + "net"
    _ok(ansible_module("virtio_network", {"name": net, "mode": "isolated", "state": "active"}, label="nodata-net"))
    boot = rh.boot_files(os.path.join(area["root"], "boot"))
    guest = _guest(prefix + "vm", area, "vm-root.qcow2", state="running", boot=boot,
                   interfaces=[{"network": net}], console_log=os.path.join(area["root"], "console.log"))
    _ok(ansible_module("kvm_guest", guest, label="nodata-net-guest"))
    overlay = os.path.join(area["pool_dir"], "vm-root.qcow2")

    refused = ansible_module("virtio_network", {"name": net, "state": "absent"}, label="nodata-net-refused")
    assert refused.rc != 0 and not refused.has_traceback, refused.output
    assert guest["name"] in refused.result["msg"] and "force" in refused.result["msg"]
    assert refused.result["guests"] == [guest["name"]]
    assert sums.verify() == []

    forced = _ok(ansible_module("virtio_network", {"name": net, "state": "absent", "force": True}, label="nodata-net-force"))
    assert forced["changed"] is True
    conn = rh.connect()
    try:
        assert net not in [n.name() for n in conn.listAllNetworks()]
        assert conn.lookupByName(guest["name"]).isActive(), "removing the network stopped the guest"
    finally:
        conn.close()
    assert sums.verify() == []
    assert os.path.exists(overlay)

    _ok(ansible_module("kvm_guest", {"name": guest["name"], "state": "absent", "force": True, "wait_timeout": 20},
                       label="nodata-net-guest-absent"))
    assert os.path.exists(overlay), "the overlay was removed without remove_storage"
    assert sums.verify() == []
