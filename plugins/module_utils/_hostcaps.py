# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts about a virtualization host: hardware from /proc and /sys, the rest from libvirt.

Hardware probing reads files below a root directory (``/`` on a real host) so
that the parsers can be tested with recorded files from other machines.
"""

from __future__ import annotations

import os
import platform

# the capabilities XML is parsed in _caps_xml, which kvm_guest uses too
from ansible_collections.kvmops.virt.plugins.module_utils._caps_xml import parse_capabilities, parse_domain_capabilities
from ansible_collections.kvmops.virt.plugins.module_utils._client import HAS_LIBVIRT, is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._errors import ConnectionFailed, InvalidArgument, VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._xml import HAS_LXML, parse_xml

VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon", "CentaurHauls": "Centaur"}
KVM_ARCH_MODULES = ("kvm_intel", "kvm_amd", "kvm_pvm")
ARCH_64BIT = ("x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "riscv64", "loongarch64")


def missing_libraries():
    """The Python libraries the libvirt facts need that are not installed (names for pip)."""
    return [name for name, present in (("libvirt-python", HAS_LIBVIRT), ("lxml", HAS_LXML)) if not present]


class HardwareProbe:
    """Reads CPU, KVM and memory facts from the files below ``root``."""

    def __init__(self, root="/"):
        self.root = root

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, *parts):
        try:
            with open(self.path(*parts)) as f:
                return f.read()
        except (IOError, OSError):
            return None

    def cpuinfo(self):
        text = self.read("proc", "cpuinfo") or ""
        first = {}
        count = 0
        for line in text.splitlines():
            if ":" not in line:
                continue
            key, _sep, value = line.partition(":")
            key = key.strip()
            if key == "processor":
                count += 1
            if key not in first:
                first[key] = value.strip()
        flags = set(first.get("flags", "").split())
        vendor_id = first.get("vendor_id")
        if "vmx" in flags:
            extension = "vmx"
        elif "svm" in flags:
            extension = "svm"
        else:
            extension = None
        return {
            "vendor": VENDORS.get(vendor_id, vendor_id),
            "model": first.get("model name"),
            "count": count or None,
            "virt_extension": extension,
            "flags_64bit": "lm" in flags,
            "hypervisor_flag": "hypervisor" in flags,
        }

    def kvm_modules(self):
        """Loaded kvm modules: /proc/modules, plus /sys/module for built-in ones
        (and for containers, where /proc/modules is often hidden)."""
        text = self.read("proc", "modules") or ""
        names = set(line.split()[0] for line in text.splitlines() if line.strip())
        try:
            names.update(os.listdir(self.path("sys", "module")))
        except OSError:
            pass
        return sorted(n for n in names if n == "kvm" or n.startswith("kvm_"))

    def nested(self, modules):
        """True/False from the arch module's ``nested`` parameter, None when unknown."""
        for module in KVM_ARCH_MODULES:
            if module not in modules:
                continue
            value = self.read("sys", "module", module, "parameters", "nested")
            if value is None:
                continue
            return value.strip().upper() in ("Y", "1")
        return None

    def kvm_device(self):
        """(exists and opens, reason) for /dev/kvm."""
        dev = self.path("dev", "kvm")
        if not os.path.exists(dev):
            return False, "/dev/kvm does not exist"
        try:
            fd = os.open(dev, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            return False, "/dev/kvm exists but cannot be opened: %s" % e.strerror
        os.close(fd)
        return True, "/dev/kvm exists and opens read-write"

    def memory_mb(self):
        text = self.read("proc", "meminfo") or ""
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
        return None


class RemoteProbe:
    """Hardware facts of the host behind a remote URI, from libvirt alone.

    Node info (CPU count, memory) and the host CPU of the capabilities XML
    (vendor, model, features); what libvirt does not tell (loaded kernel
    modules, nested virtualization) is None. Never reads this machine's files.
    """

    def __init__(self, client):
        self.client = client
        self._caps = None

    def _host_cpu(self):
        if self._caps is None:
            self._caps = parse_xml(self.client.capabilities_xml(), "capabilities")
        return self._caps.find("./host/cpu")

    def arch(self):
        cpu = self._host_cpu()
        return cpu.findtext("./arch") if cpu is not None else None

    def cpuinfo(self):
        info = self.client.call("reading node info", self.client.conn.getInfo)
        cpu = self._host_cpu()
        features = set(f.get("name") for f in cpu.findall("./feature")) if cpu is not None else set()
        extension = "vmx" if "vmx" in features else "svm" if "svm" in features else None
        arch = self.arch()
        return {
            "vendor": cpu.findtext("./vendor") if cpu is not None else None,
            "model": cpu.findtext("./model") if cpu is not None else None,
            "count": int(info[2]) if info and info[2] else None,
            "virt_extension": extension,
            "flags_64bit": arch in ARCH_64BIT or "lm" in features,
            "memory_mb": int(info[1]) if info and info[1] else None,
        }

    def free_disk_mb(self, path):
        """Free space of the active storage pool whose target is ``path``: (MiB or None, path)."""
        with self.client.errors("listing storage pools"):
            pools = self.client.conn.listAllStoragePools(0)
        for pool in pools:
            try:
                target = parse_xml(pool.XMLDesc(0), "storage pool").findtext("./target/path")
                if target and target.rstrip("/") == path.rstrip("/") and pool.isActive():
                    return pool.info()[3] // (1024 * 1024), path
            except Exception:  # pylint: disable=broad-except  # a pool that vanished or fails is not a verdict
                continue
        return None, path


def free_disk_mb(path):
    """Free space of ``path`` or its nearest existing parent, and that parent."""
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None, probe
    return st.f_bavail * st.f_frsize // (1024 * 1024), probe


def classify(cpu, kvm_ok, domain_types, libvirt_reachable):
    """``hardware``, ``emulation`` or ``none`` and the reason, honestly.

    Hardware-assisted means the CPU exposes vmx/svm *and* /dev/kvm opens.
    A /dev/kvm provided without those extensions (for example by kvm_pvm,
    a software KVM backend used for nesting in clouds) is not hardware
    assistance, so such a host is classified as emulation.
    """
    ext = cpu.get("virt_extension")
    qemu_ok = "qemu" in domain_types if libvirt_reachable else None
    if ext and kvm_ok:
        return "hardware", "the CPU exposes %s and /dev/kvm opens: KVM hardware-assisted guests are possible" % ext
    if kvm_ok and not ext:
        reason = ("/dev/kvm opens but the CPU flags show no vmx or svm, so KVM here is not hardware-assisted "
                  "(it is provided by a software backend or a hypervisor that hides the extensions); "
                  "use virt_type qemu (TCG software emulation)")
    elif ext and not kvm_ok:
        reason = "the CPU exposes %s but /dev/kvm is not usable (load kvm_intel/kvm_amd or check permissions); only emulation works" % ext
    else:
        reason = "the CPU exposes no vmx or svm and /dev/kvm is not usable; only QEMU TCG software emulation is possible"
    if qemu_ok is False:
        return "none", reason + "; libvirt offers no qemu domain type either"
    return "emulation", reason


class HostCapabilities:
    """Gathers the ``kvm_host`` facts. Not a Manager: it never changes anything."""

    def __init__(self, client, probe=None, image_dir="/var/lib/libvirt/images",
                 min_memory_mb=2048, min_disk_mb=10240, allow_emulation=False, host_arch=None):
        self.client = client
        self.probe = probe or HardwareProbe()
        self.image_dir = image_dir
        self.min_memory_mb = min_memory_mb
        self.min_disk_mb = min_disk_mb
        self.allow_emulation = allow_emulation
        self.host_arch = host_arch or platform.machine()
        self.warnings = []
        self.missing = []
        for option, value in (("min_memory_mb", min_memory_mb), ("min_disk_mb", min_disk_mb)):
            if value is not None and value < 0:
                raise InvalidArgument(option, "must not be negative, got %d" % value)
        if not image_dir or not image_dir.startswith("/"):
            raise InvalidArgument("image_dir", "must be an absolute path, got '%s'" % image_dir)

    @property
    def remote(self):
        return not is_local_uri(self.client.uri)

    def libvirt_facts(self):
        """libvirt facts or None when a local daemon is not running (or the libraries are missing)."""
        missing = missing_libraries()
        if missing and not self.remote:
            self.warnings.append(
                "%s not installed on this host: returning hardware facts only, libvirt facts are null"
                % " and ".join(missing))
            self.missing = missing
            return None
        try:
            self.client.open()
        except ConnectionFailed as e:
            if is_local_uri(self.client.uri) and e.details.get("daemon_unreachable"):
                self.warnings.append(
                    "libvirt is not reachable at %s (%s): returning hardware facts only, libvirt facts are null"
                    % (self.client.uri, e.msg))
                return None
            raise
        version, hv_type, hv_version = self.client.versions()
        caps = parse_capabilities(self.client.capabilities_xml(), self.host_arch)
        domcaps = None
        for vtype in ("kvm", "qemu"):
            if vtype not in caps["domain_types"]:
                continue
            try:
                # q35 is where UEFI secure boot is offered; fall back to the default machine.
                xml = self.client.domain_capabilities_xml(arch=caps["arch"], machine="q35", virttype=vtype)
            except VirtError:
                xml = self.client.domain_capabilities_xml(arch=caps["arch"], virttype=vtype)
            domcaps = parse_domain_capabilities(xml)
            break
        return {"version": version, "hypervisor": hv_type, "hypervisor_version": hv_version,
                "caps": caps, "domcaps": domcaps}

    def gather(self):
        lv = self.libvirt_facts()
        domain_types = lv["caps"]["domain_types"] if lv else []
        if self.remote:
            # The host behind the URI, as libvirt describes it; never this machine's files.
            remote = RemoteProbe(self.client)
            cpu = remote.cpuinfo()
            arch = lv["caps"]["arch"] or remote.arch()
            modules = None
            nested = None
            kvm_ok = "kvm" in domain_types
            kvm_detail = "libvirt at %s %s the kvm domain type (it checks /dev/kvm there)" % (
                self.client.uri, "offers" if kvm_ok else "does not offer")
            memory_mb = cpu["memory_mb"]
            free_mb, disk_path = remote.free_disk_mb(self.image_dir)
        else:
            cpu = self.probe.cpuinfo()
            arch = self.host_arch
            modules = self.probe.kvm_modules()
            nested = self.probe.nested(modules)
            kvm_ok, kvm_detail = self.probe.kvm_device()
            memory_mb = self.probe.memory_mb()
            free_mb, disk_path = free_disk_mb(self.image_dir)
        cpu_facts = {
            "vendor": cpu["vendor"],
            "model": cpu["model"],
            "count": cpu["count"],
            "virt_extension": cpu["virt_extension"],
            "nested": nested,
            "arch": arch,
            "flags_64bit": cpu["flags_64bit"],
        }
        if not self.remote:
            kvm_detail = self._kvm_device_hint(kvm_detail)
        domcaps = (lv or {}).get("domcaps") or {}
        virtualization, reason = classify(cpu, kvm_ok, domain_types, lv is not None)
        facts = {
            "virtualization": virtualization,
            "virtualization_reason": reason,
            "cpu": cpu_facts,
            "kvm": {"device": kvm_ok, "device_detail": kvm_detail, "modules": modules},
            "memory_mb": memory_mb,
            "disk": {"path": disk_path, "free_mb": free_mb},
            "libvirt": {
                "version": lv["version"] if lv else None,
                "hypervisor": lv["hypervisor"] if lv else None,
                "hypervisor_version": lv["hypervisor_version"] if lv else None,
                "uri": self.client.uri if lv else None,
            },
            "domain_types": domain_types if lv else None,
            "firmware": {
                "uefi": domcaps["firmware"]["uefi"] if domcaps else None,
                "secure_boot": domcaps["firmware"]["secure_boot"] if domcaps else None,
                "loaders": domcaps["firmware"]["loaders"] if domcaps else None,
            },
            "paravirt": {"virtio": domcaps.get("virtio") if domcaps else None},
            "machine_types": lv["caps"]["machine_types"] if lv else None,
            "machine_types_default": domcaps.get("machine") if domcaps else None,
            "emulator": domcaps.get("emulator") if domcaps else None,
            "cpu_modes": domcaps.get("cpu_modes") if domcaps else None,
            "cpu_models": domcaps.get("cpu_models") if domcaps else None,
            "disk_buses": domcaps.get("disk_buses") if domcaps else None,
            "tpm": domcaps.get("tpm") if domcaps else None,
            "max_vcpus": domcaps.get("max_vcpus") if domcaps else None,
        }
        facts["requirements"] = self.requirements(facts, lv is not None)
        facts["requirements_met"] = all(r["passed"] for r in facts["requirements"])
        return facts

    def _kvm_device_hint(self, detail):
        """Name the fix for a /dev/kvm that exists but only root may open (no udev rule applied)."""
        try:
            st = os.stat(self.probe.path("dev", "kvm"))
        except OSError:
            return detail
        if st.st_uid == 0 and st.st_gid == 0 and (st.st_mode & 0o777) == 0o600:
            return (detail + "; /dev/kvm is root:root 0600, as on a host without udev: make it root:kvm 0660 as "
                    "the distribution's udev rule does (kvmops.virt.kvm_host does), or libvirt treats KVM as unusable")
        return detail

    def requirements(self, facts, reachable):
        cpu = facts["cpu"]
        reqs = []

        def add(name, passed, detail):
            reqs.append({"name": name, "passed": bool(passed), "detail": detail})

        add("64-bit CPU", cpu["flags_64bit"] or cpu["arch"] in ("x86_64", "aarch64", "ppc64le", "s390x"),
            "CPU flag lm present" if cpu["flags_64bit"] else "architecture %s" % cpu["arch"])
        hardware = facts["virtualization"] == "hardware"
        if hardware:
            add("hardware virtualization", True, facts["virtualization_reason"])
        elif self.allow_emulation and facts["virtualization"] == "emulation":
            add("hardware virtualization", True,
                "not available, accepted because emulation is allowed: " + facts["virtualization_reason"])
        else:
            add("hardware virtualization", False, facts["virtualization_reason"])
        kvm = facts["kvm"]
        if kvm["modules"] is None:
            modules_detail = ""  # a remote host: libvirt does not tell
        elif kvm["modules"]:
            modules_detail = "; loaded modules: %s" % ", ".join(kvm["modules"])
        else:
            modules_detail = "; no kvm modules loaded"
        add("KVM device", kvm["device"] or (self.allow_emulation and not hardware), kvm["device_detail"] + modules_detail)
        mem = facts["memory_mb"]
        add("memory", mem is not None and mem >= self.min_memory_mb,
            "%s MiB total, at least %d MiB required" % (mem, self.min_memory_mb))
        disk = facts["disk"]
        if disk["free_mb"] is None and self.remote:
            add("free disk", False, "unknown: libvirt at %s has no active storage pool at %s, at least %d MiB required"
                % (self.client.uri, disk["path"], self.min_disk_mb))
        else:
            add("free disk", disk["free_mb"] is not None and disk["free_mb"] >= self.min_disk_mb,
                "%s MiB free at %s, at least %d MiB required" % (disk["free_mb"], disk["path"], self.min_disk_mb))
        if reachable:
            add("libvirt reachable", True, "libvirt %s, %s %s at %s" % (
                facts["libvirt"]["version"], facts["libvirt"]["hypervisor"],
                facts["libvirt"]["hypervisor_version"], facts["libvirt"]["uri"]))
            usable = [t for t in ("kvm", "qemu") if t in (facts["domain_types"] or [])]
            add("guest domain types", bool(usable), "libvirt offers: %s" % (", ".join(facts["domain_types"]) or "none"))
        elif self.missing:
            add("libvirt reachable", False, "%s not installed on this host: install the libvirt Python bindings "
                "(python3-libvirt, python3-lxml) to check libvirt at %s" % (" and ".join(self.missing), self.client.uri))
        else:
            add("libvirt reachable", False, "libvirt is not reachable at %s: start libvirtd (or virtqemud)" % self.client.uri)
        return reqs
