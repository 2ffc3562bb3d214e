# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The domain model and builder: golden XML files, and define/update round trips on test:///default.

Golden files live in fixtures/domain/. ``<case>.expected.xml`` is what the
builder makes of the case's input and spec; regenerate them with
``KVMOPS_REGOLD=1`` after an intended change and review the git diff.
"""
from __future__ import annotations

import os

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils._domain_builder import DomainBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._validate import normalize_mac
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, etree, parse_xml

libvirt = pytest.importorskip("libvirt")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "domain")
NOMAC = "qemu-nomac.xml"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as fh:
        return fh.read()


def new_macs(start=0x10, count=8):
    """What the manager hands the builder for new interfaces: MACs, generated beforehand."""
    return ["52:54:00:00:00:%02x" % (start + 1 + i) for i in range(count)]


def seed_spec():
    return gs.SeedSpec("default", "g-cidata.iso", "/var/lib/libvirt/images/g-cidata.iso", "d" * 64,
                       {"meta-data": "m" * 64, "user-data": "u" * 64})


# -- cases: (name, input fixture or None, spec factory, expected change paths) --------------
def spec_new_full():
    s = gs.GuestSpec("golden-new")
    s.virt_type = "qemu"
    s.machine = "q35"
    s.arch = "x86_64"
    s.memory = 512
    s.max_memory = 1024
    s.vcpus = 2
    s.max_vcpus = 4
    s.cpu_mode = "host-model"
    s.firmware = "uefi"
    s.secure_boot = True
    s.kernel = "/var/lib/libvirt/images/g/vmlinuz"
    s.initrd = "/var/lib/libvirt/images/g/initrd.img"
    s.cmdline = "console=ttyS0"
    s.disks = [
        gs.DiskSpec(0, "disk", "/var/lib/libvirt/images/g/root.qcow2", "file", fmt=None, default_format="qcow2",
                    user={"pool": "default", "volume": "root.qcow2", "size": "1GiB"}),
        gs.DiskSpec(1, "disk", "/dev/vg0/data", "block", bus="scsi", default_format="raw", user={"path": "/dev/vg0/data"}),
        gs.DiskSpec(2, "cdrom", None, user={}),
    ]
    s.interfaces = [gs.NicSpec(0, "network", "lab"), gs.NicSpec(1, "bridge", "br0", "e1000e", "52:54:00:ab:cd:ef")]
    s.graphics = gs.GraphicsSpec("vnc", "127.0.0.1", "pw1")
    s.console_log = "/var/log/g-console.log"
    s.tags = ["web", "db"]
    s.seed = seed_spec()
    s.created_volumes = [("default", "root.qcow2", "/var/lib/libvirt/images/g/root.qcow2")]
    s.new_macs = new_macs()
    return s


def spec_nomac_same():
    """What the guest in qemu-nomac.xml was defined with: no MACs, no change."""
    s = gs.GuestSpec("golden-nomac")
    s.virt_type = "qemu"
    s.machine = "q35"
    s.memory = 256
    s.vcpus = 1
    s.firmware = "bios"
    s.disks = [
        gs.DiskSpec(0, "disk", "/var/lib/libvirt/images/golden/root.qcow2", default_format="qcow2", user={"path": "x"}),
        gs.DiskSpec(1, "cdrom", None, target="sda"),
    ]
    s.interfaces = [gs.NicSpec(0, "network", "kvxexp", "virtio"), gs.NicSpec(1, "network", "kvxexp", "e1000e")]
    s.graphics = gs.GraphicsSpec("vnc", "127.0.0.1", "oldpass1")
    s.machine_names = {"q35": "pc-q35-7.2"}
    s.new_macs = new_macs()
    return s


def spec_nomac_update():
    s = spec_nomac_same()
    s.memory = 384
    s.max_memory = 512
    s.vcpus = 2
    s.disks = [
        gs.DiskSpec(0, "disk", "/var/lib/libvirt/images/golden/root.qcow2", default_format="qcow2"),
        gs.DiskSpec(1, "disk", "/var/lib/libvirt/images/golden/data.qcow2", default_format="qcow2", user={"path": "data"}),
    ]
    s.interfaces = [gs.NicSpec(0, "network", "kvxexp", "rtl8139"), gs.NicSpec(1, "network", "other", "virtio")]
    s.graphics = gs.GraphicsSpec("vnc", None, "newpass1")
    s.console_log = "/var/log/golden.log"
    s.tags = ["x"]
    return s


def spec_nomac_xml():
    s = gs.GuestSpec("golden-nomac")
    s.xml = parse_xml(
        "<domain><name>ignored</name><features><hyperv><relaxed state='on'/></hyperv></features>"
        "<devices><watchdog model='i6300esb' action='reset'/>"
        "<interface><mac address='52:54:00:01:34:60'/><link state='down'/></interface>"
        "<graphics type='vnc' keymap='de'/></devices></domain>")
    s.memory = 256
    return s


def spec_nomac_uefi():
    s = gs.GuestSpec("golden-nomac")
    s.firmware = "uefi"
    s.secure_boot = False
    s.cpu_mode = "host-passthrough"
    s.kernel = "/boot/vmlinuz"
    s.graphics = gs.GraphicsSpec("none")
    return s


CASES = [
    ("new-full", None, spec_new_full,
     ["virt_type", "machine", "memory", "max_memory", "vcpus", "max_vcpus", "cpu_mode", "firmware", "secure_boot",
      "boot.kernel", "boot.initrd", "boot.cmdline", "disks[vda]", "disks[sda]", "disks[sdb]", "cloud_init.cdrom",
      "interfaces[0]", "interfaces[1]", "graphics.type", "graphics.listen", "graphics.password", "console_log", "tags",
      "cloud_init.user_data", "cloud_init.meta_data"]),
    ("nomac-same", NOMAC, spec_nomac_same, []),
    ("nomac-update", NOMAC, spec_nomac_update,
     ["max_memory", "memory", "max_vcpus", "vcpus", "disks[sda]", "disks[vdb]", "interfaces[52:54:00:01:34:60]",
      "interfaces[0].model", "interfaces[1]", "graphics.password", "console_log", "tags"]),
    ("nomac-xml", NOMAC, spec_nomac_xml,
     ["xml/features/hyperv", "xml/devices/watchdog[0]", "xml/devices/interface[52:54:00:01:34:60]/link",
      "xml/devices/graphics[0]@keymap"]),
    ("nomac-uefi", NOMAC, spec_nomac_uefi, ["cpu_mode", "firmware", "boot.kernel", "graphics.type"]),
]


def build(input_name, spec):
    actual = dm.Domain.from_xml(fixture(input_name)) if input_name else None
    return DomainBuilder(actual, spec).build()


@pytest.mark.parametrize("name,input_name,factory,paths", CASES, ids=[c[0] for c in CASES])
def test_golden(name, input_name, factory, paths):
    domain, changes = build(input_name, factory())
    assert [c.path for c in changes] == paths
    expected_file = os.path.join(FIXTURES, name + ".expected.xml")
    out = domain.to_xml()
    if os.environ.get("KVMOPS_REGOLD") == "1":
        with open(expected_file, "w") as fh:
            fh.write(out)
    assert canonical(parse_xml(out)) == canonical(parse_xml(fixture(name + ".expected.xml")))


def test_no_change_keeps_the_definition_byte_for_byte():
    domain, changes = build(NOMAC, spec_nomac_same())
    assert changes == []
    assert canonical(domain.node) == canonical(parse_xml(fixture(NOMAC)))


def test_secrets_are_marked():
    _domain, changes = build(NOMAC, spec_nomac_update())
    secret = [c.path for c in changes if c.secret]
    assert secret == ["graphics.password"]
    _domain, changes = build(None, spec_new_full())
    assert sorted(c.path for c in changes if c.secret) == ["cloud_init.user_data", "graphics.password"]


def test_change_kinds_say_how_a_running_guest_gets_them():
    _domain, changes = build(NOMAC, spec_nomac_update())
    kinds = dict((c.path, c.kind) for c in changes)
    assert kinds["memory"] == dm.MEMORY
    assert kinds["vcpus"] == dm.VCPUS
    assert kinds["max_memory"] == dm.CONFIG
    assert kinds["disks[vdb]"] == dm.DISK_ATTACH
    assert kinds["disks[sda]"] == dm.DISK_DETACH
    assert kinds["interfaces[1]"] == dm.NIC_ATTACH
    assert kinds["interfaces[52:54:00:01:34:60]"] == dm.NIC_DETACH
    assert kinds["interfaces[0].model"] == dm.CONFIG
    assert kinds["graphics.password"] == dm.GRAPHICS_PASSWORD
    assert kinds["tags"] == dm.METADATA


def test_interfaces_without_mac_match_by_position_within_their_source():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    # the second interface on kvxexp is the e1000e one; a new network comes last
    spec.interfaces = [gs.NicSpec(0, "network", "other"), gs.NicSpec(1, "network", "kvxexp"), gs.NicSpec(2, "network", "kvxexp")]
    builder = DomainBuilder(actual, spec)
    matched, unmatched = builder.match_interfaces()
    assert 0 not in matched
    assert matched[1].mac == "52:54:00:8f:9e:ee"
    assert matched[2].mac == "52:54:00:01:34:60"
    assert unmatched == []
    # a MAC claims its interface wherever it is in the list
    spec.interfaces = [gs.NicSpec(0, "network", "kvxexp"), gs.NicSpec(1, "network", "kvxexp", mac="52:54:00:8f:9e:ee")]
    matched, unmatched = DomainBuilder(actual, spec).match_interfaces()
    assert matched[1].mac == "52:54:00:8f:9e:ee"
    assert matched[0].mac == "52:54:00:01:34:60"


def test_disks_without_target_match_by_source_then_take_a_free_target():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    spec.disks = [gs.DiskSpec(0, "disk", "/new.qcow2"), gs.DiskSpec(1, "disk", "/var/lib/libvirt/images/golden/root.qcow2"),
                  gs.DiskSpec(2, "cdrom", None), gs.DiskSpec(3, "disk", "/other.img", bus="sata")]
    DomainBuilder(actual, spec).resolve_targets()
    assert [d.target for d in spec.disks] == ["vdb", "vda", "sda", "sdb"]


def test_memory_raises_the_maximum_only_when_needed():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    spec.memory = 128
    domain, changes = DomainBuilder(actual, spec).build()
    assert [(c.path, c.before, c.after) for c in changes] == [("memory", 256, 128)]
    assert (domain.memory_mib, domain.max_memory_mib) == (128, 256)
    spec.memory = 1024
    domain, changes = DomainBuilder(actual, spec).build()
    assert [(c.path, c.before, c.after) for c in changes] == [("max_memory", 256, 1024), ("memory", 256, 1024)]


def test_machine_aliases_compare_equal_and_chipset_changes_are_refused():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    spec.machine = "q35"
    spec.machine_names = {"q35": "pc-q35-7.2", "pc": "pc-i440fx-7.2"}
    assert DomainBuilder(actual, spec).build()[1] == []
    spec.machine = "pc-q35-7.1"
    assert [c.path for c in DomainBuilder(actual, spec).build()[1]] == ["machine"]
    spec.machine = "pc"
    with pytest.raises(InvalidArgument) as err:
        DomainBuilder(actual, spec).build()
    assert err.value.option == "machine"


def test_xml_option_loses_to_structured_options():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    spec.xml = parse_xml("<domain><memory unit='MiB'>1024</memory><currentMemory unit='MiB'>1024</currentMemory></domain>")
    spec.memory = 256
    spec.max_memory = 256
    _domain, changes = DomainBuilder(actual, spec).build()
    assert changes == []


def test_xml_option_refuses_another_uuid():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    spec.xml = parse_xml("<domain><uuid>11111111-2222-3333-4444-555555555555</uuid></domain>")
    with pytest.raises(InvalidArgument) as err:
        DomainBuilder(actual, spec).build()
    assert err.value.option == "xml"


def test_tags_compare_as_a_set():
    actual = dm.Domain.from_xml(fixture(NOMAC))
    spec = gs.GuestSpec("golden-nomac")
    spec.tags = ["b", "a"]
    domain, changes = DomainBuilder(actual, spec).build()
    assert [c.path for c in changes] == ["tags"]
    spec.tags = ["a", "b", "a"]
    assert DomainBuilder(domain, spec).build()[1] == []


@pytest.mark.parametrize("mac,expected", [
    ("52:54:00:AB:cd:01", "52:54:00:ab:cd:01"),
    ("52-54-00-ab-cd-02", "52:54:00:ab:cd:02"),
])
def test_mac_normalization(mac, expected):
    assert normalize_mac(mac) == expected


@pytest.mark.parametrize("mac", ["zz:54:00:ab:cd:01", "52:54:00:ab:cd", "01:00:5e:00:00:01", "52:54:00-ab:cd:01", ""])
def test_bad_macs(mac):
    with pytest.raises(InvalidArgument) as err:
        normalize_mac(mac, "interfaces[1].mac")
    assert err.value.msg.startswith("interfaces[1].mac: ")


def test_targets():
    assert dm.target_name("vd", 0) == "vda"
    assert dm.target_name("vd", 25) == "vdz"
    assert dm.target_name("sd", 26) == "sdaa"
    assert dm.target_index("sdaa") == 26
    assert dm.next_free_target("virtio", {"vda", "vdb"}) == "vdc"
    assert dm.next_free_target("ide", set()) == "hda"
    assert dm.cdrom_bus("pc-i440fx-7.2") == "ide"
    assert dm.cdrom_bus("pc-q35-7.2") == "sata"


def test_memory_units():
    dom = dm.Domain.from_xml("<domain><memory unit='GiB'>2</memory><currentMemory>1048576</currentMemory></domain>")
    assert dom.max_memory_mib == 2048
    assert dom.memory_mib == 1024
    dom = dm.Domain.from_xml("<domain><memory unit='KB'>1000000</memory></domain>")
    assert dom.max_memory_mib == 954


def test_metadata_round_trip_and_plain_form():
    dom = dm.Domain.from_xml(fixture(NOMAC))
    meta = dom.metadata()
    meta.tags = ["a", "b"]
    meta.add_volume("default", "v.qcow2", "/p/v.qcow2")
    meta.seed = seed_spec().record()
    meta.write(dom)
    again = dm.Domain.from_xml(dom.to_xml()).metadata()
    assert again.tags == ["a", "b"]
    assert again.volumes == [{"pool": "default", "name": "v.qcow2", "path": "/p/v.qcow2"}]
    assert again.seed["files"]["user-data"] == "u" * 64
    plain = etree.fromstring(again.to_plain_xml())
    assert plain.tag == "guest" and plain.find("tags/tag").text == "a"
    meta = again
    meta.tags = []
    meta.seed = None
    node = meta.node
    node.remove(node.find("{%s}created-volumes" % dm.NS))
    meta.write(dom)
    assert dom.find("./metadata") is None


# -- round trips on libvirt's test driver ---------------------------------------------------
@pytest.fixture
def conn():
    c = libvirt.open("test:///default")
    yield c
    for dom in c.listAllDomains(0):
        if dom.name().startswith("golden"):
            dom.undefine()
    c.close()


def _define_and_read(conn, xml):
    dom = conn.defineXML(xml)
    return dm.Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))


@pytest.mark.parametrize("name,input_name,factory,paths", CASES, ids=[c[0] for c in CASES])
def test_round_trip_on_the_test_driver(conn, name, input_name, factory, paths):
    """Define the input, apply the spec, define the result: applying the spec again changes nothing."""
    actual = _define_and_read(conn, fixture(input_name)) if input_name else None
    domain, changes = DomainBuilder(actual, factory()).build()
    assert [c.path for c in changes] == paths
    again = _define_and_read(conn, domain.to_xml())
    if actual is not None:
        assert again.uuid == actual.uuid  # updated in place, never redefined under a new identity
        for mac in ("52:54:00:8f:9e:ee",):
            if any(n.mac == mac for n in domain.interfaces):
                assert again.find_interface(mac) is not None
    spec = factory()
    if spec.disks:
        for d in spec.disks:
            d.target = d.target  # resolved again from the defined guest
    _domain2, changes2 = DomainBuilder(again, spec).build()
    assert [c.path for c in changes2] == []


def test_secure_boot_off_leaves_a_valid_firmware_element():
    spec = gs.GuestSpec("golden-sb")
    spec.memory = 128
    spec.firmware = "uefi"
    spec.secure_boot = True
    domain, _changes = DomainBuilder(None, spec).build()
    assert domain.secure_boot is True and domain.smm == "on"
    off = gs.GuestSpec("golden-sb")
    off.firmware = "uefi"
    off.secure_boot = False
    domain2, changes = DomainBuilder(dm.Domain.from_xml(domain.to_xml()), off).build()
    assert [c.path for c in changes] == ["secure_boot"]
    features = domain2.node.findall("./os/firmware/feature")
    assert [(f.get("name"), f.get("enabled")) for f in features] == [("secure-boot", "no")]


def test_uefi_without_secure_boot_pins_the_non_secure_firmware():
    spec = gs.GuestSpec("golden-uefi")
    spec.memory = 128
    spec.firmware = "uefi"
    domain, _changes = DomainBuilder(None, spec).build()
    assert domain.firmware_attr == "efi"
    assert domain.secure_boot_feature == "no"
    assert domain.acpi and domain.apic


def test_xml_option_compares_sizes_across_units():
    actual = dm.Domain.from_xml(fixture(NOMAC))  # <memory unit='KiB'>262144</memory>
    spec = gs.GuestSpec("golden-nomac")
    spec.xml = parse_xml("<domain><memory unit='MiB'>256</memory><currentMemory unit='GiB'>1</currentMemory></domain>")
    _domain, changes = DomainBuilder(actual, spec).build()
    assert [c.path for c in changes] == ["xml/currentMemory@unit", "xml/currentMemory"]


def test_new_guest_from_the_xml_option_keeps_its_devices():
    spec = gs.GuestSpec("golden-xml")
    spec.memory = 64
    spec.xml = parse_xml("<domain type='qemu'><name>ignored</name><devices>"
                         "<disk type='file' device='disk'><source file='/x.img'/><target dev='vdz' bus='virtio'/></disk>"
                         "</devices></domain>")
    spec.disks = [gs.DiskSpec(0, "disk", "/y.img", default_format="raw")]
    domain, changes = DomainBuilder(None, spec).build()
    assert domain.name == "golden-xml"
    assert domain.virt_type == "qemu"
    assert sorted(d.target for d in domain.disks) == ["vda", "vdz"]  # the xml's disk is kept, not treated as removed
    assert "disks[vda]" in [c.path for c in changes]


def test_a_seed_in_another_pool_replaces_the_media_of_the_same_cdrom():
    spec = gs.GuestSpec("golden-seed")
    spec.memory = 64
    spec.seed = seed_spec()
    first, _changes = DomainBuilder(None, spec).build()
    moved = gs.GuestSpec("golden-seed")
    moved.seed = gs.SeedSpec("other", "g-cidata.iso", "/srv/other/g-cidata.iso", "d" * 64, seed_spec().files)
    domain, changes = DomainBuilder(dm.Domain.from_xml(first.to_xml()), moved).build()
    assert [(c.path, c.kind) for c in changes] == [("cloud_init.cdrom", dm.DISK_MEDIA)]
    cdroms = [d for d in domain.disks if d.device == "cdrom"]
    assert [(d.target, d.path()) for d in cdroms] == [("sda", "/srv/other/g-cidata.iso")]
    assert domain.metadata().seed["path"] == "/srv/other/g-cidata.iso"
