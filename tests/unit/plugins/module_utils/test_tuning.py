# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cpu_pinning, emulator_cpuset, numa, hugepages, hostdevs and filesystems of kvm_guest.

Golden XML files (fixtures/domain/tuning-*.expected.xml, regenerated with
``KVMOPS_REGOLD=1``) for what the builder writes; round trips through libvirt's
test:///default driver (its parser keeps what the builder wrote: applying the
spec again changes nothing); and the module on test:///default for the errors,
which must come before anything changes, in check mode too.
"""
from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils._domain_builder import DomainBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_tuning import format_cpuset, parse_cpuset, tuning_facts
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._guest_tuning import validate
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, parse_xml
from ansible_collections.kvmops.virt.plugins.modules import kvm_guest

libvirt = pytest.importorskip("libvirt")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "domain")
PREFIX = "ut-tune-"
UUID = "8f4c9e6a-52d1-4a36-9c1e-2f6f7f0b1a11"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as fh:
        return fh.read()


def tuned(spec):
    spec.cpu_pinning = {0: (0,), 1: (1, 2, 3)}
    spec.emulator_cpuset = (0, 1)
    spec.numa = {"cells": [{"cpus": (0,), "memory": 256, "nodeset": (0,), "mode": "strict"},
                           {"cpus": (1,), "memory": 256, "nodeset": None, "mode": None}],
                 "nodeset": (0,), "mode": "preferred"}
    spec.hugepages = 2048
    spec.hostdevs = [{"type": "pci", "address": "0000:03:00.0", "managed": True},
                     {"type": "usb", "vendor": "0x046d", "product": "0xc077", "managed": True},
                     {"type": "mdev", "uuid": UUID, "model": "vfio-pci"}]
    spec.filesystems = [{"source": "/srv/share", "target": "share"}]
    return spec


def spec_new():
    s = gs.GuestSpec("golden-tune")
    s.virt_type = "qemu"
    s.machine = "q35"
    s.memory = 512
    s.vcpus = 2
    return tuned(s)


def spec_update():
    """qemu-nomac.xml (1 vCPU, 256 MiB) with 2 vCPUs and 512 MiB, tuned."""
    s = gs.GuestSpec("golden-nomac")
    s.memory = 512
    s.vcpus = 2
    return tuned(s)


def spec_untune():
    """Everything of spec_update removed again."""
    s = gs.GuestSpec("golden-nomac")
    s.cpu_pinning = {}
    s.emulator_cpuset = ()
    s.numa = {"cells": [], "nodeset": None, "mode": None}
    s.hugepages = ""
    s.hostdevs = []
    s.filesystems = []
    return s


TUNED_PATHS = ["cpu_pinning", "emulator_cpuset", "numa", "hugepages", "hostdevs[pci:0000:03:00.0]",
               "hostdevs[usb:0x046d:0xc077]", "hostdevs[mdev:%s]" % UUID, "filesystems[share]"]
CASES = [
    ("tuning-new", None, spec_new, ["virt_type", "machine", "memory", "vcpus"] + TUNED_PATHS),
    ("tuning-update", "qemu-nomac.xml", spec_update,
     ["max_memory", "memory", "max_vcpus", "vcpus"] + TUNED_PATHS + ["filesystems.memory_backing"]),
]


@pytest.mark.parametrize("name,input_name,factory,paths", CASES, ids=[c[0] for c in CASES])
def test_golden(name, input_name, factory, paths):
    actual = dm.Domain.from_xml(fixture(input_name)) if input_name else None
    domain, changes = DomainBuilder(actual, factory()).build()
    assert [c.path for c in changes] == paths
    out = domain.to_xml()
    expected_file = os.path.join(FIXTURES, name + ".expected.xml")
    if os.environ.get("KVMOPS_REGOLD") == "1":
        with open(expected_file, "w") as fh:
            fh.write(out)
    assert canonical(parse_xml(out)) == canonical(parse_xml(fixture(name + ".expected.xml")))


def test_change_kinds_and_diff_values():
    domain, changes = DomainBuilder(dm.Domain.from_xml(fixture("qemu-nomac.xml")), spec_update()).build()
    by_path = dict((c.path, c) for c in changes)
    assert by_path["cpu_pinning"].kind == dm.VCPU_PIN
    assert by_path["cpu_pinning"].before == []
    assert by_path["cpu_pinning"].after == [{"vcpu": 0, "cpuset": "0"}, {"vcpu": 1, "cpuset": "1-3"}]
    assert by_path["emulator_cpuset"].kind == dm.EMULATOR_PIN
    assert (by_path["emulator_cpuset"].before, by_path["emulator_cpuset"].after) == (None, "0-1")
    assert by_path["hugepages"].after == "2MiB"
    assert by_path["numa"].after == {"cells": [{"cpus": "0", "memory": "256MiB", "nodeset": "0", "mode": "strict"},
                                               {"cpus": "1", "memory": "256MiB"}], "nodeset": "0", "mode": "preferred"}
    assert by_path["hostdevs[pci:0000:03:00.0]"].after == {"managed": True}
    assert by_path["filesystems[share]"].after == {"source": "/srv/share"}
    for path in ("numa", "hugepages", "hostdevs[pci:0000:03:00.0]", "filesystems.memory_backing"):
        assert by_path[path].kind == dm.CONFIG  # these wait for the next boot
    assert by_path["filesystems[share]"].kind == dm.FS_ATTACH  # hot-plugged when the running guest has shared memory
    facts = tuning_facts(domain)
    assert facts["cpu_pinning"] == by_path["cpu_pinning"].after
    assert facts["hugepages"] == "2MiB"
    assert [d["key"] for d in facts["hostdevs"]] == ["pci:0000:03:00.0", "usb:0x046d:0xc077", "mdev:" + UUID]
    assert facts["filesystems"] == [{"source": "/srv/share", "target": "share"}]


def test_a_pin_to_every_host_cpu_is_no_pin():
    """libvirt keeps <vcpupin cpuset='0-1'/> in the live XML after a live unpin on a 2-CPU host."""
    tuned_domain, _changes = DomainBuilder(dm.Domain.from_xml(fixture("qemu-nomac.xml")), spec_update()).build()
    spec = spec_untune()
    spec.host_cpus = 4
    spec.cpu_pinning = {0: (0, 1, 2, 3)}
    spec.emulator_cpuset = (0, 1, 2, 3)
    domain, changes = DomainBuilder(tuned_domain, spec).build()
    by_path = dict((c.path, c) for c in changes)
    assert by_path["cpu_pinning"].after == [] and by_path["emulator_cpuset"].after is None
    assert domain.find("./cputune") is None
    _domain, changes = DomainBuilder(domain, spec).build()
    assert [c.path for c in changes] == []


def test_removing_everything_restores_the_plain_guest():
    tuned_domain, _changes = DomainBuilder(dm.Domain.from_xml(fixture("qemu-nomac.xml")), spec_update()).build()
    domain, changes = DomainBuilder(tuned_domain, spec_untune()).build()
    assert [c.path for c in changes] == TUNED_PATHS
    assert all(c.after in (None, []) for c in changes)
    for path in ("./cputune", "./numatune", "./cpu/numa", "./memoryBacking/hugepages", "./devices/hostdev", "./devices/filesystem"):
        assert domain.find(path) is None, path
    # the shared memory virtiofs needed stays: harmless, and a later share needs it again
    assert domain.find("./memoryBacking/access").get("mode") == "shared"


def _define_and_read(conn, xml):
    dom = conn.defineXML(xml)
    return dm.Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


@pytest.mark.parametrize("name,input_name,factory,paths", CASES, ids=[c[0] for c in CASES])
def test_round_trip_on_the_test_driver(conn, name, input_name, factory, paths):
    """libvirt's parser keeps what the builder wrote: the spec applied to the defined guest changes nothing."""
    actual = _define_and_read(conn, fixture(input_name).replace("golden-nomac", PREFIX + "nomac")) if input_name else None
    spec = factory()
    spec.name = PREFIX + spec.name
    domain, _changes = DomainBuilder(actual, spec).build()
    again = _define_and_read(conn, domain.to_xml())
    _domain, changes = DomainBuilder(again, spec).build()
    assert [c.path for c in changes] == []


