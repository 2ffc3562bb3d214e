# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_capabilities through Ansible's module execution, checked against this host."""
from __future__ import annotations

import os


def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_facts_match_this_host(run_module):
    result = run_module("kvmops.virt.host_capabilities")
    assert not result.get("failed"), result.get("msg")
    facts = result["ansible_facts"]["kvm_host"]
    flags = _cpu_flags()
    expected_ext = "vmx" if "vmx" in flags else "svm" if "svm" in flags else None
    assert facts["cpu"]["virt_extension"] == expected_ext
    assert facts["cpu"]["count"] == os.cpu_count()
    assert facts["kvm"]["device"] == os.path.exists("/dev/kvm")
    assert facts["libvirt"]["uri"] == "qemu:///system"
    expected = "hardware" if expected_ext and facts["kvm"]["device"] else "emulation"
    assert facts["virtualization"] == expected
    assert result["changed"] is False


def test_check_mode_is_the_same(run_module):
    real = run_module("kvmops.virt.host_capabilities")
    check = run_module("kvmops.virt.host_capabilities", check=True)
    assert check["changed"] is False
    check_facts = check["ansible_facts"]["kvm_host"]
    real_facts = real["ansible_facts"]["kvm_host"]
    assert check_facts["virtualization"] == real_facts["virtualization"]
    # Free disk can move between two runs; names and verdicts cannot.
    assert [(r["name"], r["passed"]) for r in check_facts["requirements"]] == \
        [(r["name"], r["passed"]) for r in real_facts["requirements"]]


def test_bad_uri_is_a_clear_failure(run_module):
    result = run_module("kvmops.virt.host_capabilities", uri="nonsense+driver:///x")
    assert result.get("failed") is True
    assert "nonsense+driver:///x" in result["msg"]
    assert "Traceback" not in str(result)
