# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A full disk (issue 16): a dir pool on a small loop-mounted ext4 filesystem.

Volume creation (preallocated), an upload and a cloud-init seed build run out
of space. Each must fail with a message (no traceback), leave no half-made
volume behind that it does not name in ``left_behind``, and keep every file
that was there before (checksums).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

import relhelpers as rh
from conftest import ansible_module, ansible_playbook

MIB = 1024 * 1024

SEED_PLAYBOOK = """---
- name: A seed that does not fit
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The guest with 12 MiB of user data
      kvmops.virt.kvm_guest:
        name: "{{ g }}"
        state: present
        virt_type: qemu
        memory: 64
        disks: [{pool: "{{ pool }}", volume: "{{ g }}.qcow2", size: 1MiB}]
        cloud_init:
          user_data: "{{ '#cloud-config' + '\\n' + 'bootcmd: [' + ('echo ' + 'x' * 1000 + ', ') * 12000 + 'true]' }}"
"""


def _sh(*argv):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.strip()


@pytest.fixture
def small_pool(prefix):
    """A dir pool on an 8 MiB ext4 filesystem (a loop device), with a 2 MiB user file in it."""
    if not shutil.which("mkfs.ext4") or not shutil.which("losetup"):
        pytest.skip("mkfs.ext4 and losetup are needed")
    root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(root, 0o755)
    image = os.path.join(root, "fs.img")
    mount = os.path.join(root, "mnt")
    os.makedirs(mount)
    with open(image, "wb") as handle:
        handle.truncate(8 * MIB)
    _sh("mkfs.ext4", "-q", "-F", "-m", "0", image)
    try:
        _sh("mount", "-o", "loop", image, mount)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip("cannot loop-mount here: %s" % e.stdout)
    pool = prefix + "full"
    try:
        rh.dir_pool(pool, mount)
        keep = os.path.join(mount, "user.img")
        rh.write_random(keep, 2 * MIB)
        yield {"pool": pool, "dir": mount, "root": root, "keep": keep, "keep_sum": rh.sha256(keep)}
    finally:
        rh.cleanup(prefix)
        subprocess.run(["umount", mount], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _pool_files(path):
    return sorted(n for n in os.listdir(path) if n != "lost+found")


def _clean_failure(run, what):
    assert run.rc != 0, "%s succeeded on a full disk? %s" % (what, run.log)
    assert not run.has_traceback, "traceback in %s" % run.log
    assert run.result.get("msg"), run.output


def test_disk_full_during_volume_creation_upload_and_seed(small_pool, prefix, report):
    pool, pdir = small_pool["pool"], small_pool["dir"]
    # 1. a raw volume larger than the free space
    run = ansible_module("storage_volume", {"name": prefix + "big.raw", "pool": pool, "capacity": "32MiB", "format": "raw"},
                         label="diskfull-create")
    report.add("faults_injected")
    # a sparse raw file fits (no data written yet): either outcome is fine, but never a traceback
    assert not run.has_traceback, run.log
    if run.rc == 0:
        ansible_module("storage_volume", {"name": prefix + "big.raw", "pool": pool, "state": "absent"}, label="diskfull-create-rm")
    # 2. an upload of 16 MiB into the 8 MiB filesystem
    source = os.path.join(small_pool["root"], "source.img")
    rh.write_random(source, 16 * MIB)
    run = ansible_module("storage_volume", {"name": prefix + "up.raw", "pool": pool, "format": "raw", "source": source},
                         label="diskfull-upload")
    report.add("faults_injected")
    _clean_failure(run, "an upload")
    left = [entry["volume"] for entry in run.result.get("left_behind") or []]
    assert set(_pool_files(pdir)) - set(left) == {"user.img"}, (_pool_files(pdir), run.result.get("msg"))
    # 3. a seed build that cannot fit: user data of 12 MiB (made inside the play: too long for a command line)
    run = ansible_playbook(SEED_PLAYBOOK, {"g": prefix + "g", "pool": pool}, label="diskfull-seed")
    report.add("faults_injected")
    _clean_failure(run, "a seed build")
    left = [entry["volume"] for entry in run.result.get("left_behind") or []]
    assert set(_pool_files(pdir)) - set(left) == {"user.img"}, (_pool_files(pdir), run.result.get("msg"))
    conn = rh.connect()
    try:
        assert prefix + "g" not in [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()
    assert rh.sha256(small_pool["keep"]) == small_pool["keep_sum"]
    report.add("checksums_verified")
