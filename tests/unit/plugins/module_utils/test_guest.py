# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_guest end to end on libvirt's in-process test:///default driver.

The real module runs in-process (``patch_module_args`` is ansible-core's way to
hand it arguments); every call defines, starts or removes real objects of the
test driver. The driver's state lives as long as one connection is open, so
the ``conn`` fixture keeps one.
"""
from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.modules import kvm_guest

libvirt = pytest.importorskip("libvirt")

URI = "test:///default"
POOL = "default-pool"
# The guests and volumes of this module; the conftest's conn fixture removes them afterwards.
PREFIX = "ut-"
NET = "default"


def run(capsys, args, check=False):
    """Run the module with ``args``; returns its JSON result (failures included) and its output."""
    args = dict(args)
    args.setdefault("uri", URI)
    args["_ansible_check_mode"] = check
    args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            kvm_guest.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def warnings(result):
    """The warning texts of a result (ansible-core 2.19+ returns structured warnings)."""
    out = []
    for w in result.get("warnings", []):
        out.append(w if isinstance(w, str) else json.dumps(w))
    return out


def four_way(capsys, args, changed=True):
    r1, _o = run(capsys, args, check=True)
    r2, _o = run(capsys, args)
    r3, _o = run(capsys, args, check=True)
    r4, _o = run(capsys, args)
    for r in (r1, r2, r3, r4):
        assert not r.get("failed"), r.get("msg")
    assert r1["changed"] is changed and r2["changed"] is changed
    assert r1["diff"] == r2["diff"]
    assert r1["actions"] == r2["actions"]
    assert r1["reboot_required"] == r2["reboot_required"]
    assert r3["changed"] is False and r4["changed"] is False
    assert r3["diff"] == {"before": {}, "after": {}} and r4["actions"] == []
    return r1, r2


BASE = dict(name="ut-a", state="present", memory=128, vcpus=1)


def g(base=None, **changes):
    """Arguments: ``base`` (default BASE) with ``changes``."""
    out = dict(BASE if base is None else base)
    out.update(changes)
    return out


def test_define_update_and_no_mac_idempotence(conn, capsys):
    args = g(disks=[dict(pool=POOL, volume="ut-a-root.qcow2", size="16MiB")],
             interfaces=[dict(network=NET), dict(network=NET, model="e1000")], tags=["x"])
    check, apply = four_way(capsys, args)
    assert check["diff"]["before"]["state"] == "absent"
    assert check["diff"]["after"]["state"] == "shutdown"
    assert check["diff"]["after"]["volumes[default-pool/ut-a-root.qcow2]"] == {"size": "16MiB", "pool": POOL}
    guest = apply["guest"]
    macs = [n["mac"] for n in guest["interfaces"]]
    assert all(m.startswith("52:54:00:") for m in macs)
    assert guest["created_volumes"] == [{"pool": POOL, "name": "ut-a-root.qcow2", "path": "/default-pool/ut-a-root.qcow2"}]
    # nothing specified: nothing compared, MACs kept
    bare, _o = run(capsys, dict(name="ut-a", state="present"))
    assert bare["changed"] is False
    assert [n["mac"] for n in bare["guest"]["interfaces"]] == macs
    # an update in place keeps the UUID and the MACs
    args2 = g(args, memory="256MiB", interfaces=[dict(network=NET), dict(network=NET, model="virtio")], tags=["y", "x"])
    check, apply = four_way(capsys, args2)
    assert sorted(check["diff"]["after"]) == ["interfaces[1].model", "max_memory", "memory", "tags"]
    assert apply["guest"]["uuid"] == guest["uuid"]
    assert [n["mac"] for n in apply["guest"]["interfaces"]] == macs
    assert apply["reboot_required"] is False


def test_power_states(conn, capsys):
    four_way(capsys, g(state="present"))
    for state in ("running", "paused", "running", "shutdown", "paused", "shutdown"):
        check, apply = four_way(capsys, g(state=state, wait_timeout=5))
        assert apply["guest"]["state"] == state
        assert list(check["diff"]["after"]) == ["state"]


def test_running_guest_memory_within_and_beyond_the_maximum(conn, capsys):
    run(capsys, g(state="running", memory=128, max_memory=256))
    _check, apply = four_way(capsys, g(state="running", memory=200))
    assert "set the memory of the running guest to 200 MiB" in apply["actions"]
    assert apply["reboot_required"] is False
    _check, apply = four_way(capsys, g(state="running", memory=512))
    assert apply["reboot_required"] is True
    assert apply["guest"]["pending_changes"] == ["max_memory", "memory"]
    again, _o = run(capsys, g(state="running", memory=512))
    assert again["changed"] is False and again["reboot_required"] is True


def test_running_guest_interface_hotplug_and_config_only_changes(conn, capsys):
    """The test driver cannot hot-plug: the change lands in the persistent definition, with a warning, as pending."""
    run(capsys, g(state="running", interfaces=[dict(network=NET)]))
    args = g(state="running", interfaces=[dict(network=NET), dict(network=NET, mac="52:54:00:11:22:33")])
    check, _o = run(capsys, args, check=True)
    apply, _o = run(capsys, args)
    assert check["diff"] == apply["diff"] and check["actions"] == apply["actions"]
    assert "attach interface interfaces[1] to the running guest" in apply["actions"]
    assert check["reboot_required"] is False  # check mode expects the hot-plug to work
    assert any("takes effect at the next boot" in w for w in warnings(apply))
    assert apply["guest"]["pending_changes"] == ["interfaces[1]"]
    again, _o = run(capsys, args)
    assert again["changed"] is False and again["guest"]["pending_changes"] == ["interfaces[1]"]
    assert "52:54:00:11:22:33" in conn.lookupByName("ut-a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    _check, apply = four_way(capsys, g(args, vcpus=1, max_vcpus=4))
    assert apply["guest"]["pending_changes"] == ["max_vcpus", "interfaces[1]"]


def test_remove_storage_deletes_only_created_volumes(conn, capsys):
    pool = conn.storagePoolLookupByName(POOL)
    pool.createXML("<volume><name>ut-user.raw</name><capacity>1048576</capacity></volume>", 0)
    run(capsys, g(disks=[dict(pool=POOL, volume="ut-a-root.qcow2", size="1MiB"), dict(pool=POOL, volume="ut-user.raw")]))
    run(capsys, g(name="ut-b", disks=[dict(pool=POOL, volume="ut-b-root.qcow2", size="1MiB")]))
    # guest ut-c uses ut-b's disk: removing ut-b must keep it
    run(capsys, g(name="ut-c", disks=[dict(pool=POOL, volume="ut-b-root.qcow2")]))
    check, apply = four_way(capsys, dict(name="ut-a", state="absent", remove_storage=True))
    assert check["diff"] == {"before": {"state": "shutdown", "volumes[default-pool/ut-a-root.qcow2]": "/default-pool/ut-a-root.qcow2"},
                             "after": {"state": "absent", "volumes[default-pool/ut-a-root.qcow2]": None}}
    names = [v.name() for v in pool.listAllVolumes(0)]
    assert "ut-a-root.qcow2" not in names and "ut-user.raw" in names
    _check, apply = four_way(capsys, dict(name="ut-b", state="absent", remove_storage=True))
    assert apply["diff"]["after"] == {"state": "absent"}
    assert any("used by another guest: ut-c" in w for w in warnings(apply))
    assert "ut-b-root.qcow2" in [v.name() for v in pool.listAllVolumes(0)]
    four_way(capsys, dict(name="ut-b", state="absent", remove_storage=True), changed=False)


@pytest.mark.parametrize("extra,message", [
    (dict(interfaces=[dict(network="ut-no-such-net")]), "interfaces[0].network: network 'ut-no-such-net' does not exist"),
    (dict(disks=[dict(pool="ut-no-pool", volume="v", size="1MiB")]), "disks[0].pool: storage pool 'ut-no-pool' does not exist"),
    (dict(interfaces=[dict(network=NET), dict(network=NET, mac="zz:11:22:33:44:55")]), "interfaces[1].mac: 'zz:11:22:33:44:55' is not a valid MAC"),
    (dict(disks=[dict(pool=POOL, volume="ut-v.qcow2", size="3 parsecs")]), "disks[0].size: "),
    (dict(secure_boot=True), "secure_boot: requires firmware: uefi"),
    (dict(disks=[dict(pool=POOL, volume="ut-1.qcow2", size=1024, target="vda"), dict(pool=POOL, volume="ut-2.qcow2", size=1024, target="vda")]),
     "disks[1].target: duplicate target 'vda'"),
    (dict(name="ut-<x>&"), "name: guest name"),
    (dict(memory=None), "memory: required to define the new guest"),
    (dict(max_memory=64), "memory: 128 MiB must not exceed max_memory (64 MiB)"),
    (dict(vcpus=4, max_vcpus=2), "vcpus: 4 must not exceed max_vcpus (2)"),
    (dict(cpu_mode="host-model", cpu_model="qemu64"), "cpu_model: applies only with cpu_mode: custom"),
    (dict(disks=[dict(pool=POOL, volume="ut-missing.qcow2")]), "disks[0].volume: volume 'ut-missing.qcow2' does not exist"),
    (dict(disks=[dict(device="cdrom", pool=POOL, volume="ut-cd.iso", size=1024)]), "disks[0].size: a cdrom is never created"),
    (dict(disks=[dict(device="cdrom", bus="virtio")]), "disks[0].bus: a cdrom cannot be on the virtio bus"),
    (dict(cloud_init=dict(user_data={"a": 1})), "cloud_init.pool: required"),
    (dict(xml="<network/>"), "xml: must be a <domain> element"),
    (dict(wait_for_ip=True), "wait_for_ip: applies only with state: running"),
    (dict(graphics=dict(type="vnc", password="123456789")), "graphics.password: a VNC password is at most 8 characters"),
    (dict(graphics=dict(type="vnc", listen="not an address")), "graphics.listen: 'not an address' is not an IP address"),
    (dict(interfaces=[dict(network=NET, mac="52:54:00:00:00:01"), dict(network=NET, mac="52-54-00-00-00-01")]),
     "interfaces[1].mac: duplicate MAC address 52:54:00:00:00:01"),
])
def test_bad_input_names_the_option_and_changes_nothing(conn, capsys, extra, message):
    before = (sorted(d.name() for d in conn.listAllDomains(0)), sorted(v.name() for v in conn.storagePoolLookupByName(POOL).listAllVolumes(0)))
    args = g(name="ut-bad")
    args.update(extra)
    result, out = run(capsys, args)
    assert result["failed"] is True
    assert result["msg"].startswith(message), result["msg"]
    assert "Traceback" not in out
    after = (sorted(d.name() for d in conn.listAllDomains(0)), sorted(v.name() for v in conn.storagePoolLookupByName(POOL).listAllVolumes(0)))
    assert after == before


def test_secrets_stay_out_of_diffs_and_results(conn, capsys):
    secret_pw = "Pq7zX1w"
    args = g(graphics=dict(type="vnc", password=secret_pw))
    check, out = run(capsys, args, check=True)
    assert check["diff"]["after"]["graphics.password"] == "******** (changed)"
    assert secret_pw not in out
    run(capsys, args)
    changed, out = run(capsys, g(args, graphics=dict(type="vnc", password="Zz9yY8x")))
    assert changed["diff"] == {"before": {"graphics.password": "********"}, "after": {"graphics.password": "******** (changed)"}}
    assert "Zz9yY8x" not in out and secret_pw not in out


def test_cloud_init_user_data_is_a_secret_in_check_mode(conn, capsys):
    secret = "s3cr3t-user-data-value"
    args = g(disks=[dict(pool=POOL, volume="ut-a-root.qcow2", size="1MiB")],
             cloud_init=dict(user_data={"password": secret}, meta_data={"local-hostname": "ut"}))
    check, out = run(capsys, args, check=True)
    assert check["changed"] is True
    assert check["diff"]["after"]["cloud_init.user_data"] == "******** (changed)"
    assert check["diff"]["after"]["cloud_init.meta_data"].startswith("digest:")
    assert "build the cloud-init seed ISO 'ut-a-cidata.iso' in storage pool 'default-pool'" in check["actions"]
    assert secret not in out


def test_xml_option_and_structured_precedence(conn, capsys):
    run(capsys, BASE)
    xml = "<domain><memory unit='MiB'>999</memory><on_crash>preserve</on_crash></domain>"
    check, apply = four_way(capsys, g(xml=xml))
    # the xml option raises the maximum memory (memory sets only the current amount) and sets on_crash
    assert check["diff"]["after"] == {"xml/memory@unit": "MiB", "xml/memory": "999", "xml/on_crash": "preserve"}
    assert apply["guest"]["memory_mb"] == 128 and apply["guest"]["max_memory_mb"] == 999


def test_failed_define_removes_the_volumes_it_created(conn, capsys):
    # A kernel path is not checked by the test driver; an invalid machine for the test driver fails at define time
    result, _out = run(capsys, g(name="ut-fail", disks=[dict(pool=POOL, volume="ut-fail.qcow2", size=1024)],
                                      xml="<domain><devices><disk type='file' device='disk'><target dev='vdq' bus='nonsense'/></disk></devices></domain>"))
    assert result["failed"] is True
    assert "removed the volumes this task had created: default-pool/ut-fail.qcow2" in result["msg"]
    assert "ut-fail.qcow2" not in [v.name() for v in conn.storagePoolLookupByName(POOL).listAllVolumes(0)]
    assert "ut-fail" not in [d.name() for d in conn.listAllDomains(0)]


def _macs(conn, name):
    xml = conn.lookupByName(name).XMLDesc(0)
    return [part for part in xml.split("'") if part.startswith("52:54:00:")]


def test_generated_macs_skip_those_of_other_guests(capsys, conn):
    import random

    def first_draw():
        random.seed(8)
        return "52:54:00:%02x:%02x:%02x" % (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))

    nic = [{"network": NET}]
    mac = first_draw()
    # Control: with that MAC free, the seeded generator hands it out first.
    random.seed(8)
    result, _o = run(capsys, dict(BASE, name="ut-mac-c", interfaces=nic))
    assert not result.get("failed"), result.get("msg")
    assert _macs(conn, "ut-mac-c") == [mac]
    conn.lookupByName("ut-mac-c").undefine()
    # With another guest holding it, the same draw is skipped.
    result, _o = run(capsys, dict(BASE, name="ut-mac-a", interfaces=[{"network": NET, "mac": mac}]))
    assert not result.get("failed"), result.get("msg")
    random.seed(8)
    result, _o = run(capsys, dict(BASE, name="ut-mac-b", interfaces=nic))
    assert not result.get("failed"), result.get("msg")
    assert _macs(conn, "ut-mac-b") != [mac] and len(_macs(conn, "ut-mac-b")) == 1
