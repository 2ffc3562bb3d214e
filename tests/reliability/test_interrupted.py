# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Interrupted guest creation: the module process killed while it uploads a
large cloud-init seed (a new guest, and an update of an existing one), and
libvirtd killed after a new guest's disk volumes exist and before the guest is
defined. Each time the next run converges: the guest is defined, its seed is
complete (never a truncated one kept because it exists), the user's file in
the pool keeps its checksum, and ``remove_storage`` deletes only the volumes
the guest's record names. See docs/reliability.md, "Faults".

The window is hit by watching the seed volume's file: once its first bytes are
written, the disks were created (the seed is built after them) and the guest
is not yet defined (a new guest is defined after its seed upload). A seed of
32 MiB keeps the upload going long enough to be caught.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import tempfile
import threading
import time

import pytest

import relhelpers as rh
from conftest import URI, ansible_playbook

SEED_SIZE = 32 << 20
PVD = 16 * 2048

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: A guest whose disk and seed the module creates
      kvmops.virt.kvm_guest:
        name: "{{ guest }}"
        state: present
        virt_type: qemu
        memory: 128
        disks: [{pool: "{{ pool }}", volume: "{{ guest }}-root.qcow2", size: 4MiB}]
        cloud_init:
          user_data:
            write_files: [{path: /srv/big, content: "{{ 'k' * (size | int) }}{{ end }}"}]
"""


@pytest.fixture
def setup(prefix, report):
    """A dir pool holding a user's file (its checksum kept), and the names of one guest."""
    workdir = os.path.join(rh.IMAGES, prefix.rstrip("-"))
    pool_dir = os.path.join(workdir, "pool")
    pool = prefix + "pool"
    rh.write_random(os.path.join(pool_dir, "user-data.img"), 1 << 20)
    rh.dir_pool(pool, pool_dir)
    sums = rh.Checksums(report)
    sums.keep(os.path.join(pool_dir, "user-data.img"))
    guest = prefix + "vm"
    box = {"guest": guest, "pool": pool, "pool_dir": pool_dir, "sums": sums,
           "seed": os.path.join(pool_dir, guest + "-cidata.iso"), "end": "END-OF-" + guest}
    yield box
    lost = sums.verify()
    rh.cleanup(prefix, [workdir])
    assert lost == []


def _vars(box, size):
    return {"guest": box["guest"], "pool": box["pool"], "size": size, "end": box["end"]}


def _seed_complete(box):
    """The seed file holds a volume descriptor and the whole user data."""
    with open(box["seed"], "rb") as handle:
        data = handle.read()
    return data[PVD:PVD + 6] == b"\x01CD001" and box["end"].encode() in data


