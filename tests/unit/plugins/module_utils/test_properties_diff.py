# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of diff normalization: a spec compared with the XML
generated from that same spec has no difference (hypothesis; deterministic).

Once on the builder alone (spec -> XML -> parse -> same spec: no change), and
once end to end through the kvm_guest module on libvirt's test:///default
driver, whose defaults (addresses, controllers, MACs) come on top.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils._domain_builder import DomainBuilder
from ansible_collections.kvmops.virt.plugins.modules import kvm_guest

PROPS = settings(derandomize=True, deadline=None, max_examples=60, database=None)
MACHINES = {"q35": "pc-q35-7.2", "pc": "pc-i440fx-7.2"}

mac = st.tuples(*[st.integers(0, 255)] * 3).map(lambda t: "52:54:00:%02x:%02x:%02x" % t)
maybe = st.none().__or__


@st.composite
def guest_specs(draw):
    """The options of one guest, as plain data (a fresh GuestSpec is built from it each time)."""
    memory = draw(st.integers(64, 4096))
    vcpus = draw(st.integers(1, 8))
    cpu_mode = draw(st.sampled_from([None, "host-passthrough", "host-model", "maximum", "custom"]))
    n_disks = draw(st.integers(0, 3))
    return dict(
        virt_type=draw(st.sampled_from([None, "qemu", "kvm"])),
        machine=draw(st.sampled_from([None, "q35", "pc-q35-7.2", "pc", "pc-i440fx-7.2"])),
        memory=memory,
        max_memory=draw(st.one_of(st.none(), st.integers(memory, 8192))),
        vcpus=vcpus,
        max_vcpus=draw(st.one_of(st.none(), st.integers(vcpus, 16))),
        cpu_mode=cpu_mode,
        cpu_model=draw(st.sampled_from(["qemu64", "Skylake-Client"])) if cpu_mode == "custom" else None,
        disks=[dict(path="/var/lib/libvirt/images/p%d.qcow2" % i, bus=draw(st.sampled_from([None, "virtio", "sata", "scsi"])))
               for i in range(n_disks)],
        interfaces=draw(st.lists(st.tuples(st.sampled_from(["network", "bridge"]), st.sampled_from(["n1", "n2", "br0"]),
                                           st.sampled_from([None, "virtio", "e1000e"]), st.one_of(st.none(), mac)),
                                 max_size=3, unique_by=lambda t: t[3] or id(t))),
        graphics=draw(st.one_of(st.none(), st.tuples(st.sampled_from(["vnc", "spice", "none"]),
                                                     st.sampled_from([None, "127.0.0.1"]),
                                                     st.sampled_from([None, "Pr0pPw1x"])))),
        console_log=draw(st.one_of(st.none(), st.just("/var/log/kvmops/console.log"))),
        tags=draw(st.one_of(st.none(), st.lists(st.sampled_from(["web", "db", "lab"]), max_size=3))),
    )


def _spec(options):
    spec = gs.GuestSpec("prop-guest")
    for key in ("virt_type", "machine", "memory", "max_memory", "vcpus", "max_vcpus", "cpu_mode", "cpu_model", "console_log", "tags"):
        setattr(spec, key, options[key])
    if spec.max_memory is None:
        spec.max_memory = None
    spec.disks = [gs.DiskSpec(i, "disk", d["path"], bus=d["bus"], fmt="qcow2") for i, d in enumerate(options["disks"])]
    spec.interfaces = [gs.NicSpec(i, kind, source, model, m) for i, (kind, source, model, m) in enumerate(options["interfaces"])]
    g = options["graphics"]
    if g is not None:
        gtype, listen, password = g
        spec.graphics = gs.GraphicsSpec(gtype, None if gtype == "none" else listen, None if gtype == "none" else password)
    spec.machine_names = MACHINES
    return spec


@PROPS
@given(guest_specs())
def test_a_spec_matches_the_xml_built_from_it(options):
    built, _changes = DomainBuilder(None, _spec(options)).build()
    actual = dm.Domain.from_xml(built.to_xml())
    again, changes = DomainBuilder(actual, _spec(options)).build()
    assert [(c.path, c.before, c.after) for c in changes] == []
    assert again == actual


# ---------------------------------------------------------------- end to end on test:///default

def _run(args, check=False):
    args = dict(args, uri="test:///default", _ansible_check_mode=check, _ansible_diff=True)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        with pytest.raises(SystemExit):
            kvm_guest.main()
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def test_driver():
    libvirt = pytest.importorskip("libvirt")
    conn = libvirt.open("test:///default")  # keeps the driver's state for the module
    yield conn
    conn.close()


@settings(derandomize=True, deadline=None, max_examples=25, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=guest_specs())
def test_module_run_twice_reports_no_difference(test_driver, options):
    args = dict(name="prop-e2e", state="present", memory=options["memory"], vcpus=options["vcpus"],
                virt_type="qemu", max_memory=options["max_memory"], max_vcpus=options["max_vcpus"],
                cpu_mode=options["cpu_mode"] if options["cpu_mode"] in (None, "custom") else None,
                cpu_model=options["cpu_model"], console_log=options["console_log"], tags=options["tags"],
                interfaces=[dict(network="default", model=model, mac=m) for _kind, _source, model, m in options["interfaces"]])
    g = options["graphics"]
    if g is not None and g[0] != "none":
        args["graphics"] = dict(type=g[0], listen=g[1], password=g[2])
    args = {k: v for k, v in args.items() if v is not None}
    try:
        first = _run(args)
        assert not first.get("failed"), first.get("msg")
        second = _run(args, check=True)
        assert not second.get("failed"), second.get("msg")
        assert second["changed"] is False, second["diff"]
        assert second["diff"] == {"before": {}, "after": {}}
        assert "Pr0pPw1x" not in json.dumps(first) + json.dumps(second)
    finally:
        try:
            dom = test_driver.lookupByName("prop-e2e")
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except Exception:  # pylint: disable=broad-except
            pass
