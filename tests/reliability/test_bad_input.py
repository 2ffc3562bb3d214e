# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bad-input corpus: every case must fail, name its option, show no traceback
and leave every libvirt object exactly as it was.

The cases live in ``corpus/bad_inputs.yml`` (one table for the five modules and
both roles). Each case runs alone, through the ``ansible`` CLI for a module or
``ansible-playbook`` for a role, with a snapshot of all domains, networks,
pools and volumes (XML and state) taken right before and right after it.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile

import pytest
import yaml

import relhelpers as rh
from conftest import RUN_PREFIX, ansible_module, ansible_playbook, snapshot, snapshot_diff

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus", "bad_inputs.yml")
MODULES = ("host_capabilities", "storage_pool", "storage_volume", "virtio_network", "kvm_guest")
ROLES = ("kvm_host", "kvm_guests")

# Objects the cases work on (created once for the module, before any case's snapshot).
P = RUN_PREFIX + "bad-"
NAMES = {
    "P": P,
    "POOL": P + "pool",
    "POOL_DIR": None,  # in a private directory (mktemp -d), set by the objects fixture
    "VOL": P + "vol.qcow2",
    "NET": P + "net",
    "IMAGE": None,
}
VOL_CAPACITY = 16 * 1024 * 1024


def _load():
    with open(CORPUS, encoding="utf-8") as handle:
        cases = yaml.safe_load(handle)
    return cases


CASES = _load()


def _fill(value):
    """Put the run's object names into a case (``{POOL}``, ``{VOL}``, ...)."""
    if isinstance(value, str):
        for key, name in NAMES.items():
            value = value.replace("{%s}" % key, name)
        return value
    if isinstance(value, list):
        return [_fill(v) for v in value]
    if isinstance(value, dict):
        return {_fill(k): _fill(v) for k, v in value.items()}
    return value


def _expand(value):
    """``{repeat: "x", times: 300}`` in a case stands for a long string."""
    if isinstance(value, dict) and set(value) == {"repeat", "times"}:
        return value["repeat"] * value["times"]
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def objects():
    """An active dir pool with one 16 MiB qcow2 volume, and a defined isolated network."""
    # never a predictable path under /tmp or /var/tmp as root; the prefix keeps it this run's in snapshots
    private = tempfile.mkdtemp(prefix=P)
    os.chmod(private, 0o755)  # libvirt's pool and QEMU must reach it
    NAMES["POOL_DIR"] = os.path.join(private, "pool")
    NAMES["IMAGE"] = os.path.join(private, "image.qcow2")
    with open(NAMES["IMAGE"], "wb") as handle:
        # A small raw file for the role's base-image import (it never gets that far).
        handle.truncate(1024 * 1024)
    conn = rh.connect()
    try:
        rh.dir_pool(NAMES["POOL"], NAMES["POOL_DIR"])
        pool = conn.storagePoolLookupByName(NAMES["POOL"])
        pool.createXML(
            "<volume><name>%s</name><capacity>%d</capacity><target><format type='qcow2'/></target></volume>"
            % (NAMES["VOL"], VOL_CAPACITY), 0)
        # A refresh fills in what libvirt reads from the image (qcow2 compat...), as any module's refresh would.
        pool.refresh(0)
        conn.networkDefineXML(
            "<network><name>%s</name><bridge name='%s' stp='on' delay='0'/>"
            "<ip address='10.231.77.1' prefix='24'><dhcp><range start='10.231.77.100' end='10.231.77.200'/>"
            "</dhcp></ip></network>" % (NAMES["NET"], "kvb" + str(os.getpid() % 100000)))
        yield NAMES
    finally:
        conn.close()
        # Everything with the prefix goes, also what a case that wrongly succeeded created (it fails its test).
        rh.cleanup(P, [NAMES["POOL_DIR"]])
        shutil.rmtree(private, ignore_errors=True)


def _messages(run):
    """Every failure message of the run (a loop's items and the task's own)."""
    msgs = []
    for result in run.results:
        msg = result.get("msg")
        if msg:
            msgs.append("\n".join(msg) if isinstance(msg, list) else str(msg))
        for item in result.get("results", []) or []:
            if isinstance(item, dict) and item.get("msg"):
                msgs.append(str(item["msg"]))
    return "\n".join(msgs)


def _role_playbook(role):
    return (
        "---\n"
        "- name: Bad input for the %s role\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Run the role\n"
        "      ansible.builtin.include_role:\n"
        "        name: kvmops.virt.%s\n" % (role, role)
    )


def test_corpus_is_broad():
    """At least 60 cases, every module and both roles."""
    assert len(CASES) >= 60
    assert len({case["id"] for case in CASES}) == len(CASES), "case ids must be unique"
    targets = {case["target"] for case in CASES}
    assert targets >= set(MODULES) | set(ROLES), sorted(set(MODULES) | set(ROLES) - targets)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input(case, objects, report):
    del objects
    args = _expand(_fill(case["args"]))
    # every case runs in check mode first, then for real (a case marked check: true only in check mode)
    for check in (True,) if case.get("check") else (True, False):
        mode = "check" if check else "real"
        before = snapshot()
        if case["target"] in ROLES:
            run = ansible_playbook(_role_playbook(case["target"]), extra_vars=args,
                                   check=check, label="bad-%s-%s" % (case["id"], mode))
        else:
            run = ansible_module(case["target"], args, check=check, label="bad-%s-%s" % (case["id"], mode))
        report.add("inputs_tried")
        after = snapshot()
        messages = _messages(run)
        assert run.rc != 0, "the bad input was accepted in %s mode (see %s)" % (mode, run.log)
        assert not run.has_traceback, "traceback in %s" % run.log
        expected = case["option"] if isinstance(case["option"], list) else [case["option"]]
        for option in expected:
            assert rh.names_option(messages, _fill(option)), "message does not name %r (%s mode): %s (see %s)" % (
                option, mode, messages[:600] or "no message", run.log)
        if case["target"] == "kvm_host" and case.get("stage") == "validation":
            # Argument validation comes first: no task of the role ran, so nothing was installed.
            tasks = re.findall(r"^TASK \[([^\]]*)\]", run.output, re.M)
            assert all(t == "Run the role" or "Validating arguments" in t for t in tasks), tasks
        changes = snapshot_diff(before, after)
        assert changes == [], "the host changed (%s mode): %s (see %s)" % (mode, changes, run.log)
