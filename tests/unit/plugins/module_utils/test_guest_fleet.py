# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_guests end to end on libvirt's in-process test:///default driver."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils._guest_fleet import item_secrets
from ansible_collections.kvmops.virt.plugins.modules import kvm_guests

libvirt = pytest.importorskip("libvirt")

URI = "test:///default"
POOL = "default-pool"
# The guests and volumes of this module; the conftest's conn fixture removes them afterwards.
PREFIX = "uf-"


def run(capsys, args, check=False):
    args = dict(args, uri=URI, _ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            kvm_guests.main()
    out = capsys.readouterr().out
    return json.loads(out), out


DEFAULTS = {"state": "present", "memory": 128, "vcpus": 1}


def test_four_way_mixed_list(conn, capsys):
    first, _o = run(capsys, {"defaults": DEFAULTS, "guests": [{"name": "uf-same"}, {"name": "uf-change"}, {"name": "uf-gone"}]})
    assert first["changed"] and not first.get("failed"), first.get("msg")
    args = {"defaults": DEFAULTS, "guests": [
        {"name": "uf-new", "disks": [{"pool": POOL, "volume": "uf-new-root.qcow2", "size": "16MiB"}]},
        {"name": "uf-same"},
        {"name": "uf-change", "memory": "256MiB"},
        {"name": "uf-gone", "state": "absent"},
        {"name": "uf-never", "state": "absent"},
    ]}
    r1, _o = run(capsys, args, check=True)
    r2, _o = run(capsys, args)
    r3, _o = run(capsys, args, check=True)
    r4, _o = run(capsys, args)
    for r in (r1, r2, r3, r4):
        assert not r.get("failed"), r.get("msg")
    assert r1["changed"] and r2["changed"]
    assert r1["diff"] == r2["diff"]
    assert sorted(r1["diff"]["after"]) == ["uf-change", "uf-gone", "uf-new"]
    assert r1["diff"]["after"]["uf-change"] == {"memory": 256, "max_memory": 256} or "memory" in r1["diff"]["after"]["uf-change"]
    assert r1["diff"]["after"]["uf-gone"] == {"state": "absent"}
    assert [g["actions"] for g in r1["guests"]] == [g["actions"] for g in r2["guests"]]
    assert [g["name"] for g in r2["guests"]] == ["uf-new", "uf-same", "uf-change", "uf-gone", "uf-never"]
    assert [g["changed"] for g in r2["guests"]] == [True, False, True, True, False]
    assert r3["changed"] is False and r4["changed"] is False
    assert r3["diff"] == {"before": {}, "after": {}} and r4["diff"] == {"before": {}, "after": {}}
    assert all(g["actions"] == [] for g in r4["guests"])
    assert conn.lookupByName("uf-change").maxMemory() == 256 * 1024


def test_bad_input_names_guest_and_option_and_changes_nothing(conn, capsys):
    r, _o = run(capsys, {"defaults": DEFAULTS, "guests": [
        {"name": "uf-ok"}, {"name": "uf-bad", "memory": "lots"}, {"name": "uf-bad2", "vcpus": "x"}, {"name": "uf-ok"}]})
    assert r["failed"]
    assert "guests[1] (uf-bad): memory:" in r["msg"]
    assert "guests[2] (uf-bad2):" in r["msg"] and "vcpus" in r["msg"]
    assert "guests[3] (uf-ok): name:" in r["msg"]
    assert "uf-ok" not in [d.name() for d in conn.listAllDomains(0)]
    r, _o = run(capsys, {"guests": [{"name": "uf-x", "uri": "qemu:///system"}]})
    assert r["failed"] and "guests[0] (uf-x):" in r["msg"] and "uri" in r["msg"]


def test_partial_failure_converges_the_others(conn, capsys):
    r, _o = run(capsys, {"defaults": DEFAULTS, "guests": [
        {"name": "uf-a"},
        {"name": "uf-b", "disks": [{"pool": "uf-no-such-pool", "volume": "v.qcow2", "size": "1MiB"}]},
        {"name": "uf-c"},
    ]})
    assert r["failed"]
    assert r["msg"].startswith("1 of 3 guests failed: guests[1] (uf-b): ")
    assert r["failed_guests"] == ["uf-b"]
    assert [g["failed"] for g in r["guests"]] == [False, True, False]
    names = [d.name() for d in conn.listAllDomains(0)]
    assert "uf-a" in names and "uf-c" in names and "uf-b" not in names


def test_secrets_never_in_output(conn, capsys):
    args = {"defaults": dict(DEFAULTS, graphics={"type": "vnc", "password": "Zq9secr"}), "guests": [
        {"name": "uf-s", "disks": [{"pool": POOL, "volume": "uf-s-root.qcow2", "size": "1MiB"}],
         "cloud_init": {"user_data": {"password": "ud-Secret-77"}}},
        {"name": "uf-t", "graphics": {"type": "vnc", "password": "Yw8secr"}, "memory": "nonsense"},
    ]}
    r, out = run(capsys, args)
    assert r["failed"]
    for secret in ("Zq9secr", "ud-Secret-77", "Yw8secr"):
        assert secret not in out
    args["guests"].pop()
    r, out = run(capsys, args, check=True)  # the test driver cannot upload the seed: check mode
    assert not r.get("failed"), r.get("msg")
    assert "graphics.password" in json.dumps(r["diff"])
    for secret in ("Zq9secr", "ud-Secret-77"):
        assert secret not in out


def test_item_secrets_reads_raw_items():
    found = item_secrets({"defaults": {"graphics": {"password": "p1"}},
                          "guests": [{"cloud_init": {"user_data": {"a": ["u1", {"b": "u2"}]}}}, "junk", {"graphics": "junk"}]})
    assert found == {"p1", "u1", "u2"}


def test_the_hosts_guests_are_read_once_for_the_whole_list(conn, capsys, monkeypatch):
    # New interfaces without a MAC and user-given MACs each need every guest's MACs: one read for all items.
    from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient

    reads = []
    original = LibvirtClient.domain_xmls

    def counting(self, *args, **kwargs):
        reads.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LibvirtClient, "domain_xmls", counting)
    nic = [{"network": "default"}]
    guests = [{"name": "uf-mac%d" % i, "interfaces": nic} for i in range(6)]
    guests.append({"name": "uf-macuser", "interfaces": [{"network": "default", "mac": "52:54:00:aa:bb:01"}]})
    guests.append({"name": "uf-macdup", "interfaces": [{"network": "default", "mac": "52:54:00:aa:bb:01"}]})
    for check in (True, False):
        reads[:] = []
        result, _o = run(capsys, {"defaults": DEFAULTS, "guests": guests}, check=check)
        assert not result.get("failed"), result.get("msg")
        assert len(reads) == 1
    macs = [conn.lookupByName("uf-mac%d" % i).XMLDesc(0).split("mac address='")[1][:17] for i in range(6)]
    assert len(set(macs)) == 6
    # The second guest with the same MAC is warned about the first one, defined earlier in the same run.
    # (ansible-core 2.19+ returns warnings as structured events: search their text.)
    assert "guests[7] (uf-macdup): interfaces[0].mac: 52:54:00:aa:bb:01 is also used by guest 'uf-macuser'" in json.dumps(result.get("warnings"))
    reads[:] = []
    again, _o = run(capsys, {"defaults": DEFAULTS, "guests": guests})
    assert again["changed"] is False
