# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad base images (issue 16): a truncated qcow2, a qcow2 with a corrupt
header, and a qcow2 with a huge virtual size, as the backing file of a new
overlay (storage_volume) and of a guest's disk (kvm_guest).

A bad image fails with a message and no traceback and leaves no volume
behind; the base image itself is never changed (checksums); a huge virtual
size is either refused or gives a thin overlay, never a traceback or a file
that fills the disk.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

import relhelpers as rh
from conftest import ansible_module

MIB = 1024 * 1024


@pytest.fixture
def images(prefix):
    if not shutil.which("qemu-img"):
        pytest.skip("qemu-img is needed")
    root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(root, 0o755)
    pool_dir = os.path.join(root, "pool")
    rh.dir_pool(prefix + "img", pool_dir)
    paths = {}
    good = os.path.join(root, "good.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", good, "64M"], check=True)
    truncated = os.path.join(root, "truncated.qcow2")
    shutil.copy(good, truncated)
    with open(truncated, "r+b") as handle:
        handle.truncate(100)
    corrupt = os.path.join(root, "corrupt.qcow2")
    with open(corrupt, "wb") as handle:
        handle.write(b"QFI\xfb" + os.urandom(4092))
    huge = os.path.join(root, "huge.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", huge, "1P"], check=True)
    paths.update(truncated=truncated, corrupt=corrupt, huge=huge)
    sums = dict((name, rh.sha256(path)) for name, path in paths.items())
    try:
        yield {"pool": prefix + "img", "pool_dir": pool_dir, "paths": paths, "sums": sums}
    finally:
        rh.cleanup(prefix)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("image", ["truncated", "corrupt"])
def test_a_broken_base_image_is_refused_cleanly(images, prefix, image, report):
    base = images["paths"][image]
    run = ansible_module("storage_volume", {"name": prefix + "ov.qcow2", "pool": images["pool"], "backing_volume": base},
                         label="badimg-volume-" + image)
    report.add("faults_injected")
    assert run.rc != 0 and not run.has_traceback, run.log
    assert run.result.get("msg"), run.output
    run = ansible_module("kvm_guest", {"name": prefix + "g", "state": "present", "virt_type": "qemu", "memory": 64,
                                       "disks": [{"pool": images["pool"], "volume": prefix + "g.qcow2", "backing_volume": base}]},
                         label="badimg-guest-" + image)
    report.add("faults_injected")
    assert run.rc != 0 and not run.has_traceback, run.log
    assert os.listdir(images["pool_dir"]) == [], os.listdir(images["pool_dir"])
    assert rh.sha256(base) == images["sums"][image]
    report.add("checksums_verified")


def test_a_huge_virtual_size_gives_a_thin_overlay_or_a_clear_refusal(images, prefix, report):
    base = images["paths"]["huge"]
    run = ansible_module("storage_volume", {"name": prefix + "huge-ov.qcow2", "pool": images["pool"], "backing_volume": base},
                         label="badimg-huge")
    report.add("faults_injected")
    assert not run.has_traceback, run.log
    if run.rc == 0:
        path = run.result["volume"]["path"]
        # qcow2 keeps an L1 table for the whole virtual size: about 16 MiB for 1 PiB, never the size itself
        allocated = os.stat(path).st_blocks * 512
        print("overlay on a 1 PiB base: %d bytes allocated" % allocated)
        assert allocated < 64 * MIB, "the overlay is not thin"
        assert run.result["volume"]["capacity"] == 1024 ** 5
    else:
        assert run.result.get("msg"), run.output
    assert rh.sha256(base) == images["sums"]["huge"]
    report.add("checksums_verified")
