# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults: the daemon restarted or stopped under a run, a crashed guest, a pool
directory removed behind libvirt's back. See docs/reliability.md, "Faults".

The daemon tests are ``disruptive``: they stop the shared libvirtd, so they run
only in the full suite (or alone under the exclusive daemon lock). Every test
leaves libvirtd running and removes what it created.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading

import libvirt
import pytest

import relhelpers as rh
from conftest import URI, ansible_module, ansible_playbook

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def workdir(prefix):
    """A directory for the test's pools and files; everything named ``prefix`` is removed afterwards."""
    path = os.path.join(rh.IMAGES, prefix.rstrip("-"))
    os.makedirs(path, exist_ok=True)
    yield path
    rh.cleanup(prefix, [path])


def _volumes(pool_name):
    conn = rh.connect()
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if not pool.isActive():
            pool.create(0)
        pool.refresh(0)
        return sorted(pool.listVolumes())
    finally:
        conn.close()


@pytest.mark.disruptive
def test_daemon_restarted_between_two_tasks(prefix, report, workdir):
    """A playbook whose second task restarts libvirtd: the tasks after it succeed."""
    del workdir
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Before the restart
      kvmops.virt.virtio_network: {name: "%(net)s", mode: isolated, state: active}
    - name: Restart libvirtd
      ansible.builtin.command: "%(python)s %(helpers)s restart"
      changed_when: true
    - name: After the restart, the same network converges (no change)
      kvmops.virt.virtio_network: {name: "%(net)s", mode: isolated, state: active}
    - name: After the restart, a change is applied
      kvmops.virt.virtio_network: {name: "%(net)s", mode: isolated, state: inactive}