def _defined(name):
    conn = rh.connect()
    try:
        return name in [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


def _pool_volumes(pool):
    conn = rh.connect()
    try:
        p = conn.storagePoolLookupByName(pool)
        p.refresh(0)
        return sorted(p.listVolumes())
    finally:
        conn.close()


PAYLOAD_GLOB = os.path.join(tempfile.gettempdir(), "ansible_kvmops.virt.kvm_guest_payload_*")


def _interrupt(box, kill, label):
    """Run the playbook with the large seed and call ``kill()`` once the seed upload has begun."""
    result = {}
    payloads_before = set(glob.glob(PAYLOAD_GLOB))
    worker = threading.Thread(target=lambda: result.update(run=ansible_playbook(
        PLAYBOOK, _vars(box, SEED_SIZE), label=label, timeout=600)))
    worker.start()
    try:
        pid = rh.wait_for(lambda: rh.module_pid("kvm_guest", box["guest"]) or not worker.is_alive() and -1, 300,
                          "the kvm_guest module process")
        assert pid > 0, "the run ended before its module could be found: %s" % result["run"].output
        # a tight loop (wait_for polls every 0.1 s): the new volume has the seed's size, and data
        deadline = time.monotonic() + 300
        while worker.is_alive() and time.monotonic() < deadline:
            if os.path.exists(box["seed"]) and os.path.getsize(box["seed"]) > SEED_SIZE and any(rh.file_head(box["seed"], PVD + 8192)):
                break
            time.sleep(0.001)
        assert worker.is_alive(), "the run ended before it could be interrupted: %s" % result["run"].output
        kill(pid)
    finally:
        worker.join(600)
        # AnsiballZ removes its unpacked payload when the module exits; a killed module leaves it.
        for payload in set(glob.glob(PAYLOAD_GLOB)) - payloads_before:
            shutil.rmtree(payload, ignore_errors=True)
    assert not _seed_complete(box), "the seed upload finished before the interruption"
    return result["run"]


def _converges_then_removes(box):
    """The next run converges to a complete seed, the one after it changes nothing, and
    remove_storage deletes exactly the volumes the guest's record names."""
    again = ansible_playbook(PLAYBOOK, _vars(box, SEED_SIZE), label="interrupted-rerun", timeout=600)
    assert again.rc == 0, again.output
    assert again.result["changed"] is True and not again.has_traceback
    assert _seed_complete(box), "the re-run kept an incomplete seed"
    steady = ansible_playbook(PLAYBOOK, _vars(box, SEED_SIZE), label="interrupted-steady", timeout=600)
    assert steady.rc == 0 and steady.result["changed"] is False, steady.output
    assert box["sums"].verify() == []
    recorded = sorted(v["name"] for v in steady.result["guest"]["created_volumes"])
    assert box["guest"] + "-cidata.iso" in recorded
    before = _pool_volumes(box["pool"])
    removed = ansible_playbook("""
- hosts: localhost
  gather_facts: false
  tasks:
    - kvmops.virt.kvm_guest: {name: "%s", state: absent, remove_storage: true}
""" % box["guest"], label="interrupted-remove")
    assert removed.rc == 0 and not removed.has_traceback, removed.output
    after = _pool_volumes(box["pool"])
    assert sorted(set(before) - set(after)) == recorded, (before, after, recorded)
    assert "user-data.img" in after
    return again


def test_module_killed_during_seed_upload_of_a_new_guest(setup, report):
    """SIGKILL of the module process mid-upload: the guest is not defined; the next run
    rebuilds the seed it had begun (with a warning) instead of refusing or keeping it."""
    box = setup
    run = _interrupt(box, lambda pid: os.kill(pid, signal.SIGKILL), "seed-upload-killed-new")
    report.add("faults_injected")
    assert run.rc != 0
    assert not _defined(box["guest"])
    again = _converges_then_removes(box)
    assert "whose upload did not finish" in again.output, again.output


def test_module_killed_during_seed_upload_of_an_update(setup, report):
    """A guest defined with a small seed is updated to a large one and the module is
    killed mid-upload: the definition records the new seed, and the next run rebuilds
    the incomplete file instead of keeping it because it exists."""
    box = setup
    first = ansible_playbook(PLAYBOOK, _vars(box, 16), label="seed-upload-small")
    assert first.rc == 0, first.output
    run = _interrupt(box, lambda pid: os.kill(pid, signal.SIGKILL), "seed-upload-killed-update")
    report.add("faults_injected")
    assert run.rc != 0
    assert _defined(box["guest"])
    _converges_then_removes(box)


@pytest.mark.disruptive
def test_daemon_killed_between_disk_creation_and_definition(setup, report):
    """libvirtd is killed (SIGSTOP, then SIGKILL by its PID) once a new guest's disk exists and its
    seed upload has begun, before the guest is defined. The task fails with a message, no
    traceback, and lists in ``left_behind`` exactly what stays in the pool; after the daemon is
    back the next run converges (the disk is used as it is, the seed is built again)."""
    box = setup
    killed = {}

    def kill_daemon(_module_pid):
        pid = rh.libvirtd_pid()
        os.kill(pid, signal.SIGSTOP)
        killed["pid"] = pid
        os.kill(pid, signal.SIGKILL)
        rh.wait_for(lambda: rh.libvirtd_pid() is None, 60, "libvirtd to die")

    try:
        run = _interrupt(box, kill_daemon, "daemon-killed-before-define")
        report.add("faults_injected")
    finally:
        rh.start_libvirtd()
    assert killed.get("pid") and rh.libvirtd_pid() != killed["pid"]
    assert run.rc != 0 and not run.has_traceback, run.output
    msg = run.result["msg"]
    assert "failed on uri '%s'" % URI in msg, msg
    assert not _defined(box["guest"])
    left = run.result.get("left_behind", [])
    names = sorted(item["volume"] for item in left)
    assert names == sorted([box["guest"] + "-root.qcow2", box["guest"] + "-cidata.iso"]), run.result
    for item in left:
        assert item["pool"] == box["pool"] and item["path"] == os.path.join(box["pool_dir"], item["volume"])
        assert item["path"] in msg
    # the pool holds exactly the user's file and what left_behind names
    assert _pool_volumes(box["pool"]) == sorted(names + ["user-data.img"])
    _converges_then_removes(box)
