# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""From ``kvm_guest``'s parameters to a resolved :class:`_guest_spec.GuestSpec`.

:class:`GuestResolver` validates every option before anything is read
(:meth:`GuestResolver.validate`), checks them against the host's capabilities,
and resolves disks (pools, volumes, paths, volumes to create), interfaces
(networks, bridges, MACs for new interfaces) and the cloud-init seed, so that
the builder gets plain data: paths, canonical machine names and MACs are
looked up here, before the build. It changes nothing on the host; the manager
(:mod:`_guest`) plans and applies.
"""

from __future__ import annotations

import hashlib
import os
import random
import re

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils._caps_xml import domain_capabilities_enums, host_guest_capabilities
from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._domain_boot import boot_options_spec, validate_boot_options
from ansible_collections.kvmops.virt.plugins.module_utils._domain_devices import interfaces_needing_mac
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._guest_others import OtherGuests
from ansible_collections.kvmops.virt.plugins.module_utils._host_guests import HostGuests
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size, parse_memory_mib, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name, is_hostname_label, normalize_mac
from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml

DISK_FORMATS = ("raw", "qcow2", "qed", "vmdk", "vdi", "vpc", "vhdx", "bochs", "cloop", "dmg", "iso")
SEED_SUFFIX = "-cidata.iso"
# libvirt's own directory of guest logs: a file there is a log, whoever made it
CONSOLE_LOG_DIR = "/var/log/libvirt/qemu"

# graphics.listen: an IPv4/IPv6 address or a host name (what libvirt's schema accepts).
_LISTEN_RE = re.compile(r"^(?:[0-9A-Fa-f:.]+|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))$")


def _storage_ops():
    # Storage operations are imported on first use: a run whose guest names no
    # disk, seed or removal does not load them (every import costs each task).
    from ansible_collections.kvmops.virt.plugins.module_utils import _storage_ops  # pylint: disable=import-outside-toplevel

    return _storage_ops


def _storage_xml():
    # The pool and volume models: only for guests whose disks name pools or volumes.
    from ansible_collections.kvmops.virt.plugins.module_utils import _storage_xml  # pylint: disable=import-outside-toplevel

    return _storage_xml


def _cloudinit():
    # The seed renderer is imported only for guests with cloud_init.
    from ansible_collections.kvmops.virt.plugins.module_utils import _cloudinit  # pylint: disable=import-outside-toplevel

    return _cloudinit


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


class GuestResolver(OtherGuests):
    """Validates ``kvm_guest``'s parameters and resolves them into a :class:`GuestSpec`."""

    def __init__(self, client, params, warnings, host_guests=None):
        self.client = client
        self.params = params
        self.warnings = warnings
        # The other guests of the host, read once (kvm_guests shares one HostGuests for all its items).
        self.host_guests = host_guests if host_guests is not None else HostGuests(client)
        self.name = params["name"]
        self.state = params["state"]
        self.actual = None        # persistent definition (Domain), set by resolve()
        self.cur_state = "absent"
        self.memory = None        # MiB, validated
        self.max_memory = None
        self.xml = None           # the parsed xml option
        self.to_create = []       # CreatedVolume
        self.seed_plan = None
        self._hv_type = None
        self._caps = None
        self._volume_paths = {}

    # -- input ------------------------------------------------------------------
    def validate(self):
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
        validate_boot_options(p)  # tpm, boot_order
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
            self._strip_collection_metadata(node)
            self.xml = node
        if p.get("wait_for_ip") and self.state != "running":
            raise InvalidArgument("wait_for_ip", "applies only with state: running, not '%s'" % self.state)

    def _strip_collection_metadata(self, node):
        """The record of created volumes and the seed is this collection's own
        knowledge of what it made; ``xml`` (often another guest's dumpxml) never
        provides it, or ``remove_storage`` would delete what that record names."""
        metadata = node.find("./metadata")
        if metadata is None:
            return
        found = metadata.findall("{%s}guest" % dm.NS)
        for old in found:
            metadata.remove(old)
        if found:
            self.warnings.append("xml: the kvmops guest metadata (created volumes, seed record) in the xml option was ignored; "
                                 "the collection keeps that record itself")

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
                _storage_ops().check_volume_name(d["volume"], opt + ".volume")
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
                mac = normalize_mac(n["mac"], opt + ".mac")
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

    # -- the host -----------------------------------------------------------------
    def _hypervisor(self):
        if self._hv_type is None:
            self._hv_type = self.client.call("reading the hypervisor type", self.client.conn.getType)
        return self._hv_type

    def _host_caps(self):
        """The host's capabilities (:func:`_caps_xml.host_guest_capabilities`), read once; empty when unreadable."""
        if self._caps is None:
            try:
                self._caps = host_guest_capabilities(self.client.capabilities_xml())
            except VirtError:
                self._caps = {"arch": None, "guests": {}}
        return self._caps

    def _resolve_machine(self, name):
        for entry in self._host_caps()["guests"].values():
            if name in entry["canonical"]:
                return entry["canonical"][name]
        return name

    def _domcaps(self, virt_type, arch, machine):
        try:
            root = parse_xml(self.client.domain_capabilities_xml(None, arch, machine, virt_type), what="domain capabilities")
        except VirtError:
            return None
        return domain_capabilities_enums(root)

    def _check_host(self):
        """What the hypervisor can do: virt_type, machine, cpu_mode, UEFI."""
        p = self.params
        if self._hypervisor() != "QEMU":
            return
        caps = self._host_caps()
        arch = (self.actual.arch if self.actual is not None else None) or caps["arch"] or "x86_64"
        entry = caps["guests"].get(arch)
        virt_type = p.get("virt_type") or (self.actual.virt_type if self.actual is not None else "kvm")
        if entry is not None and p.get("virt_type") and entry["domain_types"] and virt_type not in entry["domain_types"]:
            raise InvalidArgument(
                "virt_type", "'%s' is not available on uri '%s' for %s guests (available: %s)%s" % (
                    virt_type, self.client.uri, arch, ", ".join(sorted(entry["domain_types"])),
                    "; without a usable /dev/kvm use virt_type: qemu (software emulation)" if virt_type == "kvm" else "")
            )
        if self.actual is None and not p.get("virt_type") and entry is not None and entry["domain_types"] and "kvm" not in entry["domain_types"]:
            raise InvalidArgument("virt_type", "the default 'kvm' is not available on uri '%s' (no usable /dev/kvm); set virt_type: qemu" % self.client.uri)
        machine = p.get("machine")
        if machine and entry is not None and entry["canonical"]:
            known = set(entry["canonical"]) | set(entry["canonical"].values())
            if machine not in known:
                raise InvalidArgument("machine", "unknown machine type '%s' for %s guests; known: %s"
                                      % (machine, arch, ", ".join(sorted(a for a in entry["canonical"] if "-" not in a) or sorted(known))))
        wants_uefi = p.get("firmware") == "uefi" and (self.actual is None or self.actual.firmware != "uefi" or p.get("secure_boot"))
        cpu_mode = p.get("cpu_mode")
        if not wants_uefi and not cpu_mode:
            return
        eff_machine = machine or (self.actual.machine if self.actual is not None else "q35")
        dcaps = self._domcaps(virt_type, arch, eff_machine)
        if dcaps is None:
            return
        if cpu_mode:
            if dcaps["cpu_modes"].get(cpu_mode) == "no":
                raise InvalidArgument("cpu_mode", "'%s' is not supported for virt_type %s on uri '%s'" % (cpu_mode, virt_type, self.client.uri))
        if wants_uefi:
            fw = dcaps["firmware"]
            if fw and "efi" not in fw:
                raise InvalidArgument("firmware", "no UEFI firmware is available on uri '%s' (install OVMF / edk2)" % self.client.uri)
            if p.get("secure_boot"):
                secure = dcaps["secure"]
                if secure and "yes" not in secure:
                    raise InvalidArgument("secure_boot", "no secure boot firmware is available for machine '%s' on uri '%s'" % (eff_machine, self.client.uri))

    # -- the spec -----------------------------------------------------------------
    def resolve(self, actual, cur_state, check_mode):
        """The :class:`GuestSpec` of the guest whose persistent definition is ``actual`` (``None``: new).

        Reads the host's capabilities, pools, volumes and networks the options
        name; records the volumes to create (:attr:`to_create`) and the seed to
        build (:attr:`seed_plan`). Changes nothing on the host.
        """
        self.actual = actual
        self.cur_state = cur_state
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
        spec.tpm, spec.boot_order = boot_options_spec(p)
        if p.get("graphics") is not None:
            g = p["graphics"]
            spec.graphics = gs.GraphicsSpec(g["type"], g.get("listen"), g.get("password"))
        spec.console_log = dm.norm_path(p.get("console_log"))
        self._check_console_log(spec.console_log)
        if p.get("tags") is not None:
            spec.tags = gs.unique(p["tags"])
        spec.xml = self.xml
        if spec.secure_boot and self._effective_machine_family(spec) == "i440fx":
            raise InvalidArgument("secure_boot", "requires a q35 machine type (SMM); the guest's machine is '%s'" % (spec.machine or self.actual.machine))
        self._resolve_disks(spec)
        self._resolve_interfaces(spec)
        self._resolve_seed(spec)
        spec.created_volumes = [(c.pool_name, c.name, c.path) for c in self.to_create]
        if self.seed_plan is not None and self.seed_plan["rebuild"]:
            spec.created_volumes.append((self.seed_plan["pool_name"], self.seed_plan["name"], self.seed_plan["path"]))
        spec.volume_paths = self.volume_paths_of(self.actual)
        if spec.machine and self.actual is not None:
            spec.machine_names = self.machine_names(spec.machine, self.actual.machine)
        if not check_mode:
            # generated here, not by the builder: the spec stays plain data
            spec.new_macs = self._new_macs(interfaces_needing_mac(self.actual, spec.interfaces))
        return spec

    def _seed_digests(self, files):
        """``(digest, {file: digest}, salt)`` of the seed files.

        The salt is the guest's own (random, kept in its metadata). A seed
        recorded before per-guest salts is read with the old fixed salt: when
        its content is unchanged it stays as it is (no change reported); a
        changed seed gets a new salt."""
        ci = _cloudinit()

        def digests(salt):
            return ci.seed_digest(files, salt), dict((n, ci.seed_digest({n: c}, salt)) for n, c in files.items())

        recorded = self.actual.metadata().seed if self.actual is not None else None
        compare = None
        if recorded is not None:
            salt = recorded.get("salt")
            digest, per_file = digests(salt)
            if salt or digest == recorded.get("digest"):
                return digest, per_file, salt, None
            # a legacy record whose content changed: compare per file with the old salt, record with a new one
            compare = per_file
        salt = ci.new_salt()
        digest, per_file = digests(salt)
        return digest, per_file, salt, compare

    def _check_console_log(self, path):
        """The guest's start truncates its console log: an existing file is
        taken only when it is already this guest's log, empty, or in libvirt's
        own log directory. Checked on the hypervisor's host only (a remote
        host's files cannot be seen from here)."""
        if path is None or not is_local_uri(self.client.uri) or not os.path.lexists(path):
            return
        if self.actual is not None:
            for dev in list(self.actual.serials) + list(self.actual.consoles):
                if dev.type == "file" and dm.norm_path(dev.source_path) == path:
                    return
        why = None
        if os.path.islink(path) or not os.path.isfile(path):
            why = "it is not a regular file"
        elif os.path.getsize(path) > 0 and not path.startswith(CONSOLE_LOG_DIR + "/"):
            why = "it holds %d bytes" % os.path.getsize(path)
        if why:
            raise InvalidArgument("console_log", "%s exists and is not a console log of guest '%s' (%s); starting the guest would "
                                  "truncate it: choose a new path, remove the file, or use a path under %s"
                                  % (path, self.name, why, CONSOLE_LOG_DIR))

    def _effective_machine_family(self, spec):
        machine = spec.machine or (self.actual.machine if self.actual is not None else None)
        if machine is None and self.xml is not None:
            node = self.xml.find("./os/type")
            machine = node.get("machine") if node is not None else None
        return dm.machine_family(machine or "q35")

    def _require_active_pool(self, name, option):
        pool = self.client.require_pool(name, option=option)
        if not pool.isActive():
            raise InvalidArgument(option, "storage pool '%s' is not active; start it first (kvmops.virt.storage_pool with state: active)" % name)
        return pool

    def _pool_model(self, pool):
        return _storage_xml().PoolXML.from_xml(self.client.call("reading storage pool '%s'" % pool.name(), pool.XMLDesc, 0))

    def lookup_volume(self, pool, name):
        vol = self.client.lookup_volume(pool, name)
        if vol is None:
            _storage_ops().refresh_pool(self.client, pool)
            vol = self.client.lookup_volume(pool, name)
        return vol

    def _volume_info(self, vol, pool_name):
        facts = _storage_ops().volume_facts(self.client, vol, pool_name)
        vtype = self.client.call("reading volume '%s'" % vol.name(), vol.info)[0]
        source_type = "block" if vtype == flag("VIR_STORAGE_VOL_BLOCK", 1) else "file"
        return facts, source_type

    def resolve_volume_path(self, pool_name, vol_name):
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
                vol = self.lookup_volume(pool, d["volume"])
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
                    fmt, _virtual, _size, _backing = _storage_ops().inspect_image(path, opt + ".path")
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
        pools = self.client.list_pools()
        for pool in pools:
            if not pool.isActive():
                continue
            model = self._pool_model(pool)
            if model.type in _storage_xml().FILE_POOL_TYPES and model.path and os.path.normpath(model.path) == parent:
                return pool, pool.name()
        raise InvalidArgument(opt + ".path", "'%s' does not exist, and no active storage pool holds the directory '%s' to create "
                              "it in; create the pool first (kvmops.virt.storage_pool) or use pool and volume" % (path, parent))

    def _plan_volume(self, ds, opt, pool, pool_name, vol_name, size, d):
        """A disk to create from ``size`` (or as an overlay of ``backing_volume``)."""
        _storage_ops().check_volume_name(vol_name, opt + ".volume")
        model = self._pool_model(pool)
        fmt = d.get("format") or ("qcow2" if model.type in _storage_xml().FILE_POOL_TYPES else "raw")
        if fmt not in ("raw",) and model.type not in _storage_xml().FILE_POOL_TYPES:
            raise InvalidArgument(opt + ".format", "'%s' pools hold raw volumes only; use format: raw" % model.type)
        backing_path = backing_format = None
        if d.get("backing_volume"):
            if model.type not in _storage_xml().FILE_POOL_TYPES:
                raise InvalidArgument(opt + ".backing_volume", "overlays need a pool of files (dir, fs, netfs); '%s' is a '%s' pool"
                                      % (pool_name, model.type))
            fmt = "qcow2"
            backing_path, backing_format, backing_capacity = _storage_ops().resolve_backing(self.client, pool, d["backing_volume"], opt + ".backing_volume")
            if size is None:
                size = backing_capacity
            elif backing_capacity and size < backing_capacity:
                raise InvalidArgument(opt + ".size", "an overlay cannot be smaller than its backing volume: %s < %s (%s)"
                                      % (human_size(size), human_size(backing_capacity), backing_path))
        path = os.path.join(model.path or "/", vol_name)
        file_pool = model.type in _storage_xml().FILE_POOL_TYPES
        xml = _storage_xml().volume_xml(vol_name, size, fmt=fmt, backing_path=backing_path, backing_format=backing_format,
                                        allocation_bytes=0 if file_pool else None)
        ds.path = dm.norm_path(path)
        ds.default_format = fmt
        ds.source_type = "file" if model.type in _storage_xml().FILE_POOL_TYPES else "block"
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
            mac = normalize_mac(n["mac"], opt + ".mac") if n.get("mac") else None
            spec.interfaces.append(gs.NicSpec(i, kind, source, n.get("model"), mac))

    def _new_macs(self, count):
        """``count`` MACs no guest of the host uses."""
        if not count:
            return []  # most runs need no new MAC; reading every guest's XML costs each task O(guests)
        used = self.host_guests.macs()
        macs = []
        while len(macs) < count:
            mac = "52:54:00:%02x:%02x:%02x" % (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))
            if mac not in used:
                used.add(mac)
                macs.append(mac)
        self.host_guests.reserved_macs.update(macs)
        return macs

    def volume_paths_of(self, domain):
        """``{(pool, volume): path}`` of the ``type='volume'`` disks of ``domain``."""
        paths = {}
        for disk in [] if domain is None else domain.disks:
            if disk.type == "volume" and disk.source_pool and disk.source_volume:
                key = (disk.source_pool, disk.source_volume)
                paths[key] = self.resolve_volume_path(*key)
        return paths

    def machine_names(self, *names):
        """``{name: canonical machine}`` for the machine names the builder compares."""
        return dict((name, self._resolve_machine(name)) for name in names if name)

    def _resolve_seed(self, spec):
        ci = self.params.get("cloud_init")
        if ci is None:
            return
        hostname = self.name if is_hostname_label(self.name) else None
        try:
            files = _cloudinit().render_seed(user_data=ci.get("user_data"), meta_data=ci.get("meta_data"),
                                             network_config=ci.get("network_config"), hostname=hostname)
        except InvalidArgument as e:
            option = e.option or "cloud_init"
            msg = e.msg
            if option in ("user_data", "meta_data", "network_config") or option.split(".")[0].split("[")[0] in (
                    "user_data", "meta_data", "network_config"):
                msg = "cloud_init." + msg
                option = "cloud_init." + option
            raise InvalidArgument(option, msg.split(": ", 1)[1] if ": " in msg else msg)
        digest, per_file, salt, compare = self._seed_digests(files)
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
        _storage_ops().check_volume_name(vol_name, "name")
        vol = self.lookup_volume(pool, vol_name)
        model = self._pool_model(pool)
        if model.type not in _storage_xml().FILE_POOL_TYPES:
            raise InvalidArgument(option, "the seed ISO needs a pool of files (dir, fs, netfs); '%s' is a '%s' pool" % (pool_name, model.type))
        path = self.client.call("reading volume '%s'" % vol_name, vol.path) if vol is not None else os.path.join(model.path or "/", vol_name)
        seed = gs.SeedSpec(pool_name, vol_name, path, digest, per_file, salt)
        seed.compare = compare
        # a new salt is random: diffs show a plain SHA-256 of the (non-secret) files instead,
        # so that check mode and the real run print the same; user-data is masked anyway
        seed.labels = dict((n, hashlib.sha256(c).hexdigest() if n != "user-data" else "secret") for n, c in files.items())
        recorded = self.actual.metadata().seed if self.actual is not None else None
        ours = (recorded is not None and recorded.get("volume") == vol_name and recorded.get("pool") in (None, pool_name)
                and dm.norm_path(recorded.get("path")) == seed.path)
        from ansible_collections.kvmops.virt.plugins.module_utils import _iso9660 as iso  # pylint: disable=import-outside-toplevel
        head = _storage_ops().read_bytes(self.client, vol, 0, iso.SEED_HEAD) if vol is not None else None
        # complete, interrupted (this guest's mark, no volume descriptor) or other; complete when the driver cannot read
        state = None if vol is None else "complete" if head is None else iso.seed_state(head, self.name)
        if vol is not None and not ours and state == "interrupted":
            # this collection's own upload for this guest that did not finish (a new guest is defined after its seed)
            self.warnings.append("cloud_init: volume '%s' in storage pool '%s' is a seed of guest '%s' whose upload did not "
                                 "finish (no file system); it is built again" % (vol_name, pool_name, self.name))
        elif vol is not None and not ours:
            # never deleted, rebuilt or adopted: remove_storage would delete it later
            raise InvalidArgument("cloud_init", "volume '%s' already exists in storage pool '%s' (%s) and this collection did not "
                                  "create it as the seed of guest '%s'; it is never deleted, rebuilt or adopted: remove or rename "
                                  "it yourself (storage_volume state: absent, if it is a leftover of a failed run), or put the "
                                  "seed in another pool with cloud_init.pool" % (vol_name, pool_name, seed.path, self.name))
        incomplete = state == "interrupted" or (ours and state == "other")
        rebuild = vol is None or incomplete or recorded is None or recorded.get("digest") != digest or dm.norm_path(recorded.get("path")) != seed.path
        self.seed_plan = dict(pool=pool, pool_name=pool_name, name=vol_name, vol=vol, files=files, path=seed.path,
                              rebuild=rebuild, missing=vol is None and recorded is not None and recorded.get("digest") == digest,
                              incomplete=incomplete)
        spec.seed = seed
