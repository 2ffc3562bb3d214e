# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resolved request of ``kvm_guest``: plain data, no connection, no callables.

:mod:`_guest_resolve` turns the module's parameters into a :class:`GuestSpec`
(paths of volumes, canonical machine names and the MACs of new interfaces are
looked up *before* the build); :mod:`_domain_builder` reads it and never calls
back into the manager. :class:`Change` is one difference the builder found.
"""

from __future__ import annotations

import copy

from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import CONFIG, cdrom_bus, norm_path


class DiskSpec:
    """One entry of ``disks`` (or the seed cdrom), resolved to a path.

    ``user`` holds what the user gave, for diffs (``pool``/``volume`` or ``path``, ``size``...).
    ``bus``/``format``/``target`` are ``None`` when not given (defaults apply to new disks only,
    ``default_bus``/``default_format`` hold them).
    """

    def __init__(self, index=None, device="disk", path=None, source_type="file", bus=None, fmt=None,
                 target=None, user=None, default_bus=None, default_format=None, seed=False):
        self.index = index
        self.device = device
        self.path = norm_path(path)
        self.source_type = source_type
        self.bus = bus
        self.format = fmt
        self.target = target
        self.user = user or {}
        self.default_bus = default_bus
        self.default_format = default_format
        self.seed = seed

    @property
    def option(self):
        return "disks[%d]" % self.index if self.index is not None else "cloud_init"

    def effective_bus(self, machine):
        if self.bus:
            return self.bus
        if self.default_bus:
            return self.default_bus
        return cdrom_bus(machine) if self.device == "cdrom" else "virtio"


class NicSpec:
    def __init__(self, index, kind, source, model=None, mac=None):
        self.index = index
        self.kind = kind
        self.source = source
        self.model = model
        self.mac = mac

    def user(self):
        out = {self.kind: self.source, "model": self.model or "virtio"}
        if self.mac:
            out["mac"] = self.mac
        return out


class GraphicsSpec:
    def __init__(self, gtype, listen=None, password=None):
        self.type = gtype
        self.listen = listen
        self.password = password


class TpmSpec:
    """``tpm``: ``present`` False removes the TPM; ``model``/``version`` are ``None`` when not given."""

    def __init__(self, present=True, model=None, version=None):
        self.present = present
        self.model = model
        self.version = version


class SeedSpec:
    """The cloud-init seed: its volume path, per-file digests and overall digest."""

    def __init__(self, pool, volume, path, digest, files, salt=None):
        self.pool = pool
        self.volume = volume
        self.path = norm_path(path)
        self.digest = digest
        self.files = files  # {file name: digest}
        self.salt = salt    # the guest's digest salt (None: a record from before per-guest salts)
        self.compare = None  # {file name: digest} under the recorded salt, when the salt changes
        self.labels = {}     # {file name: label} shown in diffs (the same in check mode and in the real run)
        self.target = None

    def record(self):
        return dict(digest=self.digest, pool=self.pool, volume=self.volume, path=self.path, files=dict(self.files), salt=self.salt)


class GuestSpec:
    """Everything the user asked for, normalized; ``None`` means "not specified"."""

    def __init__(self, name):
        self.name = name
        self.virt_type = None
        self.machine = None
        self.arch = None
        self.memory = None       # MiB
        self.max_memory = None   # MiB
        self.vcpus = None
        self.max_vcpus = None
        self.cpu_mode = None
        self.cpu_model = None
        self.firmware = None
        self.secure_boot = None
        self.kernel = None       # "" removes direct kernel boot
        self.initrd = None
        self.cmdline = None
        self.disks = None        # list of DiskSpec (exhaustive when not None)
        self.interfaces = None   # list of NicSpec (exhaustive when not None)
        self.graphics = None
        self.console_log = None
        self.tpm = None          # TpmSpec
        self.boot_order = None   # list of "hd", "cdrom", "network"
        self.tags = None
        self.seed = None         # SeedSpec
        self.created_volumes = []  # (pool, name, path) created by this run
        self.xml = None          # parsed <domain> element of the xml option
        # Tuning, host devices and shares (_domain_tuning); CPU sets are sorted tuples of CPU numbers:
        self.cpu_pinning = None      # {vcpu: cpus} (exhaustive when not None)
        self.emulator_cpuset = None  # cpus; () removes the emulator pinning
        self.numa = None             # {"cells": [{"cpus", "memory" (MiB), "nodeset", "mode"}], "nodeset", "mode"}
        self.hugepages = None        # page size in KiB, 0 for the host's default size, "" removes huge pages
        self.hostdevs = None         # [{"type": "pci"|"usb"|"mdev", "address"|"vendor"+"product"|"uuid", "managed"|"model"}]
        self.filesystems = None      # [{"source": directory, "target": mount tag}] (exhaustive when not None)
        self.host_cpus = None        # how many CPUs the host has (a pin to all of them is no pin)
        # Resolved before the build (the builder never asks the manager):
        self.new_macs = []       # MACs for the interfaces the build creates without one, in order (empty: libvirt picks)
        self.machine_names = {}  # machine alias -> canonical name ("q35" -> "pc-q35-7.2")
        self.volume_paths = {}   # (pool, volume) -> path, for the type='volume' disks of the actual guest

    def for_live_comparison(self):
        """A copy for comparing with the running guest: no new MACs, no volumes created by this run."""
        other = copy.copy(self)
        other.new_macs = []
        other.created_volumes = []
        return other

    def canonical_machine(self, name):
        """``name`` as the host calls its canonical machine (``None`` stays ``None``)."""
        if not name:
            return None
        return self.machine_names.get(name) or name

    def volume_path(self, pool, volume):
        return self.volume_paths.get((pool, volume))


class Change:
    """One difference between the actual and the desired guest."""

    __slots__ = ("path", "before", "after", "kind", "secret", "data")

    def __init__(self, path, before, after, kind=CONFIG, secret=False, data=None):
        self.path = path
        self.before = before
        self.after = after
        self.kind = kind
        self.secret = secret
        self.data = data or {}

    def __repr__(self):
        return "Change(%s: %r -> %r, %s)" % (self.path, "***" if self.secret else self.before,
                                             "***" if self.secret else self.after, self.kind)


def unique(items):
    """``items`` without repetitions, in their first order."""
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