@pytest.mark.parametrize("text,cpus,canonical_text", [
    ("0", (0,), "0"), ("0-3", (0, 1, 2, 3), "0-3"), ("3,1", (1, 3), "1,3"), ("0-3,^2", (0, 1, 3), "0-1,3"),
    (" 0 , 2-3 ", (0, 2, 3), "0,2-3"),
])
def test_cpusets(text, cpus, canonical_text):
    assert parse_cpuset(text, "x") == cpus
    assert format_cpuset(cpus) == canonical_text


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "0,^0", "-1", "0x1"])
def test_bad_cpusets(text):
    with pytest.raises(InvalidArgument) as err:
        parse_cpuset(text, "cpu_pinning[0].cpuset")
    assert err.value.msg.startswith("cpu_pinning[0].cpuset: ")


def params(**kw):
    base = dict(cpu_pinning=None, emulator_cpuset=None, numa=None, hugepages=None, hostdevs=None, filesystems=None,
                vcpus=None, max_vcpus=None)
    base.update(kw)
    return base


@pytest.mark.parametrize("kw,message", [
    (dict(vcpus=2, cpu_pinning=[{"vcpu": 2, "cpuset": "0"}]),
     "cpu_pinning[0].vcpu: vCPU 2 does not exist: the guest has 2 vCPUs (0 to 1)"),
    (dict(cpu_pinning=[{"vcpu": 0, "cpuset": "0"}, {"vcpu": 0, "cpuset": "1"}]), "cpu_pinning[1].vcpu: vCPU 0 is pinned twice"),
    (dict(hostdevs=[{"address": "03:00", "vendor": None, "product": None, "uuid": None, "managed": True, "model": None}]),
     "hostdevs[0].address: '03:00' is not a PCI address such as 0000:03:00.0 (domain:bus:slot.function)"),
    (dict(hostdevs=[{"address": None, "vendor": "logitech", "product": "c077", "uuid": None, "managed": True, "model": None}]),
     "hostdevs[0].vendor: 'logitech' is not a USB id such as 0x046d (four hex digits)"),
    (dict(hostdevs=[{"address": None, "vendor": None, "product": None, "uuid": "nope", "managed": True, "model": None}]),
     "hostdevs[0].uuid: 'nope' is not a UUID such as 8f4c9e6a-52d1-4a36-9c1e-2f6f7f0b1a11"),
    (dict(hostdevs=[{"address": "0000:03:00.0", "vendor": None, "product": None, "uuid": None, "managed": True, "model": "vfio-pci"}]),
     "hostdevs[0].model: applies only to mediated devices (uuid)"),
    (dict(hostdevs=[{"address": "03:00.0", "vendor": None, "product": None, "uuid": None, "managed": True, "model": None},
                    {"address": "0000:03:00.0", "vendor": None, "product": None, "uuid": None, "managed": False, "model": None}]),
     "hostdevs[1]: the host device pci:0000:03:00.0 is listed twice"),
    (dict(filesystems=[{"source": "share", "target": "t"}]), "filesystems[0].source: must be an absolute path on the host, got 'share'"),
    (dict(filesystems=[{"source": "/a", "target": "t"}, {"source": "/b", "target": "t"}]),
     "filesystems[1].target: the mount tag 't' is used twice"),
    (dict(filesystems=[{"source": "/a", "target": "x" * 37}]),
     "filesystems[0].target: a mount tag must be 1 to 36 bytes without spaces or control characters, got '%s'" % ("x" * 37)),
    (dict(hugepages="3"), "hugepages: '3' is not a huge page size such as 2MiB or 1GiB"),
    (dict(numa={"cells": [{"cpus": "0", "memory": "0", "nodeset": None, "mode": None}], "nodeset": None, "mode": None}),
     "numa.cells[0].memory: memory must be greater than zero"),
    (dict(numa={"cells": [{"cpus": "0", "memory": "128MiB", "nodeset": None, "mode": "strict"}], "nodeset": None, "mode": None}),
     "numa.cells[0].mode: applies only with nodeset"),
    (dict(numa={"cells": [], "nodeset": None, "mode": "strict"}), "numa.mode: applies only with numa.nodeset"),
])
def test_bad_input(kw, message):
    with pytest.raises(InvalidArgument) as err:
        validate(params(**kw))
    assert err.value.msg == message