""" % {"net": prefix + "net", "python": sys.executable, "helpers": os.path.join(HERE, "relhelpers.py")}
    pid_before = rh.libvirtd_pid()
    try:
        run = ansible_playbook(playbook, label="daemon-restart-between-tasks")
        report.add("faults_injected")
    finally:
        rh.start_libvirtd()
    assert rh.libvirtd_pid() != pid_before, "the daemon was not restarted"
    assert run.rc == 0, run.output
    assert not run.has_traceback
    first, restart, again, change = run.results
    assert first["changed"] is True
    assert "libvirtd restarted" in restart["stdout"]
    assert again["changed"] is False and again["network"]["active"] is True
    assert change["changed"] is True and change["network"]["active"] is False


@pytest.mark.disruptive
def test_daemon_stopped_during_volume_import(prefix, report, workdir):
    """libvirtd stops while storage_volume streams a large file into a new volume:
    the task fails naming the URI, and names what it left behind (nothing else stays)."""
    pool = prefix + "pool"
    pool_dir = os.path.join(workdir, "pool")
    rh.dir_pool(pool, pool_dir)
    source = os.path.join(workdir, "source.img")
    size = 4 << 30  # long enough to be caught in the middle: read from a sparse file, written in full
    with open(source, "wb") as handle:
        handle.truncate(size)
    target = os.path.join(pool_dir, "imported.img")
    box = {}

    def import_volume():
        box["run"] = ansible_module("storage_volume", {"name": "imported.img", "pool": pool, "source": source},
                                    label="daemon-stopped-during-import")

    worker = threading.Thread(target=import_volume)
    worker.start()
    stopped_at = None
    try:
        def in_progress():
            try:
                return os.stat(target).st_blocks * 512 >= 64 << 20
            except OSError:
                return False
        rh.wait_for(lambda: in_progress() or not worker.is_alive(), 120, "the import to write 64 MiB")
        assert worker.is_alive(), "the import ended before the daemon could be stopped: %s" % box["run"].output
        stopped_at = os.stat(target).st_blocks * 512
        rh.stop_libvirtd()
        report.add("faults_injected")
        worker.join(300)
    finally:
        rh.start_libvirtd()
        worker.join(300)
    run = box["run"]
    assert stopped_at is not None and stopped_at < size
    assert run.rc != 0, run.output
    assert not run.has_traceback, run.output
    msg = run.result["msg"]
    assert "uri '%s'" % URI in msg, msg
    assert "imported.img" in msg, msg
    # what the module says it left is exactly what is left
    left = run.result.get("left_behind", [])
    remaining = _volumes(pool)
    assert remaining == sorted(item["volume"] for item in left), (remaining, run.result)
    for item in left:
        assert item == {"pool": pool, "volume": "imported.img", "path": target}
        assert target in msg and "left in storage pool '%s'" % pool in msg
    # the source is untouched
    assert os.path.getsize(source) == size


def test_killed_guest_is_started_again(prefix, report, workdir):
    """The QEMU process of a running guest is killed: state running starts it again, then is idempotent."""
    boot = rh.boot_files(os.path.join(workdir, "boot"))
    guest = {"name": prefix + "vm", "state": "running", "virt_type": "qemu", "memory": 128, "vcpus": 1,
             "boot": boot, "console_log": os.path.join(workdir, "console.log")}
    run = ansible_module("kvm_guest", guest, label="crash-start")
    assert run.rc == 0 and run.result["guest"]["state"] == "running", run.output

    pid = rh.wait_for(lambda: rh.qemu_pid(guest["name"]), 60, "the guest's QEMU pid file")
    os.kill(pid, signal.SIGKILL)
    report.add("faults_injected")

    conn = rh.connect()
    try:
        dom = conn.lookupByName(guest["name"])
        rh.wait_for(lambda: not dom.isActive(), 60, "libvirt to notice that QEMU died")
        state, reason = dom.state()
        assert state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, (state, reason)
    finally:
        conn.close()

    again = ansible_module("kvm_guest", guest, label="crash-recover")
    assert again.rc == 0, again.output
    assert again.result["changed"] is True
    assert again.result["guest"]["state"] == "running"
    assert rh.qemu_pid(guest["name"]) not in (None, pid)
    steady = ansible_module("kvm_guest", guest, label="crash-steady")
    assert steady.rc == 0 and steady.result["changed"] is False, steady.output
    assert not (run.has_traceback or again.has_traceback or steady.has_traceback)


def test_pool_directory_removed(prefix, report, workdir):
    """The directory of an active pool is removed behind libvirt's back: the modules
    say so, naming the path, and never create it again on their own."""
    pool = prefix + "pool"
    pool_dir = os.path.join(workdir, "pool")
    spec = {"name": pool, "path": pool_dir, "state": "active"}
    run = ansible_module("storage_pool", spec, label="pooldir-create")
    assert run.rc == 0, run.output
    vol = ansible_module("storage_volume", {"name": "data.qcow2", "pool": pool, "capacity": "4MiB"}, label="pooldir-vol")
    assert vol.rc == 0, vol.output

    guest = {"name": prefix + "vm", "state": "present", "virt_type": "qemu", "memory": 128,
             "disks": [{"pool": pool, "volume": "vm.qcow2", "size": "4MiB"}]}
    defined = ansible_module("kvm_guest", guest, label="pooldir-guest")
    assert defined.rc == 0, defined.output

    shutil.rmtree(pool_dir)
    report.add("faults_injected")

    # a guest whose disk was in that pool can still be removed, and says why its disk is not deleted
    removed = ansible_module("kvm_guest", {"name": guest["name"], "state": "absent", "remove_storage": True},
                             label="pooldir-guest-absent")
    assert removed.rc == 0, removed.output
    assert "the directory of storage pool '%s' does not exist any more" % pool in removed.output
    assert not os.path.exists(pool_dir)

    runs = []
    for module, args in (("storage_pool", spec),
                         ("storage_volume", {"name": "data.qcow2", "pool": pool, "capacity": "4MiB"}),
                         ("storage_volume", {"name": "new.qcow2", "pool": pool, "capacity": "4MiB"})):
        for check in (True, False):
            failed = ansible_module(module, args, check=check, label="pooldir-missing-" + module)
            runs.append(failed)
            assert failed.rc != 0, failed.output
            assert "target directory %s does not exist any more" % pool_dir in failed.result["msg"], failed.output
            assert failed.result["missing_path"] == pool_dir
            assert not os.path.exists(pool_dir), "%s recreated the directory" % module
    # the pool is still what it was (libvirt's own refresh would have stopped it)
    conn = rh.connect()
    try:
        assert conn.storagePoolLookupByName(pool).isActive()
    finally:
        conn.close()

    # starting over with an empty directory takes an explicit stop and start, and says so
    stop = ansible_module("storage_pool", dict(spec, state="inactive"), label="pooldir-stop")
    assert stop.rc == 0 and stop.result["changed"] is True, stop.output
    start = ansible_module("storage_pool", spec, label="pooldir-start")
    assert start.rc == 0 and start.result["changed"] is True, start.output
    assert any("create directory %s" % pool_dir in action for action in start.result["actions"])
    assert "created empty" in start.output
    assert start.result["pool"]["volumes"] == []
    gone = ansible_module("storage_pool", {"name": pool, "state": "absent"}, label="pooldir-absent")
    assert gone.rc == 0, gone.output
    assert not any(r.has_traceback for r in runs + [run, vol, defined, removed, stop, start, gone])
