# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of ``kvm_guest``: validate, resolve, plan, apply.

``plan()`` validates every option first (an :class:`InvalidArgument` names
the option), then reads the guest, the pools, volumes and networks it names,
builds the desired definition on top of the existing one
(:class:`_domain.DomainBuilder`) and records the steps. Nothing changes on
the host before ``apply()``, which check mode skips: the diff of a check run
is the diff of the real run.

Changes reach a running guest in two ways: the persistent definition is
always rewritten with ``defineXML`` (never undefine + define), and what QEMU
can change live is applied to the running guest as well (memory and vCPUs
within their maximums, hot-plug of virtio/SCSI disks and of interfaces, cdrom
media, the graphics password, tags). Everything else waits for the next
boot and is reported with ``reboot_required`` and ``pending_changes``, which
are computed by comparing the user's options with the *live* definition, so
they stay true until the guest is powered off and on again.
"""

from __future__ import annotations

import os
import random
import re
import time

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils._domain_builder import DomainBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_devices import interfaces_needing_mac
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    InvalidArgument,
    OperationFailed,
    VirtError,
)
from ansible_collections.kvmops.virt.plugins.module_utils._client import is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._pool import (
    FILE_POOL_TYPES,
    PoolXML,
    check_name,
    missing_target_path,
    refresh_pool,
)
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size, parse_memory_mib, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils._xml import find_path, parse_xml, to_string

try:
    import libvirt
except ImportError:  # pragma: no cover - reported by run_module
    libvirt = None


# Every module run compiles the module_utils it imports from the AnsiballZ zip
# (no bytecode cache there); that compile is most of a task's cost above
# Ansible's own (docs/benchmarks.md). The seed and volume helpers are imported
# on first use, so guests without cloud-init or disks do not pay for them.
def _ci():
    from ansible_collections.kvmops.virt.plugins.module_utils import _cloudinit  # pylint: disable=import-outside-toplevel

    return _cloudinit


def _vol():
    from ansible_collections.kvmops.virt.plugins.module_utils import _volume  # pylint: disable=import-outside-toplevel

    return _volume


DISK_FORMATS = ("raw", "qcow2", "qed", "vmdk", "vdi", "vpc", "vhdx", "bochs", "cloop", "dmg", "iso")
SEED_SUFFIX = "-cidata.iso"
SEED_FILE_OPTIONS = (("user-data", "user_data"), ("meta-data", "meta_data"), ("network-config", "network_config"))
POLL = 0.5
DETACH_TIMEOUT = 30
ACPI_RESEND = 10


def _flag(name, default=0):
    return getattr(libvirt, name, default) if libvirt is not None else default


# graphics.listen: an IPv4/IPv6 address or a host name (what libvirt's schema accepts).
_LISTEN_RE = re.compile(r"^(?:[0-9A-Fa-f:.]+|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))$")


class CreatedVolume:
    """A volume this task creates: a disk from ``size``."""

    def __init__(self, option, pool, pool_name, name, xml, path, size, backing=None):
        self.option = option
        self.pool = pool
        self.pool_name = pool_name
        self.name = name
        self.xml = xml
        self.path = path
        self.size = size
        self.backing = backing
        self.vol = None


class GuestManager(Manager):
    """Plans and applies ``kvmops.virt.kvm_guest``."""

    def __init__(self, module, client):
        super().__init__(module, client)
        self.name = self.params["name"]
        self.state = self.params["state"]
        self.dom = None
        self.actual = None        # persistent definition (Domain)
        self.live = None          # live definition of an active guest (Domain)
        self.cur_state = "absent"
        self.final = None         # the desired persistent definition
        self.changes = []
        self.spec = None
        self.to_create = []       # CreatedVolume
        self.seed_plan = None
        self.created_now = []     # volumes created by apply(), for rollback
        self.defined = False
        self.ips = {}
        self.predicted_state = None
        self.predicted_autostart = None
        self.live_kinds = set()
        self._hv_type = None
        self._caps = None
        self._volume_paths = {}
        self.persistent = False
        self.autostart = False
        self.started_at = None
        self.memory = None
        self.max_memory = None
        self.xml = None

    # =====================================================================
    # input
    # =====================================================================
    def _validate(self):
        """Check every option before anything is read or changed."""
        p = self.params
        check_name(self.name, "name", what="guest")
        if len(self.name) > 200:
            raise InvalidArgument("name", "a guest name must be at most 200 characters long")
        if p["wait_timeout"] < 0:
            raise InvalidArgument("wait_timeout", "must not be negative, got %d" % p["wait_timeout"])
        if self.state == "absent":
            return
        if p.get("remove_storage"):
            self.warnings.append("remove_storage applies only with state: absent; it was ignored")
        self.memory = parse_memory_mib(p.get("memory"), "memory")
        self.max_memory = parse_memory_mib(p.get("max_memory"), "max_memory")
        if self.memory is not None and self.max_memory is not None and self.memory > self.max_memory:
            raise InvalidArgument("memory", "%d MiB must not exceed max_memory (%d MiB)" % (self.memory, self.max_memory))
        for key in ("vcpus", "max_vcpus"):
            if p.get(key) is not None and p[key] < 1:
                raise InvalidArgument(key, "must be at least 1, got %d" % p[key])
        if p.get("vcpus") and p.get("max_vcpus") and p["vcpus"] > p["max_vcpus"]:
            raise InvalidArgument("vcpus", "%d must not exceed max_vcpus (%d)" % (p["vcpus"], p["max_vcpus"]))
        if p.get("secure_boot") and p.get("firmware") != "uefi":
            raise InvalidArgument("secure_boot", "requires firmware: uefi")
        if p.get("secure_boot") and p.get("machine") and dm.machine_family(p["machine"]) == "i440fx":
            raise InvalidArgument("secure_boot", "requires a q35 machine type (SMM), not '%s'" % p["machine"])
        if p.get("cpu_model") is not None and p.get("cpu_mode") not in (None, "custom"):
            raise InvalidArgument("cpu_model", "applies only with cpu_mode: custom, not '%s'" % p["cpu_mode"])
        if p.get("machine") is not None and not p["machine"].strip():
            raise InvalidArgument("machine", "must not be empty")
        self._validate_boot()
        if p.get("console_log") is not None and not p["console_log"].startswith("/"):
            raise InvalidArgument("console_log", "must be an absolute path, got '%s'" % p["console_log"])
        self._validate_disks()
        self._validate_interfaces()
        self._validate_graphics()
        for i, tag in enumerate(p.get("tags") or []):
            if not tag or not tag.strip() or any(ord(c) < 32 for c in tag):
                raise InvalidArgument("tags[%d]" % i, "tags must be non-empty text without control characters")
        self.xml = None
        if p.get("xml"):
            try:
                node = parse_xml(p["xml"], what="the xml option")
            except VirtError as e:
                raise InvalidArgument("xml", e.msg)
            if node.tag != "domain":
                raise InvalidArgument("xml", "must be a <domain> element, got <%s>" % node.tag)
            self.xml = node
        if p.get("wait_for_ip") and self.state != "running":
            raise InvalidArgument("wait_for_ip", "applies only with state: running, not '%s'" % self.state)

    def _validate_boot(self):
        boot = self.params.get("boot") or {}
        kernel = boot.get("kernel")
        for key in ("kernel", "initrd"):
            value = boot.get(key)
            if value and not value.startswith("/"):
                raise InvalidArgument("boot.%s" % key, "must be an absolute path on the host, got '%s'" % value)
            if value and is_local_uri(self.client.uri) and not os.path.exists(value):
                raise InvalidArgument("boot.%s" % key, "'%s' does not exist on the host" % value)
        if kernel == "" and (boot.get("initrd") or boot.get("cmdline")):
            raise InvalidArgument("boot.kernel", "an empty kernel removes direct kernel boot; initrd and cmdline cannot be set with it")

    def _validate_disks(self):
        disks = self.params.get("disks")
        if disks is None:
            return
        targets = {}
        sources = {}
        for i, d in enumerate(disks):
            opt = "disks[%d]" % i
            device = d.get("device") or "disk"
            if d.get("volume") is not None:
                _vol().check_volume_name(d["volume"], opt + ".volume")
            if d.get("pool") is not None:
                check_name(d["pool"], opt + ".pool", what="pool")
            if d.get("path") is not None:
                if not d["path"].startswith("/"):
                    raise InvalidArgument(opt + ".path", "must be an absolute path, got '%s'" % d["path"])
            if d.get("pool") is None and d.get("path") is None and device != "cdrom":
                raise InvalidArgument(opt, "a disk needs pool and volume, or path")
            size = parse_size(d.get("size"), opt + ".size", default_unit="B")
            if size is not None and size <= 0:
                raise InvalidArgument(opt + ".size", "must be greater than zero")
            if device == "cdrom" and (d.get("size") is not None or d.get("backing_volume")):
                raise InvalidArgument(opt + ".size" if d.get("size") is not None else opt + ".backing_volume",
                                      "a cdrom is never created; name an existing image")
            if device == "cdrom" and d.get("bus") == "virtio":
                raise InvalidArgument(opt + ".bus", "a cdrom cannot be on the virtio bus; use sata, scsi or ide")
            if d.get("backing_volume") and d.get("format") not in (None, "qcow2"):
                raise InvalidArgument(opt + ".format", "an overlay on backing_volume must be qcow2, got '%s'" % d["format"])
            target = d.get("target")
            if target is not None:
                if not dm.TARGET_RE.match(target):
                    raise InvalidArgument(opt + ".target", "'%s' is not a disk target name such as vda, sdb or hdc" % target)
                if target in targets:
                    raise InvalidArgument(opt + ".target", "duplicate target '%s' (also disks[%d])" % (target, targets[target]))
                targets[target] = i
            key = ("vol", d["pool"], d["volume"]) if d.get("pool") else (("path", os.path.normpath(d["path"])) if d.get("path") else None)
            if key is not None:
                if key in sources:
                    raise InvalidArgument(opt, "names the same %s as disks[%d]" % ("volume" if key[0] == "vol" else "path", sources[key]))
                sources[key] = i

    def _validate_interfaces(self):
        nics = self.params.get("interfaces")
        if nics is None:
            return
        macs = {}
        for i, n in enumerate(nics):
            opt = "interfaces[%d]" % i
            if n.get("mac") is not None:
                mac = dm.normalize_mac(n["mac"], opt + ".mac")
                if mac in macs:
                    raise InvalidArgument(opt + ".mac", "duplicate MAC address %s (also interfaces[%d])" % (mac, macs[mac]))
                macs[mac] = i
            model = n.get("model")
            if model is not None and not model.replace("-", "").replace("_", "").isalnum():
                raise InvalidArgument(opt + ".model", "'%s' is not a NIC model name such as virtio or e1000e" % model)
            for key in ("network", "bridge", "direct"):
                value = n.get(key)
                if value is not None:
                    if key == "network":
                        check_name(value, "%s.%s" % (opt, key), what="network")
                    elif not value or "/" in value or any(c in value for c in "<>&'\" ") or len(value) > 15:
                        raise InvalidArgument("%s.%s" % (opt, key), "'%s' is not a host interface name" % value)

    def _validate_graphics(self):
        g = self.params.get("graphics")
        if g is None:
            return
        if g.get("type") == "none" and (g.get("listen") or g.get("password")):
            raise InvalidArgument("graphics.type", "listen and password need type vnc or spice")
        if g.get("listen") is not None and not _LISTEN_RE.match(g["listen"]):
            raise InvalidArgument("graphics.listen", "'%s' is not an IP address or host name to listen on" % g["listen"])
        if g.get("password") and g.get("type") == "vnc" and len(g["password"]) > 8:
            raise InvalidArgument("graphics.password", "a VNC password is at most 8 characters long (libvirt refuses longer ones)")

    # =====================================================================
    # reading
    # =====================================================================
    def _read(self):
        self.dom = self.client.lookup_domain(self.name)
        if self.dom is None:
            self.cur_state = "absent"
            return
        secure = _flag("VIR_DOMAIN_XML_SECURE")
        with self.client.errors("reading guest '%s'" % self.name):
            state = self.dom.state()[0]
            self.cur_state = dm.STATE_NAMES.get(state, "running")
            self.persistent = bool(self.dom.isPersistent())
            inactive = self.dom.XMLDesc(secure | (_flag("VIR_DOMAIN_XML_INACTIVE") if self.persistent else 0))
            self.actual = dm.Domain.from_xml(inactive)
            if self.dom.isActive():
                self.live = dm.Domain.from_xml(self.dom.XMLDesc(secure))
            self.autostart = bool(self.dom.autostart()) if self.persistent else False

    def _hypervisor(self):
        if self._hv_type is None:
            self._hv_type = self.client.call("reading the hypervisor type", self.client.conn.getType)
        return self._hv_type

    def _host_caps(self):
        """``{arch: {"domains": set, "machines": {alias: canonical}}}`` and the host arch."""
        if self._caps is not None:
            return self._caps
        caps = {"arch": None, "guests": {}}
        try:
            node = parse_xml(self.client.capabilities_xml(), what="capabilities")
        except VirtError:
            self._caps = caps
            return caps
        caps["arch"] = node.findtext("./host/cpu/arch")
        for guest in node.findall("./guest"):
            if guest.findtext("./os_type") != "hvm":
                continue
            arch = guest.find("./arch")
            if arch is None:
                continue
            entry = caps["guests"].setdefault(arch.get("name"), {"domains": set(), "machines": {}})
            for machine in arch.findall("./machine") + arch.findall("./domain/machine"):
                if machine.text:
                    entry["machines"][machine.text] = machine.get("canonical") or machine.text
            for domain in arch.findall("./domain"):
                entry["domains"].add(domain.get("type"))
        self._caps = caps
        return caps

    def _resolve_machine(self, name):
        caps = self._host_caps()
        for entry in caps["guests"].values():
            if name in entry["machines"]:
                return entry["machines"][name]
        return name

    def _domcaps(self, virt_type, arch, machine):
        try:
            return parse_xml(self.client.domain_capabilities_xml(None, arch, machine, virt_type), what="domain capabilities")
        except VirtError:
            return None

    def _check_host(self):
        """What the hypervisor can do: virt_type, machine, cpu_mode, UEFI."""
        p = self.params
        if self._hypervisor() != "QEMU":
            return
        caps = self._host_caps()
        arch = (self.actual.arch if self.actual is not None else None) or caps["arch"] or "x86_64"
        entry = caps["guests"].get(arch)
        virt_type = p.get("virt_type") or (self.actual.virt_type if self.actual is not None else "kvm")
        if entry is not None and p.get("virt_type") and entry["domains"] and virt_type not in entry["domains"]:
            raise InvalidArgument(
                "virt_type", "'%s' is not available on uri '%s' for %s guests (available: %s)%s" % (
                    virt_type, self.client.uri, arch, ", ".join(sorted(entry["domains"])),
                    "; without a usable /dev/kvm use virt_type: qemu (software emulation)" if virt_type == "kvm" else "")
            )
        if self.actual is None and not p.get("virt_type") and entry is not None and entry["domains"] and "kvm" not in entry["domains"]:
            raise InvalidArgument("virt_type", "the default 'kvm' is not available on uri '%s' (no usable /dev/kvm); set virt_type: qemu" % self.client.uri)
        machine = p.get("machine")
        if machine and entry is not None and entry["machines"]:
            known = set(entry["machines"]) | set(entry["machines"].values())
            if machine not in known:
                raise InvalidArgument("machine", "unknown machine type '%s' for %s guests; known: %s"
                                      % (machine, arch, ", ".join(sorted(a for a in entry["machines"] if "-" not in a) or sorted(known))))
        wants_uefi = p.get("firmware") == "uefi" and (self.actual is None or self.actual.firmware != "uefi" or p.get("secure_boot"))
        cpu_mode = p.get("cpu_mode")
        if not wants_uefi and not cpu_mode:
            return
        eff_machine = machine or (self.actual.machine if self.actual is not None else "q35")
        dcaps = self._domcaps(virt_type, arch, eff_machine)
        if dcaps is None:
            return
        if cpu_mode:
            mode = dcaps.find("./cpu/mode[@name='%s']" % cpu_mode)
            if mode is not None and mode.get("supported") == "no":
                raise InvalidArgument("cpu_mode", "'%s' is not supported for virt_type %s on uri '%s'" % (cpu_mode, virt_type, self.client.uri))
        if wants_uefi:
            fw = [v.text for v in dcaps.findall("./os/enum[@name='firmware']/value")]
            if fw and "efi" not in fw:
                raise InvalidArgument("firmware", "no UEFI firmware is available on uri '%s' (install OVMF / edk2)" % self.client.uri)
            if p.get("secure_boot"):
                secure = [v.text for v in dcaps.findall("./os/loader/enum[@name='secure']/value")]
                if secure and "yes" not in secure:
                    raise InvalidArgument("secure_boot", "no secure boot firmware is available for machine '%s' on uri '%s'" % (eff_machine, self.client.uri))

    # =====================================================================
    # resolving disks, networks, the seed
    # =====================================================================
    def _require_active_pool(self, name, option):
        pool = self.client.require_pool(name, option=option)
        if not pool.isActive():
            raise InvalidArgument(option, "storage pool '%s' is not active; start it first (kvmops.virt.storage_pool with state: active)" % name)
        return pool

    def _pool_model(self, pool):
        return PoolXML.from_xml(self.client.call("reading storage pool '%s'" % pool.name(), pool.XMLDesc, 0))

    def _lookup_volume(self, pool, name):
        vol = self.client.lookup_volume(pool, name)
        if vol is None:
            refresh_pool(self.client, pool)
            vol = self.client.lookup_volume(pool, name)
        return vol

    def _volume_info(self, vol, pool_name):
        facts = _vol().volume_facts(self.client, vol, pool_name)
        vtype = self.client.call("reading volume '%s'" % vol.name(), vol.info)[0]
        source_type = "block" if vtype == _flag("VIR_STORAGE_VOL_BLOCK", 1) else "file"
        return facts, source_type

    def _resolve_volume_path(self, pool_name, vol_name):
        key = (pool_name, vol_name)
        if key not in self._volume_paths:
            path = None
            pool = self.client.lookup_pool(pool_name)
            if pool is not None and pool.isActive():
                vol = self.client.lookup_volume(pool, vol_name)
                if vol is not None:
                    path = self.client.call("reading volume '%s'" % vol_name, vol.path)
            self._volume_paths[key] = path
        return self._volume_paths[key]

    def _resolve_disks(self, spec):
        disks = self.params.get("disks")
        if disks is None:
            return
        spec.disks = []
        local = is_local_uri(self.client.uri)
        for i, d in enumerate(disks):
            opt = "disks[%d]" % i
            device = d.get("device") or "disk"
            size = parse_size(d.get("size"), opt + ".size", default_unit="B")
            user = {}
            for key in ("pool", "volume", "path", "backing_volume", "format", "bus", "target"):
                if d.get(key) is not None:
                    user[key] = d[key]
            if size is not None:
                user["size"] = human_size(size)
            ds = gs.DiskSpec(index=i, device=device, bus=d.get("bus"), fmt=d.get("format"), target=d.get("target"), user=user)
            if d.get("pool"):
                pool = self._require_active_pool(d["pool"], opt + ".pool")
                vol = self._lookup_volume(pool, d["volume"])
                if vol is not None:
                    facts, ds.source_type = self._volume_info(vol, d["pool"])
                    ds.path = dm.norm_path(facts["path"])
                    ds.default_format = facts["format"] or "raw"
                    self._check_format(opt, d, ds.default_format, "volume '%s'" % d["volume"])
                else:
                    if size is None and not d.get("backing_volume"):
                        raise InvalidArgument(opt + ".volume", "volume '%s' does not exist in storage pool '%s'; give size "
                                              "(or backing_volume) to create it" % (d["volume"], d["pool"]))
                    self._plan_volume(ds, opt, pool, d["pool"], d["volume"], size, d)
            elif d.get("path"):
                path = os.path.normpath(d["path"])
                vol = self.client.lookup_volume_by_path(path)
                if vol is not None:
                    pool_name = self.client.call("reading volume '%s'" % path, lambda v=vol: v.storagePoolLookupByVolume().name())
                    facts, ds.source_type = self._volume_info(vol, pool_name)
                    ds.path = dm.norm_path(facts["path"]) or path
                    ds.default_format = facts["format"] or "raw"
                    self._check_format(opt, d, ds.default_format, "'%s'" % path)
                elif local and os.path.exists(path):
                    ds.path = path
                    if os.path.isdir(path):
                        raise InvalidArgument(opt + ".path", "'%s' is a directory, not an image or a block device" % path)
                    fmt, _virtual, _size, _backing = _vol().inspect_image(path, opt + ".path")
                    ds.source_type = "block" if path.startswith("/dev/") else "file"
                    ds.default_format = fmt
                    self._check_format(opt, d, fmt, "'%s'" % path)
                elif local:
                    if size is None and not d.get("backing_volume"):
                        raise InvalidArgument(opt + ".path", "'%s' does not exist on the host; give size to create it "
                                              "(in the storage pool whose directory holds it)" % path)
                    pool, pool_name = self._pool_for_path(path, opt)
                    self._plan_volume(ds, opt, pool, pool_name, os.path.basename(path), size, d)
                else:
                    # a remote path libvirt does not know: trust the user
                    ds.path = path
                    ds.default_format = d.get("format") or ("qcow2" if path.endswith(".qcow2") else "raw")
                    ds.source_type = "block" if path.startswith("/dev/") else "file"
            spec.disks.append(ds)

    def _check_format(self, opt, d, actual_format, what):
        want = d.get("format")
        if want is not None and actual_format and want != actual_format and not (want == "iso" and actual_format == "raw"):
            raise InvalidArgument(opt + ".format", "%s is a %s image, not %s; presenting it as %s would expose its raw bytes to the guest"
                                  % (what, actual_format, want, want))
        if want == "iso":
            d["format"] = "raw"

    def _pool_for_path(self, path, opt):
        parent = os.path.dirname(path)
        pools = self.client.call("listing storage pools", self.client.conn.listAllStoragePools, 0)
        for pool in pools:
            if not pool.isActive():
                continue
            model = self._pool_model(pool)
            if model.type in FILE_POOL_TYPES and model.path and os.path.normpath(model.path) == parent:
                return pool, pool.name()
        raise InvalidArgument(opt + ".path", "'%s' does not exist, and no active storage pool holds the directory '%s' to create "
                              "it in; create the pool first (kvmops.virt.storage_pool) or use pool and volume" % (path, parent))

    def _plan_volume(self, ds, opt, pool, pool_name, vol_name, size, d):
        """A disk to create from ``size`` (or as an overlay of ``backing_volume``)."""
        _vol().check_volume_name(vol_name, opt + ".volume")
        model = self._pool_model(pool)
        fmt = d.get("format") or ("qcow2" if model.type in FILE_POOL_TYPES else "raw")
        if fmt not in ("raw",) and model.type not in FILE_POOL_TYPES:
            raise InvalidArgument(opt + ".format", "'%s' pools hold raw volumes only; use format: raw" % model.type)
        backing_path = backing_format = None
        if d.get("backing_volume"):
            if model.type not in FILE_POOL_TYPES:
                raise InvalidArgument(opt + ".backing_volume", "overlays need a pool of files (dir, fs, netfs); '%s' is a '%s' pool"
                                      % (pool_name, model.type))
            fmt = "qcow2"
            backing_path, backing_format, backing_capacity = _vol().resolve_backing(self.client, pool, d["backing_volume"], opt + ".backing_volume")
            if size is None:
                size = backing_capacity
            elif backing_capacity and size < backing_capacity:
                raise InvalidArgument(opt + ".size", "an overlay cannot be smaller than its backing volume: %s < %s (%s)"
                                      % (human_size(size), human_size(backing_capacity), backing_path))
        path = os.path.join(model.path or "/", vol_name)
        xml = _vol().volume_xml(vol_name, size, fmt=fmt, backing_path=backing_path, backing_format=backing_format,
                                allocation_bytes=0 if model.type in FILE_POOL_TYPES else None)
        ds.path = dm.norm_path(path)
        ds.default_format = fmt
        ds.source_type = "file" if model.type in FILE_POOL_TYPES else "block"
        ds.user.setdefault("size", human_size(size))
        cv = CreatedVolume(opt, pool, pool_name, vol_name, xml, ds.path, size, backing_path)
        self.to_create.append(cv)

    def _resolve_interfaces(self, spec):
        nics = self.params.get("interfaces")
        if nics is None:
            return
        spec.interfaces = []
        will_run = self.state in ("running", "paused") or self.cur_state in ("running", "paused")
        local = is_local_uri(self.client.uri)
        for i, n in enumerate(nics):
            opt = "interfaces[%d]" % i
            if n.get("network") is not None:
                kind, source = "network", n["network"]
                net = self.client.require_network(source, option=opt + ".network")
                if will_run and not net.isActive():
                    raise InvalidArgument(opt + ".network", "network '%s' is not active, so the guest cannot use it; start it first "
                                          "(kvmops.virt.virtio_network with state: active)" % source)
            elif n.get("bridge") is not None:
                kind, source = "bridge", n["bridge"]
                if local and os.path.isdir("/sys/class/net") and not os.path.exists(os.path.join("/sys/class/net", source, "bridge")):
                    raise InvalidArgument(opt + ".bridge", "'%s' is not a bridge on the host" % source)
            else:
                kind, source = "direct", n["direct"]
                if local and os.path.isdir("/sys/class/net") and not os.path.exists(os.path.join("/sys/class/net", source)):
                    raise InvalidArgument(opt + ".direct", "host interface '%s' does not exist" % source)
            mac = dm.normalize_mac(n["mac"], opt + ".mac") if n.get("mac") else None
            spec.interfaces.append(gs.NicSpec(i, kind, source, n.get("model"), mac))

    def _host_macs(self):
        macs = set()
        for dom in self.client.call("listing guests", self.client.conn.listAllDomains, 0):
            try:
                model = dm.Domain.from_xml(dom.XMLDesc(0))
            except Exception:  # pylint: disable=broad-except
                continue
            macs.update(n.normalized_mac() for n in model.interfaces if n.mac)
        return macs

    def _new_macs(self, count):
        """``count`` MACs no guest of the host uses."""
        if not count:
            return []  # most runs need no new MAC; reading every guest's XML costs each task O(guests)
        used = self._host_macs()
        macs = []
        while len(macs) < count:
            mac = "52:54:00:%02x:%02x:%02x" % (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))
            if mac not in used:
                used.add(mac)
                macs.append(mac)
        return macs

    def _volume_paths_of(self, domain):
        """``{(pool, volume): path}`` of the ``type='volume'`` disks of ``domain``."""
        paths = {}
        for disk in [] if domain is None else domain.disks:
            if disk.type == "volume" and disk.source_pool and disk.source_volume:
                key = (disk.source_pool, disk.source_volume)
                paths[key] = self._resolve_volume_path(*key)
        return paths

    def _machine_names(self, *names):
        """``{name: canonical machine}`` for the machine names the builder compares."""
        return dict((name, self._resolve_machine(name)) for name in names if name)

    def _resolve_seed(self, spec):
        ci = self.params.get("cloud_init")
        if ci is None:
            return
        hostname = self.name if _valid_hostname(self.name) else None
        try:
            files = _ci().render_seed(user_data=ci.get("user_data"), meta_data=ci.get("meta_data"),
                                      network_config=ci.get("network_config"), hostname=hostname)
        except InvalidArgument as e:
            option = e.option or "cloud_init"
            msg = e.msg
            if option in ("user_data", "meta_data", "network_config") or option.split(".")[0].split("[")[0] in (
                    "user_data", "meta_data", "network_config"):
                msg = "cloud_init." + msg
                option = "cloud_init." + option
            raise InvalidArgument(option, msg.split(": ", 1)[1] if ": " in msg else msg)
        digest = _ci().seed_digest(files)
        per_file = dict((name, _ci().seed_digest({name: content})) for name, content in files.items())
        pool_name = ci.get("pool")
        option = "cloud_init.pool"
        if pool_name is None and self.actual is not None:
            recorded = self.actual.metadata().seed
            if recorded and recorded.get("pool"):
                pool_name = recorded["pool"]
        if pool_name is None:
            for d in self.params.get("disks") or []:
                if d.get("pool"):
                    pool_name = d["pool"]
                    break
        if pool_name is None:
            raise InvalidArgument(option, "required: no disk names a pool to put the seed volume in")
        pool = self._require_active_pool(pool_name, option)
        vol_name = self.name + SEED_SUFFIX
        _vol().check_volume_name(vol_name, "name")
        vol = self._lookup_volume(pool, vol_name)
        model = self._pool_model(pool)
        if model.type not in FILE_POOL_TYPES:
            raise InvalidArgument(option, "the seed ISO needs a pool of files (dir, fs, netfs); '%s' is a '%s' pool" % (pool_name, model.type))
        path = self.client.call("reading volume '%s'" % vol_name, vol.path) if vol is not None else os.path.join(model.path or "/", vol_name)
        seed = gs.SeedSpec(pool_name, vol_name, path, digest, per_file)
        recorded = self.actual.metadata().seed if self.actual is not None else None
        rebuild = vol is None or recorded is None or recorded.get("digest") != digest or dm.norm_path(recorded.get("path")) != seed.path
        if vol is not None and (recorded is None or dm.norm_path(recorded.get("path")) != seed.path):
            self._check_not_used_elsewhere(seed.path, option, "the seed volume '%s'" % vol_name)
        self.seed_plan = dict(pool=pool, pool_name=pool_name, name=vol_name, vol=vol, files=files, path=seed.path,
                              rebuild=rebuild, missing=vol is None and recorded is not None and recorded.get("digest") == digest)
        spec.seed = seed

    def _other_domains_using(self, path):
        users = []
        for dom in self.client.call("listing guests", self.client.conn.listAllDomains, 0):
            if dom.name() == self.name:
                continue
            try:
                model = dm.Domain.from_xml(dom.XMLDesc(0))
            except Exception:  # pylint: disable=broad-except
                continue
            for disk in model.disks:
                paths = [disk.path(self._resolve_volume_path)]
                paths += [dm.norm_path(n.get("file") or n.get("dev")) for n in disk.node.iter("source")]
                if path in paths:
                    users.append(dom.name())
                    break
        return users

    def _check_not_used_elsewhere(self, path, option, what):
        users = self._other_domains_using(path)
        if users:
            raise InvalidArgument(option, "%s (%s) is used by another guest: %s" % (what, path, ", ".join(sorted(users))))

    # =====================================================================
    # planning
    # =====================================================================
    def plan(self):
        self._validate()
        self._read()
        if self.state == "absent":
            return self._plan_absent()
        p = self.params
        if self.actual is None:
            xml_memory = self.xml is not None and self.xml.find("./memory") is not None
            if self.memory is None and self.max_memory is None and not xml_memory:
                raise InvalidArgument("memory", "required to define the new guest '%s'" % self.name)
        self._check_host()
        spec = gs.GuestSpec(self.name)
        spec.virt_type = p.get("virt_type")
        spec.machine = p.get("machine")
        spec.arch = self._host_caps()["arch"] if self.actual is None else None
        spec.memory = self.memory
        spec.max_memory = self.max_memory
        spec.vcpus = p.get("vcpus")
        spec.max_vcpus = p.get("max_vcpus")
        spec.cpu_mode = p.get("cpu_mode")
        spec.cpu_model = p.get("cpu_model")
        spec.firmware = p.get("firmware")
        spec.secure_boot = p.get("secure_boot")
        boot = p.get("boot") or {}
        spec.kernel = boot.get("kernel")
        spec.initrd = boot.get("initrd")
        spec.cmdline = boot.get("cmdline")
        if p.get("graphics") is not None:
            g = p["graphics"]
            spec.graphics = gs.GraphicsSpec(g["type"], g.get("listen"), g.get("password"))
        spec.console_log = dm.norm_path(p.get("console_log"))
        if p.get("tags") is not None:
            spec.tags = _unique(p["tags"])
        spec.xml = self.xml
        if spec.secure_boot and self._effective_machine_family(spec) == "i440fx":
            raise InvalidArgument("secure_boot", "requires a q35 machine type (SMM); the guest's machine is '%s'"
                                  % (spec.machine or self.actual.machine))
        self._resolve_disks(spec)
        self._resolve_interfaces(spec)
        self._resolve_seed(spec)
        spec.created_volumes = [(c.pool_name, c.name, c.path) for c in self.to_create]
        if self.seed_plan is not None and self.seed_plan["rebuild"]:
            spec.created_volumes.append((self.seed_plan["pool_name"], self.seed_plan["name"], self.seed_plan["path"]))
        spec.volume_paths = self._volume_paths_of(self.actual)
        if spec.machine and self.actual is not None:
            spec.machine_names = self._machine_names(spec.machine, self.actual.machine)
        if not self.check_mode:
            # generated here, not by the builder: the spec stays plain data
            spec.new_macs = self._new_macs(interfaces_needing_mac(self.actual, spec.interfaces))
        self.spec = spec

        builder = DomainBuilder(self.actual, spec)
        self.final, self.changes = builder.build()
        if self.seed_plan is not None and self.seed_plan["missing"]:
            self.changes.append(gs.Change("cloud_init.volume", None, self.seed_plan["path"], dm.SEED))
        self._check_mac_conflicts()
        self._record_diff()
        self._plan_storage()
        self._plan_define()
        self._plan_live()
        self._plan_autostart()
        self._plan_power()
        return None

    def _effective_machine_family(self, spec):
        machine = spec.machine or (self.actual.machine if self.actual is not None else None)
        if machine is None and self.xml is not None:
            node = self.xml.find("./os/type")
            machine = node.get("machine") if node is not None else None
        return dm.machine_family(machine or "q35")

    def _check_mac_conflicts(self):
        if self.spec.interfaces is None:
            return
        wanted = [(n.index, n.mac) for n in self.spec.interfaces if n.mac]
        if not wanted:
            return
        others = {}
        for dom in self.client.call("listing guests", self.client.conn.listAllDomains, 0):
            if dom.name() == self.name:
                continue
            try:
                model = dm.Domain.from_xml(dom.XMLDesc(0))
            except Exception:  # pylint: disable=broad-except
                continue
            for nic in model.interfaces:
                if nic.mac:
                    others[nic.normalized_mac()] = dom.name()
        for index, mac in wanted:
            if mac in others:
                self.warnings.append("interfaces[%d].mac: %s is also used by guest '%s'" % (index, mac, others[mac]))

    def _record_diff(self):
        target_state = self._target_state()
        if self.cur_state != target_state:
            self.diff.add("state", self.cur_state, target_state)
        for c in self.changes:
            self.diff.add(c.path, c.before, c.after, secret=c.secret)
        for cv in self.to_create:
            after = {"size": human_size(cv.size), "pool": cv.pool_name}
            if cv.backing:
                after["backing"] = cv.backing
            self.diff.add("volumes[%s/%s]" % (cv.pool_name, cv.name), None, after)
        if self.seed_plan is not None and self.seed_plan["rebuild"] and not any(c.path.startswith("cloud_init.") for c in self.changes):
            # a seed volume that does not match the recorded one (made outside this collection)
            self.diff.add("cloud_init.volume", "unrecorded", self.seed_plan["path"])

    def _target_state(self):
        if self.state == "present":
            return "shutdown" if self.cur_state == "absent" else self.cur_state
        return self.state

    # -- storage ----------------------------------------------------------
    def _plan_storage(self):
        for cv in self.to_create:
            self.act("create volume '%s' in storage pool '%s' (%s)" % (cv.name, cv.pool_name, human_size(cv.size)),
                     lambda cv=cv: self._create_volume(cv))
        sp = self.seed_plan
        if sp is not None and sp["rebuild"]:
            self.act("build the cloud-init seed ISO '%s' in storage pool '%s'" % (sp["name"], sp["pool_name"]), self._build_seed)

    def _create_volume(self, cv):
        cv.vol = _vol().create_volume(self.client, cv.pool, cv.xml)
        self.created_now.append(cv)
        real = dm.norm_path(self.client.call("reading volume '%s'" % cv.name, cv.vol.path))
        if real != cv.path:
            self._move_path(cv.path, real, cv.pool_name, cv.name)
            cv.path = real

    def _move_path(self, old, new, pool_name, vol_name):
        for disk in self.final.disks:
            if disk.path() == old:
                disk.set_source("block" if disk.type == "block" else "file", new)
        meta = self.final.metadata()
        meta.set_volume_path(pool_name, vol_name, new)
        meta.write(self.final)

    def _build_seed(self):
        sp = self.seed_plan
        iso = _ci().build_iso(sp["files"], volume_id="cidata")
        if sp["vol"] is not None:
            _vol().delete_volume(self.client, sp["vol"])
        xml = parse_xml(_vol().volume_xml(sp["name"], len(iso), fmt="raw"), what="volume XML")
        find_path(xml, ["target", "permissions", "mode"], create=True).text = "0600"
        vol = _vol().create_volume(self.client, sp["pool"], to_string(xml))
        cv = CreatedVolume("cloud_init", sp["pool"], sp["pool_name"], sp["name"], None, sp["path"], len(iso))
        cv.vol = vol
        self.created_now.append(cv)
        _vol().upload_bytes(self.client, vol, iso)
        real = dm.norm_path(self.client.call("reading volume '%s'" % sp["name"], vol.path))
        if real != sp["path"]:
            self._move_path(sp["path"], real, sp["pool_name"], sp["name"])
            meta = self.final.metadata()
            seed = meta.seed
            seed["path"] = real
            meta.seed = seed
            meta.write(self.final)

    # -- definition -----------------------------------------------------------
    def _plan_define(self):
        if self.actual is not None and not self.changes and self.persistent:
            return
        what = "define guest '%s'" % self.name if self.actual is None else "update the definition of guest '%s'" % self.name
        self.act(what, self._define)

    def _define(self):
        xml = self.final.to_xml()
        with self.client.errors("defining guest '%s'" % self.name):
            flags = _flag("VIR_DOMAIN_DEFINE_VALIDATE")
            try:
                self.dom = self.client.conn.defineXMLFlags(xml, flags)
            except libvirt.libvirtError as e:
                if flags and e.get_error_code() in (_flag("VIR_ERR_NO_SUPPORT"), _flag("VIR_ERR_INVALID_ARG")):
                    self.dom = self.client.conn.defineXML(xml)
                else:
                    raise
        self.defined = True

    # -- live changes ---------------------------------------------------------
    def _stays_active(self):
        return self.cur_state in ("running", "paused") and self._target_state() in ("running", "paused")

    def _live_applicable(self, change):
        """Whether ``change`` can be applied to the running guest (as far as can be known beforehand)."""
        live = self.live
        kind = change.kind
        if kind == dm.MEMORY:
            return live is not None and change.after <= (live.max_memory_mib or 0)
        if kind == dm.VCPUS:
            return live is not None and change.after <= (live.max_vcpus or 0)
        if kind in (dm.DISK_ATTACH, dm.DISK_DETACH):
            return change.data.get("bus") in dm.HOTPLUG_BUSES
        if kind in (dm.DISK_MEDIA, dm.NIC_ATTACH, dm.NIC_DETACH, dm.NIC_UPDATE, dm.GRAPHICS_PASSWORD, dm.METADATA):
            return True
        return False

    def _plan_live(self):
        if not self._stays_active() or self.live is None:
            return
        for c in self.changes:
            if not self._live_applicable(c):
                continue
            self.live_kinds.add(c.path)
            if c.kind == dm.MEMORY:
                self.act("set the memory of the running guest to %d MiB" % c.after, lambda c=c: self._live_memory(c.after))
            elif c.kind == dm.VCPUS:
                self.act("set the vCPUs of the running guest to %d" % c.after, lambda c=c: self._live_vcpus(c.after))
            elif c.kind == dm.DISK_DETACH:
                self.act("detach disk %s from the running guest" % c.data["target"], lambda c=c: self._live_detach_disk(c))
            elif c.kind == dm.DISK_ATTACH:
                self.act("attach disk %s to the running guest" % c.data["target"], lambda c=c: self._live_attach_disk(c))
            elif c.kind == dm.DISK_MEDIA:
                self.act("change the media of cdrom %s of the running guest" % c.data["target"], lambda c=c: self._live_media(c))
            elif c.kind == dm.NIC_DETACH:
                self.act("detach interface %s from the running guest" % c.data.get("mac"), lambda c=c: self._live_detach_nic(c))
            elif c.kind == dm.NIC_ATTACH:
                self.act("attach interface %s to the running guest" % c.path, lambda c=c: self._live_attach_nic(c))
            elif c.kind == dm.NIC_UPDATE:
                self.act("change the source of interface %s of the running guest" % c.data.get("mac"), lambda c=c: self._live_update_nic(c))
            elif c.kind == dm.GRAPHICS_PASSWORD:
                self.act("change the graphics password of the running guest", self._live_graphics)
            elif c.kind == dm.METADATA:
                self.act("update the tags of the running guest", self._live_tags)
        # de-duplicate actions that several changes share (a NIC with two source keys)
        seen = set()
        unique = []
        for a in self.actions:
            if a.description in seen:
                continue
            seen.add(a.description)
            unique.append(a)
        self.actions = unique

    def _live_try(self, what, func, *args):
        """Run a live change; a refusal leaves it for the next boot, with a warning."""
        try:
            with self.client.errors(what):
                func(*args)
            return True
        except OperationFailed as e:
            self.warnings.append("%s: %s; the change is in the persistent definition and takes effect at the next boot" % (what, e.msg))
            return False

    def _live_memory(self, mib):
        self._live_try("setting the memory of running guest '%s'" % self.name, self.dom.setMemoryFlags, mib * 1024,
                       _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _live_vcpus(self, count):
        self._live_try("setting the vCPUs of running guest '%s'" % self.name, self.dom.setVcpusFlags, count,
                       _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _device_xml(self, node, drop_address=True):
        clone = parse_xml(to_string(node))
        if drop_address:
            for tag in ("address", "alias"):
                for child in clone.findall(tag):
                    clone.remove(child)
        return to_string(clone)

    def _current_live(self):
        secure = _flag("VIR_DOMAIN_XML_SECURE")
        return dm.Domain.from_xml(self.client.call("reading guest '%s'" % self.name, self.dom.XMLDesc, secure))

    def _wait_gone(self, finder):
        deadline = time.time() + min(DETACH_TIMEOUT, max(self.params["wait_timeout"], 1))
        while time.time() < deadline:
            if finder(self._current_live()) is None:
                return True
            time.sleep(POLL)
        return finder(self._current_live()) is None

    def _live_detach_disk(self, c):
        target = c.data["target"]
        disk = self._current_live().find_disk(target)
        if disk is None:
            return
        if self._live_try("detaching disk %s from running guest '%s'" % (target, self.name), self.dom.detachDeviceFlags,
                          to_string(disk.node), _flag("VIR_DOMAIN_AFFECT_LIVE", 1)):
            if not self._wait_gone(lambda d: d.find_disk(target)):
                self.warnings.append("disk %s: the guest did not release it within %d s; it is removed from the persistent definition "
                                     "and goes away at the next boot" % (target, DETACH_TIMEOUT))

    def _live_attach_disk(self, c):
        disk = self.final.find_disk(c.data["target"])
        if disk is None or self._current_live().find_disk(c.data["target"]) is not None:
            return
        self._live_try("attaching disk %s to running guest '%s'" % (c.data["target"], self.name), self.dom.attachDeviceFlags,
                       self._device_xml(disk.node), _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _live_media(self, c):
        disk = self.final.find_disk(c.data["target"])
        if disk is None:
            return
        self._live_try("changing the media of cdrom %s of running guest '%s'" % (c.data["target"], self.name),
                       self.dom.updateDeviceFlags, self._device_xml(disk.node, drop_address=False), _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _live_detach_nic(self, c):
        mac = c.data.get("mac")
        if not mac:
            return
        nic = self._current_live().find_interface(mac)
        if nic is None:
            return
        if self._live_try("detaching interface %s from running guest '%s'" % (mac, self.name), self.dom.detachDeviceFlags,
                          to_string(nic.node), _flag("VIR_DOMAIN_AFFECT_LIVE", 1)):
            if not self._wait_gone(lambda d: d.find_interface(mac)):
                self.warnings.append("interface %s: the guest did not release it within %d s; it is removed from the persistent "
                                     "definition and goes away at the next boot" % (mac, DETACH_TIMEOUT))

    def _live_attach_nic(self, c):
        mac = c.data.get("mac")
        nic = self.final.find_interface(mac) if mac else None
        if nic is None:
            return
        if self._current_live().find_interface(mac) is not None:
            return
        self._live_try("attaching interface %s to running guest '%s'" % (mac, self.name), self.dom.attachDeviceFlags,
                       self._device_xml(nic.node), _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _live_update_nic(self, c):
        mac = c.data.get("mac")
        nic = self.final.find_interface(mac) if mac else None
        live = self._current_live().find_interface(mac) if mac else None
        if nic is None or live is None:
            return
        new = parse_xml(to_string(live.node))
        kind, name = dm.InterfaceDevice(parse_xml(to_string(nic.node))).source
        dev = dm.InterfaceDevice(new)
        for child in new.findall("target"):
            new.remove(child)
        dev.set_source(kind, name)
        self._live_try("changing the source of interface %s of running guest '%s'" % (mac, self.name), self.dom.updateDeviceFlags,
                       to_string(new), _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _live_graphics(self):
        live = list(self._current_live().graphics)
        wanted = list(self.final.graphics)
        if not live or not wanted:
            return
        node = parse_xml(to_string(live[0].node))
        g = dm.GraphicsDevice(node)
        g.passwd = wanted[0].passwd
        self._live_try("changing the graphics password of running guest '%s'" % self.name, self.dom.updateDeviceFlags,
                       to_string(node), _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    def _live_tags(self):
        live = self._current_live()
        meta = live.metadata()
        meta.tags = self.spec.tags
        self._live_try("updating the tags of running guest '%s'" % self.name, self.dom.setMetadata,
                       _flag("VIR_DOMAIN_METADATA_ELEMENT", 2), meta.to_plain_xml(), dm.NS_PREFIX, dm.NS, _flag("VIR_DOMAIN_AFFECT_LIVE", 1))

    # -- autostart --------------------------------------------------------------
    def _plan_autostart(self):
        want = self.params.get("autostart")
        current = False if self.actual is None else self.autostart
        self.predicted_autostart = current if want is None else want
        if want is None or (self.actual is not None and want == current):
            return
        if self.actual is None and not want:
            return
        self.diff.add("autostart", None if self.actual is None else current, want)
        self.act("%s autostart of guest '%s'" % ("enable" if want else "disable", self.name),
                 lambda: self.client.call("setting autostart of guest '%s'" % self.name, self.dom.setAutostart, 1 if want else 0))

    # -- power ------------------------------------------------------------------
    def _plan_power(self):
        cur = self.cur_state
        target = self._target_state()
        self.predicted_state = target
        if cur == target or self.state == "present":
            return
        if target == "running":
            if cur in ("absent", "shutdown"):
                self.act("start guest '%s'" % self.name, self._start)
            elif cur == "crashed":
                self.act("power off crashed guest '%s'" % self.name, self._destroy)
                self.act("start guest '%s'" % self.name, self._start)
            elif cur == "paused":
                self.act("resume guest '%s'" % self.name, lambda: self.client.call("resuming guest '%s'" % self.name, self.dom.resume))
            elif cur == "pmsuspended":
                self.act("wake up guest '%s'" % self.name, self._wakeup)
        elif target == "paused":
            if cur in ("absent", "shutdown"):
                self.act("start guest '%s' paused" % self.name, lambda: self._start(paused=True))
            elif cur == "crashed":
                self.act("power off crashed guest '%s'" % self.name, self._destroy)
                self.act("start guest '%s' paused" % self.name, lambda: self._start(paused=True))
            else:
                if cur == "pmsuspended":
                    self.act("wake up guest '%s'" % self.name, self._wakeup)
                self.act("pause guest '%s'" % self.name, lambda: self.client.call("pausing guest '%s'" % self.name, self.dom.suspend))
        elif target == "shutdown":
            if cur == "crashed":
                self.act("power off crashed guest '%s'" % self.name, self._destroy)
            elif cur in ("running", "paused", "pmsuspended"):
                self.act("shut down guest '%s'" % self.name, self._shutdown)

    def _start(self, paused=False):
        flags = _flag("VIR_DOMAIN_START_PAUSED", 1) if paused else 0
        self.started_at = time.time()
        action = "starting guest '%s'" % self.name
        try:
            self.dom.createWithFlags(flags)
        except libvirt.libvirtError as e:
            if not (paused and e.get_error_code() in (_flag("VIR_ERR_INVALID_ARG", 8), _flag("VIR_ERR_NO_SUPPORT", 3))):
                raise self.client.translate(e, action)
            # a driver that cannot start paused: start, then pause at once
            self.client.call(action, self.dom.create)
            self.client.call("pausing guest '%s'" % self.name, self.dom.suspend)

    def _destroy(self):
        self.client.call("powering off guest '%s'" % self.name, self.dom.destroy)

    def _wakeup(self):
        self.client.call("waking up guest '%s'" % self.name, self.dom.pMWakeup, 0)

    def _is_off(self):
        state = self.client.call("reading the state of guest '%s'" % self.name, self.dom.state)[0]
        return state == _flag("VIR_DOMAIN_SHUTOFF", 5)

    def _press_power_button(self):
        """ACPI power button; drivers without that mode get their default graceful shutdown."""
        action = "shutting down guest '%s'" % self.name
        try:
            self.dom.shutdownFlags(_flag("VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN", 1))
        except libvirt.libvirtError as e:
            if e.get_error_code() not in (_flag("VIR_ERR_INVALID_ARG", 8), _flag("VIR_ERR_NO_SUPPORT", 3)):
                raise self.client.translate(e, action)
            self.client.call(action, self.dom.shutdownFlags, 0)

    def _shutdown(self):
        """ACPI power button, wait up to wait_timeout; then power off with force, else fail."""
        timeout = self.params["wait_timeout"]
        force = self.params["force"]
        name = self.name
        if timeout == 0 and force:
            self._destroy()
            return
        state = self.client.call("reading the state of guest '%s'" % name, self.dom.state)[0]
        if state == _flag("VIR_DOMAIN_PAUSED", 3):
            # a paused guest cannot see the power button
            self.client.call("resuming guest '%s' to shut it down" % name, self.dom.resume)
        elif state == _flag("VIR_DOMAIN_PMSUSPENDED", 7):
            self._wakeup()
        start = time.time()
        last_press = None
        while True:
            if self._is_off():
                return
            now = time.time()
            if now - start >= timeout:
                break
            if last_press is None or now - last_press >= ACPI_RESEND:
                try:
                    self._press_power_button()
                except OperationFailed:
                    if self._is_off():
                        return
                    raise
                last_press = now
            time.sleep(POLL)
        if force:
            self.warnings.append("guest '%s' did not shut down within %d s after an ACPI shutdown request; it was powered off (force: true)"
                                 % (name, timeout))
            try:
                self._destroy()
            except OperationFailed:
                if not self._is_off():
                    raise
            return
        raise OperationFailed(
            "state: guest '%s' is still running %d s after an ACPI shutdown request (wait_timeout); nothing was forced. "
            "Set force: true to power it off after the timeout, or raise wait_timeout" % (name, timeout),
            uri=self.client.uri, option="wait_timeout",
        )

    # =====================================================================
    # removal
    # =====================================================================
    def _plan_absent(self):
        if self.dom is None:
            return None
        self.diff.add("state", self.cur_state, "absent")
        if self.cur_state in ("running", "paused", "pmsuspended"):
            self.act("shut down guest '%s'" % self.name, self._shutdown)
        elif self.cur_state == "crashed":
            self.act("power off crashed guest '%s'" % self.name, self._destroy)
        self.act("undefine guest '%s' (with its NVRAM, TPM state, managed save, snapshot and checkpoint metadata)" % self.name,
                 self._undefine)
        if self.params["remove_storage"]:
            self._plan_remove_storage()
        return None

    def _undefine(self):
        if not self.persistent:
            return  # a transient guest is gone once it is off
        names = ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA", "VIR_DOMAIN_UNDEFINE_NVRAM",
                 "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", "VIR_DOMAIN_UNDEFINE_TPM")
        flags = [_flag(n) for n in names if _flag(n)]
        action = "undefining guest '%s'" % self.name
        while True:
            try:
                value = 0
                for f in flags:
                    value |= f
                self.dom.undefineFlags(value)
                return
            except libvirt.libvirtError as e:
                code = e.get_error_code()
                if flags and code in (_flag("VIR_ERR_INVALID_ARG"), _flag("VIR_ERR_NO_SUPPORT")):
                    flags.pop()  # drop the newest flag this libvirt may not know
                    continue
                raise self.client.translate(e, action)

    def _plan_remove_storage(self):
        meta = self.actual.metadata()
        records = list(meta.volumes)
        seed = meta.seed
        if seed and seed.get("pool") and seed.get("volume"):
            if not any(r["pool"] == seed["pool"] and r["name"] == seed["volume"] for r in records):
                records.append(dict(pool=seed["pool"], name=seed["volume"], path=seed.get("path")))
        for rec in records:
            key = "volumes[%s/%s]" % (rec["pool"], rec["name"])
            pool = self.client.lookup_pool(rec["pool"])
            if pool is None or not pool.isActive():
                self.warnings.append("%s: storage pool '%s' is missing or inactive; the volume was not removed" % (key, rec["pool"]))
                continue
            if missing_target_path(self.client, pool):
                self.warnings.append("%s: the directory of storage pool '%s' does not exist any more; the volume is gone with it" % (key, rec["pool"]))
                continue
            vol = self._lookup_volume(pool, rec["name"])
            if vol is None:
                continue
            path = dm.norm_path(self.client.call("reading volume '%s'" % rec["name"], vol.path))
            if rec.get("path") and dm.norm_path(rec["path"]) != path:
                self.warnings.append("%s: the volume's path %s is not the recorded %s; it was kept" % (key, path, rec["path"]))
                continue
            users = self._other_domains_using(path)
            if users:
                self.warnings.append("%s: kept, it is used by another guest: %s" % (key, ", ".join(sorted(users))))
                continue
            backed = self._volumes_backed_by(path)
            if backed:
                self.warnings.append("%s: kept, it is the backing file of %s" % (key, ", ".join(sorted(backed))))
                continue
            self.diff.add(key, path, None)
            self.act("delete volume '%s' from storage pool '%s'" % (rec["name"], rec["pool"]),
                     lambda vol=vol: _vol().delete_volume(self.client, vol))

    def _volumes_backed_by(self, path):
        found = []
        for pool in self.client.call("listing storage pools", self.client.conn.listAllStoragePools, 0):
            if not pool.isActive():
                continue
            try:
                vols = pool.listAllVolumes(0)
            except Exception:  # pylint: disable=broad-except
                continue
            for vol in vols:
                try:
                    model = _vol().VolumeXML.from_xml(vol.XMLDesc(0))
                except Exception:  # pylint: disable=broad-except
                    continue
                if model.backing_path and dm.norm_path(model.backing_path) == path:
                    found.append(model.path or vol.name())
        return found

    # =====================================================================
    # applying
    # =====================================================================
    def apply(self):
        try:
            for action in self.actions:
                action.func()
        except VirtError as e:
            removed = self._rollback()
            if removed:
                e.msg = "%s; removed the volumes this task had created: %s" % (e.msg, ", ".join(removed))
            raise
        if self.params.get("wait_for_ip") and self.state == "running":
            self._wait_for_ip()

    def _rollback(self):
        """A definition that failed leaves no volumes behind that nothing uses."""
        if self.defined or self.state == "absent":
            return []
        removed = []
        for cv in reversed(self.created_now):
            try:
                _vol().delete_volume(self.client, cv.vol)
                removed.append("%s/%s" % (cv.pool_name, cv.name))
            except VirtError:
                pass
        return removed

    # -- addresses ----------------------------------------------------------------
    def _addresses(self, use_agent=True):
        """``{mac: [addresses]}`` from DHCP leases, the guest agent and the ARP table.

        When this task started the guest, a lease counts only if it was obtained
        after the start (a lease from the previous boot is still valid for a
        while), and the ARP table, which may hold entries from that boot, is not used.
        """
        found = {}
        if self.dom is None or not self.dom.isActive():
            return found

        def add(mac, ip):
            if not ip or ip.startswith("fe80:") or ip.startswith("169.254.") or ip.startswith("127.") or ip == "::1":
                return
            lst = found.setdefault((mac or "").lower(), [])
            if ip not in lst:
                lst.append(ip)

        for mac, ip in self._lease_addresses():
            add(mac, ip)
        sources = []
        if use_agent and self._agent_connected():
            sources.append(("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT", 1))
        if self.started_at is None:
            sources.append(("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP", 2))
        for name, default in sources:
            try:
                result = self.dom.interfaceAddresses(_flag(name, default), 0)
            except Exception:  # pylint: disable=broad-except
                continue
            for _ifname, info in (result or {}).items():
                for addr in info.get("addrs") or []:
                    add(info.get("hwaddr"), addr.get("addr"))
        return found

    def _lease_addresses(self):
        """(mac, ip) of the DHCP leases libvirt's networks hold for the guest's interfaces."""
        out = []
        try:
            live = self._current_live()
        except VirtError:
            return out
        for nic in live.interfaces:
            kind, net_name = nic.source
            mac = nic.normalized_mac()
            if kind != "network" or not mac:
                continue
            net = self.client.lookup_network(net_name)
            if net is None:
                continue
            try:
                leases = net.DHCPLeases(mac, 0)
            except Exception:  # pylint: disable=broad-except
                continue
            duration = _lease_duration(net)
            for lease in leases or []:
                if self.started_at is not None and lease.get("expirytime"):
                    obtained = lease["expirytime"] - duration
                    if obtained < self.started_at - 2:
                        continue  # from before this task started the guest
                out.append((lease.get("mac") or mac, lease.get("ipaddr")))
        return out

    def _agent_connected(self):
        try:
            live = self._current_live()
        except VirtError:
            return False
        for channel in live.node.findall("./devices/channel"):
            target = channel.find("target")
            if target is not None and target.get("name") == "org.qemu.guest_agent.0" and target.get("state") == "connected":
                return True
        return False

    def _wait_for_ip(self):
        timeout = self.params["wait_timeout"]
        deadline = time.time() + timeout
        while True:
            self.ips = self._addresses()
            if any(self.ips.values()):
                return
            if time.time() >= deadline:
                break
            time.sleep(POLL)
        raise OperationFailed(
            "wait_for_ip: guest '%s' is running, but none of its interfaces had an address after %d s "
            "(sources: DHCP leases, guest agent, ARP); raise wait_timeout, or check the guest's network" % (self.name, timeout),
            uri=self.client.uri, option="wait_for_ip",
        )

    # =====================================================================
    # result
    # =====================================================================
    def _pending(self):
        """What the running guest lacks: user-specified values that differ in its live definition."""
        if self.check_mode:
            live = self.live
            state = self.predicted_state
            if state not in ("running", "paused") or live is None or self.cur_state not in ("running", "paused"):
                return []
        else:
            if self.dom is None or not self.dom.isActive():
                return []
            try:
                live = self._current_live()
            except VirtError:
                return []
        spec = self.spec.for_live_comparison()
        spec.volume_paths = self._volume_paths_of(live)
        if spec.machine:
            spec.machine_names = self._machine_names(spec.machine, live.machine)
        try:
            _dom, changes = DomainBuilder(live, spec).build()
        except InvalidArgument:
            return []
        pending = []
        for c in changes:
            if c.kind == dm.METADATA:
                continue
            if c.kind == dm.MEMORY and c.after <= (live.max_memory_mib or 0):
                continue  # the balloon target is set; the live XML shows the balloon's own value
            if c.path == "cpu_mode" and c.after in ("host-model", "maximum") and c.before == "custom":
                continue  # libvirt shows the expanded CPU of a running host-model guest
            if self.check_mode and c.path in self.live_kinds:
                continue  # applied live by the real run
            pending.append(c.path)
        return _unique(pending)

    def result(self):
        if self.state == "absent":
            facts = {"name": self.name, "state": "absent", "reboot_required": False, "pending_changes": []}
            return {"guest": facts, "reboot_required": False}
        if self.check_mode:
            domain = self.final
            state = self.predicted_state
            autostart = self.predicted_autostart
            if self.live is not None and self.dom is not None and self.cur_state in ("running", "paused"):
                self.ips = self._addresses(use_agent=False)
        else:
            self._read_back()
            domain = self.actual
            state = self.cur_state
            autostart = self.autostart
            if not self.ips and self.dom is not None and self.dom.isActive():
                self.ips = self._addresses(use_agent=False)
        pending = self._pending()
        facts = self._facts(domain, state, autostart)
        facts["reboot_required"] = bool(pending)
        facts["pending_changes"] = pending
        return {"guest": facts, "reboot_required": bool(pending)}

    def _read_back(self):
        self.live = None
        self.actual = None
        self._read()

    def _facts(self, domain, state, autostart):
        meta = domain.metadata()
        seed = meta.seed
        interfaces = dm.interface_facts(domain)
        for nic in interfaces:
            ips = self.ips.get(nic["mac"] or "", [])
            v4 = [ip for ip in ips if ":" not in ip]
            nic["ips"] = ips
            nic["ip"] = (v4 or ips or [None])[0]
        graphics = None
        gdevs = list(domain.graphics)
        if gdevs:
            graphics = {"type": gdevs[0].type, "listen": gdevs[0].listen}
            if self.live is not None and list(self.live.graphics):
                graphics["port"] = list(self.live.graphics)[0].port
        serials = list(domain.serials)
        return {
            "name": self.name,
            "uuid": domain.uuid,
            "state": state,
            "autostart": bool(autostart),
            "persistent": True,
            "virt_type": domain.virt_type,
            "machine": domain.machine,
            "arch": domain.arch,
            "memory_mb": domain.memory_mib,
            "max_memory_mb": domain.max_memory_mib,
            "vcpus": domain.vcpus,
            "max_vcpus": domain.max_vcpus,
            "cpu_mode": domain.cpu_mode,
            "firmware": domain.firmware,
            "secure_boot": domain.secure_boot,
            "boot": {"kernel": domain.kernel, "initrd": domain.initrd, "cmdline": domain.cmdline},
            "interfaces": interfaces,
            "disks": dm.disk_facts(domain, self._resolve_volume_path),
            "graphics": graphics,
            "console_log": dm.norm_path(serials[0].source_path) if serials and serials[0].type == "file" else None,
            "tags": meta.tags,
            "cloud_init": None if not seed else {"pool": seed.get("pool"), "volume": seed.get("volume"), "path": seed.get("path")},
            "created_volumes": meta.volumes,
        }


def _unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _lease_duration(net):
    """Seconds a DHCP lease of ``net`` lasts: its ``<lease expiry>``, else dnsmasq's default hour."""
    try:
        node = parse_xml(net.XMLDesc(0), what="network XML")
    except Exception:  # pylint: disable=broad-except
        return 3600
    lease = node.find("./ip/dhcp/range/lease")
    if lease is None or not (lease.get("expiry") or "").isdigit():
        return 3600
    factor = {"seconds": 1, "minutes": 60, "hours": 3600}.get(lease.get("unit") or "minutes", 60)
    return int(lease.get("expiry")) * factor or 3600


def _valid_hostname(name):
    return bool(re.match(r"^(?=.{1,63}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$", name or ""))
