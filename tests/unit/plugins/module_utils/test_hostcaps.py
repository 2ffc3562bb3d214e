# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_capabilities parsers against recorded files of three kinds of host,
and the gatherer against libvirt's in-process test:///default driver."""
from __future__ import annotations

import os

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient
from ansible_collections.kvmops.virt.plugins.module_utils._errors import ConnectionFailed, InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._hostcaps import (
    HardwareProbe,
    HostCapabilities,
    classify,
    parse_capabilities,
    parse_domain_capabilities,
)

HOSTS = os.path.join(os.path.dirname(__file__), "fixtures", "hosts")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def host(name, filename=None):
    root = os.path.join(HOSTS, name)
    if filename is None:
        return root
    with open(os.path.join(root, filename)) as f:
        return f.read()


def test_intel_vmx_host():
    probe = HardwareProbe(host("intel_vmx"))
    cpu = probe.cpuinfo()
    assert cpu["vendor"] == "Intel"
    assert cpu["model"].startswith("Intel(R) Xeon(R) Gold 6230")
    assert cpu["count"] == 4
    assert cpu["virt_extension"] == "vmx"
    assert cpu["flags_64bit"] is True
    modules = probe.kvm_modules()
    assert modules == ["kvm", "kvm_intel"]
    assert probe.nested(modules) is False
    assert probe.kvm_device()[0] is True
    assert probe.memory_mb() == 64217
    caps = parse_capabilities(host("intel_vmx", "capabilities.xml"), "x86_64")
    assert caps["domain_types"] == ["qemu", "kvm"]
    dom = parse_domain_capabilities(host("intel_vmx", "domcaps.xml"))
    assert dom["firmware"]["uefi"] is True
    assert dom["firmware"]["secure_boot"] is True
    assert dom["virtio"] is True
    assert dom["tpm"] is True
    assert "host-passthrough" in dom["cpu_modes"]
    assert dom["cpu_models"] == ["qemu64"]
    assert classify(cpu, True, caps["domain_types"], True)[0] == "hardware"


def test_amd_svm_host_with_nested_enabled():
    probe = HardwareProbe(host("amd_svm_nested"))
    cpu = probe.cpuinfo()
    assert (cpu["vendor"], cpu["virt_extension"], cpu["count"]) == ("AMD", "svm", 2)
    modules = probe.kvm_modules()
    assert modules == ["kvm", "kvm_amd"]
    assert probe.nested(modules) is True
    dom = parse_domain_capabilities(host("amd_svm_nested", "domcaps.xml"))
    assert dom["firmware"] == {"uefi": True, "secure_boot": False, "loaders": dom["firmware"]["loaders"]}
    assert classify(cpu, True, ["qemu", "kvm"], True)[0] == "hardware"


def test_host_without_extensions_or_kvm_device():
    probe = HardwareProbe(host("no_ext"))
    cpu = probe.cpuinfo()
    assert cpu["virt_extension"] is None
    assert probe.kvm_modules() == []
    assert probe.nested([]) is None
    ok, detail = probe.kvm_device()
    assert ok is False and "does not exist" in detail
    caps = parse_capabilities(host("no_ext", "capabilities.xml"), "x86_64")
    assert caps["domain_types"] == ["qemu"]
    dom = parse_domain_capabilities(host("no_ext", "domcaps.xml"))
    assert dom["firmware"]["uefi"] is False and dom["firmware"]["secure_boot"] is False
    verdict, reason = classify(cpu, False, caps["domain_types"], True)
    assert verdict == "emulation"
    assert "no vmx or svm" in reason
    assert classify(cpu, False, [], True)[0] == "none"


def test_kvm_device_without_cpu_extension_is_not_hardware_assisted():
    verdict, reason = classify({"virt_extension": None}, True, ["qemu", "kvm"], True)
    assert verdict == "emulation"
    assert "/dev/kvm opens but the CPU flags show no vmx or svm" in reason


def test_live_capabilities_of_this_kind_of_machine():
    with open(os.path.join(FIXTURES, "live_capabilities.xml")) as f:
        caps = parse_capabilities(f.read(), "x86_64")
    assert "qemu" in caps["domain_types"]
    assert {"pc", "q35", "pc-q35-7.2", "pc-i440fx-7.2"} <= set(caps["machine_types"])
    assert caps["machine_types"] == sorted(set(caps["machine_types"]))
    with open(os.path.join(FIXTURES, "live_domcaps_q35.xml")) as f:
        dom = parse_domain_capabilities(f.read())
    assert dom["machine"].startswith("pc-q35")
    assert dom["firmware"]["uefi"] is True