def test_builder_checks_against_the_guest():
    actual = dm.Domain.from_xml(fixture("qemu-nomac.xml"))  # 1 vCPU, 256 MiB
    spec = gs.GuestSpec("golden-nomac")
    spec.cpu_pinning = {1: (0,)}
    with pytest.raises(InvalidArgument) as err:
        DomainBuilder(actual, spec).build()
    assert err.value.msg == "cpu_pinning: vCPU 1 does not exist: the guest has 1 vCPUs (0 to 0)"
    spec = gs.GuestSpec("golden-nomac")
    spec.numa = {"cells": [{"cpus": (0,), "memory": 128}], "nodeset": None, "mode": None}
    with pytest.raises(InvalidArgument) as err:
        DomainBuilder(actual, spec).build()
    assert err.value.msg == ("numa.cells: the cells' memory adds up to 128 MiB, but the guest has 256 MiB "
                             "(max_memory, or memory without it); make them equal")
    spec.numa = {"cells": [{"cpus": (0, 1), "memory": 256}], "nodeset": None, "mode": None}
    with pytest.raises(InvalidArgument) as err:
        DomainBuilder(actual, spec).build()
    assert err.value.msg == "numa.cells[0].cpus: vCPU 1 does not exist: the guest has 1 vCPUs (0 to 0)"


