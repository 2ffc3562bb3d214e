# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvm_guest's ``tpm`` and ``boot_order`` on libvirt's in-process test:///default driver,
and the XML model and builder steps behind them (``_domain_boot``, ``Domain.tpms``/``boot_devs``)."""
from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils._domain_builder import DomainBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._guest_spec import GuestSpec, TpmSpec
from ansible_collections.kvmops.virt.plugins.modules import kvm_guest

libvirt = pytest.importorskip("libvirt")

URI = "test:///default"
PREFIX = "ut-tb-"
BASE = dict(name="ut-tb-a", state="present", memory=128, vcpus=1)


def run(capsys, args, check=False):
    args = dict(args, uri=URI, _ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            kvm_guest.main()
    return json.loads(capsys.readouterr().out)


def four_way(capsys, args):
    r1 = run(capsys, args, check=True)
    r2 = run(capsys, args)
    r3 = run(capsys, args, check=True)
    r4 = run(capsys, args)
    for r in (r1, r2, r3, r4):
        assert not r.get("failed"), r.get("msg")
    assert r1["changed"] is True and r2["changed"] is True
    assert r1["diff"] == r2["diff"]
    assert r1["reboot_required"] == r2["reboot_required"]
    assert r3["changed"] is False and r4["changed"] is False
    assert r3["diff"] == {"before": {}, "after": {}}
    return r2


def g(**changes):
    out = dict(BASE)
    out.update(changes)
    return out


def inactive(conn, name="ut-tb-a"):
    return Domain.from_xml(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


# -- the module on test:///default ---------------------------------------------------
def test_tpm_add_change_and_remove(conn, capsys):
    r = four_way(capsys, g(tpm=dict()))
    assert r["diff"]["after"]["tpm"] == {"model": "tpm-crb", "version": "2.0"}
    tpm = list(inactive(conn).tpms)[0]
    assert (tpm.model, tpm.backend_type, tpm.version) == ("tpm-crb", "emulator", "2.0")
    # another model: only what changed is in the diff
    r = four_way(capsys, g(tpm=dict(model="tpm-tis")))
    assert r["diff"] == {"before": {"tpm.model": "tpm-crb"}, "after": {"tpm.model": "tpm-tis"}}
    # version 1.2 alone keeps tpm-tis
    r = four_way(capsys, g(tpm=dict(version="1.2")))
    assert r["diff"] == {"before": {"tpm.version": "2.0"}, "after": {"tpm.version": "1.2"}}
    # back to 2.0 with the default model of a TPM that has none given: tpm-tis stays (it does 2.0 too)
    r = four_way(capsys, g(tpm=dict(version="2.0")))
    assert r["diff"]["after"] == {"tpm.version": "2.0"}
    # removal
    r = four_way(capsys, g(tpm=dict(state="absent")))
    assert r["diff"] == {"before": {"tpm": {"model": "tpm-tis", "version": "2.0"}}, "after": {"tpm": None}}
    uuid = conn.lookupByName("ut-tb-a").UUIDString()
    assert any("/var/lib/libvirt/swtpm/%s" % uuid in w for w in map(str, r.get("warnings", []))), r.get("warnings")
    assert not list(inactive(conn).tpms)
    # absent again and absent on a guest without a TPM: no change
    assert run(capsys, g(tpm=dict(state="absent")))["changed"] is False


def test_tpm_version_switches_a_crb_model(conn, capsys):
    four_way(capsys, g(tpm=dict(model="tpm-crb")))
    r = four_way(capsys, g(tpm=dict(version="1.2")))
    assert r["diff"]["after"] == {"tpm.model": "tpm-tis", "tpm.version": "1.2"}


def test_boot_order(conn, capsys):
    r = four_way(capsys, g(boot_order=["cdrom", "hd"]))
    assert r["diff"]["after"]["boot_order"] == ["cdrom", "hd"]
    assert inactive(conn).boot_devs == ["cdrom", "hd"]
    r = four_way(capsys, g(boot_order=["hd", "cdrom", "network"]))
    assert r["diff"] == {"before": {"boot_order": ["cdrom", "hd"]}, "after": {"boot_order": ["hd", "cdrom", "network"]}}
    assert inactive(conn).boot_devs == ["hd", "cdrom", "network"]


def test_running_guest_gets_reboot_required(conn, capsys):
    assert not run(capsys, g(state="running")).get("failed")
    r = four_way(capsys, g(state="running", tpm=dict(model="tpm-tis"), boot_order=["cdrom", "hd"]))
    assert r["reboot_required"] is True
    assert set(r["guest"]["pending_changes"]) == {"tpm", "boot_order"}
    dom = conn.lookupByName("ut-tb-a")
    assert not list(Domain.from_xml(dom.XMLDesc(0)).tpms)  # the running guest is as it was
    assert list(inactive(conn).tpms)[0].model == "tpm-tis"
    # still pending on the next run (no change, but reboot_required stays true)
    again = run(capsys, g(state="running", tpm=dict(model="tpm-tis"), boot_order=["cdrom", "hd"]))
    assert again["changed"] is False and again["reboot_required"] is True


@pytest.mark.parametrize("args, option, text", [
    (dict(tpm=dict(model="tpm-crb", version="1.2")), "tpm.version", "TPM 1.2 is emulated with model tpm-tis only"),
    (dict(tpm=dict(state="absent", model="tpm-tis")), "tpm.state", "model and version cannot be set"),
    (dict(boot_order=[]), "boot_order", "must name at least one boot device"),
    (dict(boot_order=["hd", "cdrom", "hd"]), "boot_order[2]", "'hd' is listed more than once"),
    (dict(boot_order=["hd", "floppy"]), "value of boot_order", "must be one or more of: hd, cdrom, network. Got no match for: floppy"),
    (dict(boot_order=["hd"], boot=dict(kernel="KERNEL")), "boot_order", "cannot be combined with direct kernel boot"),
])
def test_bad_input_is_refused_and_nothing_is_defined(conn, capsys, tmp_path, args, option, text):
    if "boot" in args:
        kernel = tmp_path / "vmlinuz"  # boot.kernel must exist on the host
        kernel.write_bytes(b"")
        args = dict(args, boot=dict(kernel=str(kernel)))
    r = run(capsys, g(**args))
    assert r["failed"] is True
    assert r["msg"].startswith(option) and text in r["msg"], r["msg"]
    assert "Traceback" not in r["msg"]
    assert "ut-tb-a" not in conn.listDefinedDomains()


def test_boot_order_on_a_kernel_boot_guest_is_refused(conn, capsys, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"")
    assert not run(capsys, g(boot=dict(kernel=str(kernel)))).get("failed")
    before = conn.lookupByName("ut-tb-a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    r = run(capsys, g(boot_order=["cdrom", "hd"]))
    assert r["failed"] and r["msg"].startswith("boot_order: the guest 'ut-tb-a' boots a kernel directly"), r["msg"]
    assert conn.lookupByName("ut-tb-a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    # removing direct kernel boot in the same task makes it valid
    r = four_way(capsys, g(boot=dict(kernel=""), boot_order=["cdrom", "hd"]))
    assert r["diff"]["after"]["boot_order"] == ["cdrom", "hd"]


# -- the builder and the model, without a connection ------------------------------------
def _spec(**values):
    spec = GuestSpec("ut-tb-x")
    for key, value in values.items():
        setattr(spec, key, value)
    return spec


def test_builder_refuses_per_device_boot_order():
    actual = Domain.from_xml(
        "<domain type='qemu'><name>ut-tb-x</name><memory>131072</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><source file='/x.img'/><target dev='vda' bus='virtio'/>"
        "<boot order='1'/></disk></devices></domain>")
    with pytest.raises(InvalidArgument) as err:
        DomainBuilder(actual, _spec(boot_order=["hd"])).build()
    assert str(err.value).startswith("boot_order: ")
    assert "per-device <boot order='N'/>" in str(err.value) and "<disk>" in str(err.value)


def test_boot_devs_are_written_after_the_loader_and_read_back_in_order():
    dom = Domain.from_xml("<domain><os><type>hvm</type><loader>/x.fd</loader><boot dev='hd'/></os></domain>")
    dom.boot_devs = ["network", "cdrom", "hd"]
    assert dom.boot_devs == ["network", "cdrom", "hd"]
    assert [c.tag for c in dom.find("./os")] == ["type", "loader", "boot", "boot", "boot"]


def test_new_tpm_defaults():
    dom, changes = DomainBuilder(None, _spec(tpm=TpmSpec(version="1.2"))).build()
    tpm = list(dom.tpms)[0]
    assert (tpm.model, tpm.version) == ("tpm-tis", "1.2")
    assert [(c.path, c.after, c.kind) for c in changes if c.path.startswith("tpm")] == [
        ("tpm", {"model": "tpm-tis", "version": "1.2"}, "config")]
