# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of ``kvm_migrate``.

It opens a second connection, to the destination (a ``LibvirtClient`` like the
source's), runs every preflight (the destination answers and is another host,
the guest's CPU runs there, the networks and pools its devices use exist and are
active there, its disks are on storage the destination sees or are copied), and
plans one migration. Check mode runs the same preflights and reports the plan.
The migration runs in a thread while this one watches the job: past ``timeout``
it is cancelled (``abortJob``) and the guest keeps running on the source.
"""

from __future__ import annotations

import os
import threading
import time

from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient, flag, resolve_uri, uri_host
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain
from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    ConnectionFailed,
    InvalidArgument,
    NotFound,
    OperationFailed,
)
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size
from ansible_collections.kvmops.virt.plugins.module_utils._storage_ops import (
    copy_volume,
    create_volume,
    delete_volume,
    live_pool_model,
    refresh_pool,
)
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import VolumeXML, normalize_path, volume_xml
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name
from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml, to_string

COPY_STORAGE = ("none", "all")
# How often the running migration's job is read (and the timeout checked), in seconds.
POLL_INTERVAL = 0.5
MIB = 1024 * 1024


def decide(live, source_state, destination_state):
    """What to do, from where the guest is: ``"migrate"`` or ``"done"``; raises for the impossible cases.

    ``source_state`` and ``destination_state`` are ``"running"`` (active), ``"defined"``
    (an inactive definition) or ``None`` (no such guest there).
    """
    if source_state == "running" and destination_state == "running":
        return "both"
    if live:
        if destination_state == "running":
            return "done"
        if source_state == "running":
            return "migrate"
        return "not running" if source_state == "defined" else "missing"
    if source_state == "running":
        return "running"
    if source_state is None:
        return "done" if destination_state is not None else "missing"
    return "migrate"


def migration_flags(live, copy_storage, persistent, undefine_source):
    """The ``VIR_MIGRATE_*`` flags of a migration (without ``PEER2PEER``, which the client adds)."""
    flags = 0
    if live:
        flags |= flag("VIR_MIGRATE_LIVE", 1)
    else:
        flags |= flag("VIR_MIGRATE_OFFLINE", 1024)
    if persistent:
        flags |= flag("VIR_MIGRATE_PERSIST_DEST", 8)
    if undefine_source:
        flags |= flag("VIR_MIGRATE_UNDEFINE_SOURCE", 16)
    if copy_storage == "all" and live:
        # offline, libvirt moves the definition only: the manager copies the volumes itself first
        flags |= flag("VIR_MIGRATE_NON_SHARED_DISK", 64)
    return flags


def migration_params(bandwidth=None, migration_uri=None, listen_address=None):
    """The typed parameters of ``migrateToURI3``/``migrate3``."""
    params = {}
    if bandwidth:
        params[flag("VIR_MIGRATE_PARAM_BANDWIDTH", "bandwidth")] = int(bandwidth)
    if migration_uri:
        params[flag("VIR_MIGRATE_PARAM_URI", "migrate_uri")] = migration_uri
    if listen_address:
        params[flag("VIR_MIGRATE_PARAM_LISTEN_ADDRESS", "listen_address")] = listen_address
    return params


def migrated_disks(domain):
    """The disks a migration carries: writable disks with a source (not cdroms, floppies, readonly or shared ones)."""
    found = []
    for disk in domain.disks:
        if disk.device in ("cdrom", "floppy") or disk.readonly or disk.find("./shareable") is not None:
            continue
        if disk.type == "network" or (disk.type != "volume" and not disk.path()):
            continue
        found.append(disk)
    return found


class MigrationManager(Manager):
    """Plans and applies one ``kvm_migrate`` run."""

    def __init__(self, module, client):
        super().__init__(module, client)
        self.name = self.params["name"]
        self.live = self.params["live"]
        self.copy_storage = self.params["copy_storage"]
        self.dest = LibvirtClient(self.params["destination_uri"], option="destination_uri")
        self.seconds = None
        self.copied = None
        self.moved = False
        # offline with copy_storage: all, the volumes this module streams to the destination
        self.offline_copies = []

    # -- input ------------------------------------------------------------
    def validate(self):
        p = self.params
        check_name(self.name, "name", what="guest")
        if not p["destination_uri"]:
            raise InvalidArgument("destination_uri", "must not be empty")
        if resolve_uri(p["destination_uri"]) == self.client.uri:
            raise InvalidArgument("destination_uri", "is the source uri '%s'; a guest migrates to another host" % self.client.uri)
        if p["timeout"] < 1:
            raise InvalidArgument("timeout", "must be at least 1 second, got %d" % p["timeout"])
        if p["bandwidth"] is not None and p["bandwidth"] < 1:
            raise InvalidArgument("bandwidth", "must be at least 1 MiB/s, got %d" % p["bandwidth"])
        if not self.live and not p["persistent"]:
            raise InvalidArgument("persistent", "live: false moves the guest's definition, so it needs persistent: true")
        if p["migration_uri"] and "://" not in p["migration_uri"]:
            raise InvalidArgument("migration_uri", "must be a URI such as tcp://192.0.2.10 (or tcp://192.0.2.10:49152), got '%s'"
                                  % p["migration_uri"])
        if p["peer_to_peer"] and not uri_host(self.dest.uri) and uri_host(self.client.uri):
            raise InvalidArgument(
                "peer_to_peer", "destination_uri '%s' names no host, but peer to peer the daemon of the source host "
                "'%s' connects to it and would reach itself; give a URI of the destination that works from the "
                "source host, or set peer_to_peer: false" % (self.dest.uri, uri_host(self.client.uri)))

    # -- planning ---------------------------------------------------------
    def run(self):
        try:
            return super().run()
        finally:
            self.dest.close()

    def plan(self):
        self.validate()
        try:
            self.dest.open()
        except ConnectionFailed as e:
            raise ConnectionFailed("destination_uri: %s" % e.msg, code=e.code, uri=e.uri, option="destination_uri")
        self._check_other_host()
        src_dom = self.client.lookup_domain(self.name)
        dst_dom = self.dest.lookup_domain(self.name)
        what = decide(self.live, _state(src_dom), _state(dst_dom))
        where = (self.name, self.client.uri, self.dest.uri)
        if what == "done":
            if src_dom is not None:
                self.warnings.append("guest '%s' runs on destination_uri '%s'; the source uri '%s' still has an inactive "
                                     "definition of it, left as it is" % (self.name, self.dest.uri, self.client.uri))
            return
        if what == "both":
            raise OperationFailed("name: guest '%s' is running on both uri '%s' and destination_uri '%s'; stop one of them"
                                  % where, uri=self.client.uri, option="name")
        if what == "missing":
            raise NotFound("name: guest '%s' exists neither on uri '%s' nor on destination_uri '%s'" % where,
                           uri=self.client.uri, option="name")
        if what == "not running":
            raise InvalidArgument("live", "guest '%s' is not running on uri '%s'; live migration moves a running guest "
                                          "(use live: false to move a shut-off guest's definition)" % where[:2])
        if what == "running":
            raise InvalidArgument("live", "guest '%s' is running on uri '%s'; live: false moves only a shut-off guest "
                                          "(use live: true)" % where[:2])
        flags = 0 if self.live else flag("VIR_DOMAIN_XML_INACTIVE", 2)
        domain = Domain.from_xml(self.client.call("reading guest '%s'" % self.name, src_dom.XMLDesc,
                                                  flags | flag("VIR_DOMAIN_XML_MIGRATABLE", 8)))
        self._check_cpu(domain)
        self._check_networks(domain)
        copied = self._check_storage(src_dom, domain)
        if self.live:
            self._check_memory(domain)
        self.diff.add("uri", self.client.uri, self.dest.uri)
        self.act(self._describe(copied), lambda: self._migrate(src_dom))

    def _check_other_host(self):
        ids = []
        for client in (self.client, self.dest):
            root = parse_xml(client.capabilities_xml(), "capabilities")
            ids.append(root.findtext("./host/uuid"))
        if ids[0] and ids[0] == ids[1]:
            raise InvalidArgument("destination_uri", "uri '%s' reaches the same host as the source uri '%s' (host UUID %s); "
                                  "a guest migrates to another host" % (self.dest.uri, self.client.uri, ids[0]))

    def _check_cpu(self, domain):
        cpu = domain.find("./cpu")
        mode = cpu.get("mode") if cpu is not None else None
        if cpu is None or (mode in (None, "custom") and cpu.find("./model") is None):
            return  # the hypervisor's default model, which every host of it provides
        if mode in ("host-passthrough", "maximum"):
            host_cpu = parse_xml(self.client.capabilities_xml(), "capabilities").find("./host/cpu")
            ok, reason = self.dest.compare_cpu(to_string(host_cpu), hypervisor=False)
            model = "%s (the source host's CPU)" % mode
        else:
            ok, reason = self.dest.compare_cpu(to_string(cpu), arch=domain.arch, machine=domain.machine,
                                               virttype=domain.virt_type)
            model = domain.cpu_model or mode
        if ok is None:
            self.warnings.append("destination_uri: the CPU of guest '%s' was not compared with uri '%s': %s"
                                 % (self.name, self.dest.uri, reason))
        elif not ok:
            raise OperationFailed(
                "destination_uri: the CPU of guest '%s' (%s) is not compatible with the host at uri '%s': %s; "
                "give the guest a CPU model both hosts provide (kvm_guest cpu_mode: custom and cpu_model)"
                % (self.name, model, self.dest.uri, reason), uri=self.dest.uri, option="destination_uri")

    def _check_networks(self, domain):
        for iface in domain.interfaces:
            if iface.type != "network" or not iface.source_network:
                continue
            net = self.dest.lookup_network(iface.source_network)
            state = None if net is None else ("active" if net.isActive() else "inactive")
            if state != "active":
                raise NotFound(
                    "destination_uri: network '%s' of guest '%s' (interface %s) %s on uri '%s'; create and start it "
                    "there first (kvmops.virt.virtio_network)"
                    % (iface.source_network, self.name, iface.mac, "does not exist" if state is None else "is not active",
                       self.dest.uri), uri=self.dest.uri, option="destination_uri")

    def _dest_pools_by_path(self):
        pools = {}
        for pool in self.dest.list_pools():
            model = live_pool_model(self.dest, pool)
            if model.path:
                pools[normalize_path(model.path)] = pool
        return pools

    def _check_storage(self, src_dom, domain):
        """``[(target, bytes)]`` of the disks to copy (empty with copy_storage: none)."""
        copied = []
        pools = None
        for disk in migrated_disks(domain):
            if disk.type == "volume":
                pool = self.dest.lookup_pool(disk.source_pool)
                if pool is None or not pool.isActive():
                    raise NotFound("destination_uri: storage pool '%s' of disk %s of guest '%s' %s on uri '%s'"
                                   % (disk.source_pool, disk.target, self.name,
                                      "does not exist" if pool is None else "is not active", self.dest.uri),
                                   uri=self.dest.uri, option="destination_uri")
                present = self._volume_present(pool, disk.source_volume)
                path = "%s/%s" % (disk.source_pool, disk.source_volume)
            elif disk.type == "file":
                path = disk.path()
                if pools is None:
                    pools = self._dest_pools_by_path()
                pool = pools.get(normalize_path(os.path.dirname(path)))
                if pool is not None and not pool.isActive():
                    raise NotFound("destination_uri: storage pool '%s' (path %s) for disk %s of guest '%s' is not active "
                                   "on uri '%s'" % (pool.name(), os.path.dirname(path), disk.target, self.name, self.dest.uri),
                                   uri=self.dest.uri, option="destination_uri")
                present = pool is not None and self._volume_present(pool, os.path.basename(path))
                if not present and self.copy_storage == "all" and pool is None:
                    raise NotFound(
                        "copy_storage: uri '%s' has no storage pool with the path %s, where libvirt creates the copy of "
                        "disk %s (%s) of guest '%s'; create a dir pool with that path there first "
                        "(kvmops.virt.storage_pool)" % (self.dest.uri, os.path.dirname(path), disk.target, path, self.name),
                        uri=self.dest.uri, option="copy_storage")
            else:  # block devices: libvirt sees them on the destination only inside a pool
                pool = None
                path = disk.path()
                present = self.dest.lookup_volume_by_path(path) is not None
            if self.copy_storage == "none" and not present:
                raise NotFound(
                    "copy_storage: disk %s of guest '%s' (%s) is not on storage that uri '%s' sees; use copy_storage: all "
                    "to copy it, or keep it on storage both hosts share (a pool with the same path on both)"
                    % (disk.target, self.name, path, self.dest.uri), uri=self.dest.uri, option="copy_storage")
            if self.copy_storage == "all":
                if not self.live:
                    self._plan_offline_copy(disk, path, pool, present)
                copied.append((disk.target, self._disk_bytes(src_dom, disk)))
        return copied

    def _plan_offline_copy(self, disk, path, dest_pool, present):
        """Offline, libvirt moves only the definition: each disk's volume is created on the destination
        (same pool path, name, format and backing file) and its file streamed there before the move."""
        if present:
            raise OperationFailed(
                "copy_storage: disk %s of guest '%s' (%s) already exists on uri '%s'; an offline copy never overwrites "
                "a volume: remove it there, or use copy_storage: none to use it" % (disk.target, self.name, path, self.dest.uri),
                uri=self.dest.uri, option="copy_storage")
        if dest_pool is None:
            raise InvalidArgument(
                "copy_storage", "disk %s of guest '%s' (%s) is a %s, not a file of a storage pool; an offline move copies "
                "files only: start the guest and move it live, or use copy_storage: none"
                % (disk.target, self.name, path, disk.type))
        if disk.type == "volume":
            src_pool = self.client.require_pool(disk.source_pool, option="name")
            src_vol = self.client.lookup_volume(src_pool, disk.source_volume)
        else:
            src_vol = self.client.lookup_volume_by_path(path)
        if src_vol is None:
            raise NotFound(
                "copy_storage: disk %s of guest '%s' (%s) is in no storage pool on uri '%s', so it cannot be streamed to "
                "uri '%s'; create a dir pool for its directory there first (kvmops.virt.storage_pool)"
                % (disk.target, self.name, path, self.client.uri, self.dest.uri), uri=self.client.uri, option="copy_storage")
        model = VolumeXML.from_xml(self.client.call("reading volume '%s'" % src_vol.name(), src_vol.XMLDesc, 0))
        if model.backing_path and self.dest.lookup_volume_by_path(model.backing_path) is None:
            raise NotFound(
                "copy_storage: disk %s of guest '%s' is an overlay of %s, which uri '%s' does not have in a storage pool; "
                "copy that base image there first (the same path), then move the guest"
                % (disk.target, self.name, model.backing_path, self.dest.uri), uri=self.dest.uri, option="copy_storage")
        xml = volume_xml(src_vol.name(), model.capacity, fmt=model.format, backing_path=model.backing_path,
                         backing_format=model.backing_format)
        self.offline_copies.append((disk.target, src_vol, dest_pool, xml))

    def _volume_present(self, pool, name):
        refresh_pool(self.dest, pool)
        return self.dest.lookup_volume(pool, name) is not None

    def _disk_bytes(self, src_dom, disk):
        try:
            return src_dom.blockInfo(disk.target)[0]
        except Exception:  # pylint: disable=broad-except  # an inactive guest's disk: size unknown here
            return None

    def _check_memory(self, domain):
        need = domain.memory_mib
        free = self.dest.free_memory() // MIB
        if need and free < need:
            self.warnings.append("uri '%s' has %d MiB of free memory, guest '%s' uses %d MiB; the destination may swap or "
                                 "refuse to start it" % (self.dest.uri, free, self.name, need))

    def _describe(self, copied):
        p = self.params
        how = ["live" if self.live else "offline", "peer to peer" if p["peer_to_peer"] else "client managed"]
        if copied:
            total = sum(b or 0 for _t, b in copied)
            how.append("copy storage: %s (%s)" % (", ".join(t for t, _b in copied), human_size(total)))
        how.append("persistent" if p["persistent"] else "transient")
        if p["undefine_source"]:
            how.append("undefine source")
        if p["bandwidth"]:
            how.append("bandwidth %d MiB/s" % p["bandwidth"])
        if p["migration_uri"]:
            how.append("migration uri %s" % p["migration_uri"])
        how.append("timeout %d s" % p["timeout"])
        return "migrate %s guest '%s' from uri '%s' to uri '%s' (%s)" % (
            "running" if self.live else "shut-off", self.name, self.client.uri, self.dest.uri, ", ".join(how))

    # -- applying ---------------------------------------------------------
    def _copy_offline(self):
        """Create and fill each disk's volume on the destination; on a failure, delete the ones made."""
        made = []
        total = 0
        try:
            for _target, src_vol, dest_pool, xml in self.offline_copies:
                dst_vol = create_volume(self.dest, dest_pool, xml)
                made.append(dst_vol)
                total += copy_volume(self.client, src_vol, self.dest, dst_vol)
        except Exception:
            self._delete_copies(made)
            raise
        return made, total

    def _delete_copies(self, made):
        """Delete the volumes an offline copy made on the destination; the caller re-raises its own error."""
        for vol in made:
            try:
                delete_volume(self.dest, vol)
            except Exception:  # pylint: disable=broad-except  # the original error is the one to report
                self.warnings.append("could not delete the copy '%s' on uri '%s'" % (vol.name(), self.dest.uri))

    def _migrate(self, dom):
        p = self.params
        began = time.monotonic()
        made = []
        if self.offline_copies:
            made, self.copied = self._copy_offline()
        flags = migration_flags(self.live, self.copy_storage, p["persistent"], p["undefine_source"])
        params = migration_params(p["bandwidth"], p["migration_uri"], p["listen_address"])
        outcome = {}

        def run():
            try:
                self.client.migrate(dom, self.dest, params, flags, p["peer_to_peer"])
            except Exception as e:  # pylint: disable=broad-except  # re-raised in the calling thread
                outcome["error"] = e

        start = time.monotonic()
        worker = threading.Thread(target=run, name="kvm_migrate", daemon=True)
        worker.start()
        cancelled = False
        last = {}
        while worker.is_alive():
            worker.join(POLL_INTERVAL)
            if not worker.is_alive():
                break
            last = self.client.job_stats(dom) or last
            if not cancelled and time.monotonic() - start > p["timeout"]:
                # False while the job has not begun (a peer-to-peer migration is still connecting
                # to the destination): ask again at the next poll, or the migration would run on.
                cancelled = self.client.abort_job(dom)
        self.seconds = round(time.monotonic() - began, 1)
        error = outcome.get("error")
        if error is not None:
            self._delete_copies(made)  # the definition did not move: the copies would only be orphans there
        if error is not None and cancelled:
            raise OperationFailed(
                "timeout: the migration of guest '%s' to uri '%s' did not finish within %d seconds and was cancelled; "
                "the guest keeps running on uri '%s'" % (self.name, self.dest.uri, p["timeout"], self.client.uri),
                uri=self.client.uri, option="timeout", details={"seconds": self.seconds})
        if error is not None:
            raise error
        self.moved = True
        if self.copy_storage == "all" and self.live:
            self.copied = self._copied_bytes(last)

    def _copied_bytes(self, last):
        moved = self.dest.lookup_domain(self.name)
        done = self.dest.job_stats(moved, completed=True) if moved is not None else {}
        for stats in (done, last):
            for key in ("disk_total", "disk_processed"):
                if stats.get(key):
                    return int(stats[key])
        return None

    def result(self):
        return {"migration": {
            "source": self.client.uri,
            "destination": self.dest.uri,
            "seconds": self.seconds,
            "live": self.live,
            "copied_storage": self.copied,
        }}


def _state(dom):
    if dom is None:
        return None
    return "running" if dom.isActive() else "defined"