# -- the module on test:///default ----------------------------------------------------------
def run(capsys, args, check=False):
    args = dict(args, uri="test:///default", _ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            kvm_guest.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def base_args(name):
    return dict(name=PREFIX + name, state="present", memory="256MiB", vcpus=2)


def test_four_ways_on_the_test_driver(conn, capsys):
    args = dict(base_args("four"), cpu_pinning=[{"vcpu": 0, "cpuset": "0"}, {"vcpu": 1, "cpuset": "1-2"}],
                emulator_cpuset="0-1", hugepages="default",
                numa=dict(cells=[dict(cpus="0", memory="128MiB"), dict(cpus="1", memory="128MiB")]))
    results = [run(capsys, args, check=c)[0] for c in (True, False, True, False)]
    for r in results:
        assert not r.get("failed"), r.get("msg")
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert results[0]["diff"] == results[1]["diff"]
    after = results[1]["diff"]["after"]
    assert after["cpu_pinning"] == [{"vcpu": 0, "cpuset": "0"}, {"vcpu": 1, "cpuset": "1-2"}]
    assert after["emulator_cpuset"] == "0-1" and after["hugepages"] == "default"
    guest = results[3]["guest"]
    assert guest["cpu_pinning"] == after["cpu_pinning"] and guest["numa"]["cells"][1] == {"cpus": "1", "memory": "128MiB"}
    xml = conn.lookupByName(PREFIX + "four").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "<vcpupin vcpu='1' cpuset='1-2'/>" in xml and "<emulatorpin cpuset='0-1'/>" in xml


def _guest_xml(conn, name):
    try:
        return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError:
        return None


@pytest.mark.parametrize("extra,message", [
    (dict(hostdevs=[dict(address="0000:03:00.0")]),
     "hostdevs[0]: the host has no device pci:0000:03:00.0 (looked up through libvirt's host device list on uri "
     "'test:///default'); virsh nodedev-list lists its devices"),
    (dict(hostdevs=[dict(vendor="0x046d", product="0xc077")]),
     "hostdevs[0]: the host has no device usb:0x046d:0xc077 (looked up through libvirt's host device list on uri "
     "'test:///default'); virsh nodedev-list lists its devices"),
    (dict(hostdevs=[dict(uuid=UUID)]),
     "hostdevs[0]: the host has no device mdev:%s (looked up through libvirt's host device list on uri "
     "'test:///default'); virsh nodedev-list lists its devices" % UUID),
    (dict(hostdevs=[dict(address="0000:03:00")]),
     "hostdevs[0].address: '0000:03:00' is not a PCI address such as 0000:03:00.0 (domain:bus:slot.function)"),
    (dict(cpu_pinning=[dict(vcpu=0, cpuset="0,999")]),
     "cpu_pinning[0].cpuset: host CPU 999 does not exist: the host has %d CPUs"),
    (dict(emulator_cpuset="999"), "emulator_cpuset: host CPU 999 does not exist: the host has %d CPUs"),
    (dict(cpu_pinning=[dict(vcpu=2, cpuset="0")]), "cpu_pinning[0].vcpu: vCPU 2 does not exist: the guest has 2 vCPUs (0 to 1)"),
    (dict(hugepages="16MiB"), "hugepages: the host has no 16384 KiB huge pages; it offers "),
    (dict(numa=dict(nodeset="7")), "numa.nodeset: host NUMA node 7 does not exist: the host has the nodes "),
])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("check", [True, False], ids=["check", "apply"])
def test_errors_come_before_any_change(conn, capsys, extra, message, existing, check):
    name = PREFIX + "bad"
    if existing:
        assert not run(capsys, base_args("bad"))[0].get("failed")
    before = _guest_xml(conn, name)
    result, out = run(capsys, dict(base_args("bad"), **extra), check=check)
    assert result.get("failed") is True
    expected = message % conn.getCPUMap(0)[0] if "%d" in message else message
    assert result["msg"].startswith(expected), result["msg"]
    assert "Traceback" not in out
    assert _guest_xml(conn, name) == before