def test_gather_with_the_test_driver_and_recorded_hardware():
    with LibvirtClient("test:///default") as client:
        facts = HostCapabilities(client, probe=HardwareProbe(host("intel_vmx")), min_disk_mb=1).gather()
    assert facts["cpu"]["virt_extension"] == "vmx"
    assert facts["libvirt"]["uri"] == "test:///default"
    assert facts["libvirt"]["hypervisor"] == "TEST"
    names = [r["name"] for r in facts["requirements"]]
    assert names[:6] == ["64-bit CPU", "hardware virtualization", "KVM device", "memory", "free disk", "libvirt reachable"]
    assert all(set(r) == {"name", "passed", "detail"} for r in facts["requirements"])
    assert facts["requirements_met"] is all(r["passed"] for r in facts["requirements"])


def test_unreachable_local_daemon_gives_hardware_facts_and_a_warning():
    client = LibvirtClient("qemu:///system?socket=/nonexistent/kvmops/libvirt-sock")
    gatherer = HostCapabilities(client, probe=HardwareProbe(host("amd_svm_nested")))
    facts = gatherer.gather()
    assert facts["cpu"]["vendor"] == "AMD"
    assert facts["libvirt"] == {"version": None, "hypervisor": None, "hypervisor_version": None, "uri": None}
    assert facts["domain_types"] is None
    assert facts["firmware"]["uefi"] is None
    assert gatherer.warnings and "not reachable" in gatherer.warnings[0]
    assert facts["requirements_met"] is False


def test_malformed_uri_is_an_error_naming_the_uri():
    client = LibvirtClient("bogus-driver:///nowhere")
    with pytest.raises(ConnectionFailed) as err:
        HostCapabilities(client, probe=HardwareProbe(host("no_ext"))).gather()
    assert "bogus-driver:///nowhere" in err.value.msg
    assert err.value.option == "uri"


@pytest.mark.parametrize("kwargs, option", [
    ({"min_memory_mb": -1}, "min_memory_mb"),
    ({"min_disk_mb": -10}, "min_disk_mb"),
    ({"image_dir": "images/here"}, "image_dir"),
])
def test_bad_thresholds_are_refused_naming_the_option(kwargs, option):
    with pytest.raises(InvalidArgument) as e:
        HostCapabilities(LibvirtClient("test:///default"), probe=HardwareProbe(host("intel_vmx")), **kwargs)
    assert e.value.msg.startswith(option + ": ")


def test_without_libvirt_python_or_lxml_hardware_facts_only(monkeypatch):
    """A fresh host: the bindings are missing; no connection is attempted."""
    from ansible_collections.kvmops.virt.plugins.module_utils import _hostcaps

    monkeypatch.setattr(_hostcaps, "HAS_LIBVIRT", False)
    monkeypatch.setattr(_hostcaps, "HAS_LXML", False)
    client = LibvirtClient("qemu:///system")
    gatherer = HostCapabilities(client, probe=HardwareProbe(host("intel_vmx")))
    facts = gatherer.gather()
    assert client._conn is None
    assert facts["cpu"]["virt_extension"] == "vmx"
    assert facts["libvirt"] == {"version": None, "hypervisor": None, "hypervisor_version": None, "uri": None}
    assert facts["domain_types"] is None
    assert gatherer.warnings == [
        "libvirt-python and lxml not installed on this host: returning hardware facts only, libvirt facts are null"]
    reachable = [r for r in facts["requirements"] if r["name"] == "libvirt reachable"][0]
    assert reachable["passed"] is False and "libvirt-python and lxml not installed" in reachable["detail"]


def test_remote_uri_describes_the_host_behind_it_not_this_machine(monkeypatch):
    """A remote URI: libvirt's node info and capabilities, never the local probe.
    test:///default stands in for the remote daemon (its node: 16 CPUs, 8 GiB)."""
    from ansible_collections.kvmops.virt.plugins.module_utils import _hostcaps

    class Untouchable(HardwareProbe):
        def read(self, *parts):
            raise AssertionError("read this machine's %s for a remote URI" % "/".join(parts))

    monkeypatch.setattr(_hostcaps, "is_local_uri", lambda uri: False)
    with LibvirtClient("test:///default") as client:
        info = client.conn.getInfo()
        facts = HostCapabilities(client, probe=Untouchable("/"), min_disk_mb=1).gather()
    assert facts["cpu"]["count"] == info[2]
    assert facts["memory_mb"] == info[1]
    assert facts["kvm"]["modules"] is None
    assert facts["cpu"]["nested"] is None
    assert facts["libvirt"]["uri"] == "test:///default"
    names = [r["name"] for r in facts["requirements"]]
    assert "free disk" in names and "KVM device" in names
