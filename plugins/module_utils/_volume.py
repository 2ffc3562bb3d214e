# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of ``storage_volume``.

It plans creating a volume (empty, as a qcow2 overlay on a backing volume, or
from a local image file uploaded through libvirt), growing it (shrinking is
refused) and deleting it. The ``<volume>`` model is in ``_storage_xml``; the
operations it shares with the guest layer (create, delete, upload, resolve a
backing volume, facts) are in ``_storage_ops``.
"""

from __future__ import annotations

import os

from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    Refused,
    VirtError,
)
from ansible_collections.kvmops.virt.plugins.module_utils._client import is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._disk_resize import SECTOR, live_disk
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils._storage_ops import (
    check_volume_name,
    create_volume,
    delete_volume,
    granularity,
    guests_using,
    inspect_image,
    live_pool_model,
    refresh_pool,
    resolve_backing,
    round_up,
    upload_file,
    volume_facts,
)
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import FILE_POOL_TYPES, volume_xml
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name

VOLUME_FORMATS = ("qcow2", "raw")


class VolumeManager(Manager):
    """Plans and applies the ``storage_volume`` module's states."""

    def __init__(self, module, client):
        super().__init__(module, client)
        self.name = self.params["name"]
        self.pool_name = self.params["pool"]
        self.state = self.params["state"]
        self.pool = None
        self.pool_model = None
        self.vol = None
        self.predicted = None
        self.created = None

    # -- planning ---------------------------------------------------------
    def plan(self):
        # input first: nothing below touches the host before these pass
        check_volume_name(self.name, "name")
        check_name(self.pool_name, "pool", what="pool")
        capacity = parse_size(self.params.get("capacity"), "capacity", default_unit="B")
        if capacity is not None and capacity <= 0 and self.state == "present":
            raise InvalidArgument("capacity", "must be greater than zero, got %s" % self.params.get("capacity"))
        source = self.params.get("source")
        if source is not None and not source.startswith("/"):
            raise InvalidArgument("source", "must be an absolute path, got '%s'" % source)

        pool = self.client.lookup_pool(self.pool_name)
        if pool is None:
            if self.state == "absent":
                self.warnings.append("storage pool '%s' does not exist on uri '%s'; volume '%s' is absent"
                                     % (self.pool_name, self.client.uri, self.name))
                return None
            raise NotFound(
                "pool: storage pool '%s' does not exist on uri '%s'" % (self.pool_name, self.client.uri),
                uri=self.client.uri, option="pool",
            )
        self.pool = pool
        if not pool.isActive():
            raise InvalidArgument(
                "pool", "storage pool '%s' is not active, so its volumes cannot be read or changed; "
                "start it first (kvmops.virt.storage_pool with state: active)" % self.pool_name
            )
        self.pool_model = live_pool_model(self.client, pool)
        refresh_pool(self.client, pool)  # libvirt caches pool contents
        self.vol = self.client.lookup_volume(pool, self.name)

        if self.state == "absent":
            if self.vol is not None:
                users = self._running_users()
                if users and not self.params.get("force"):
                    raise Refused(
                        "state: volume '%s' is used by the running guest(s) %s; deleting it would pull the disk from under "
                        "them. Shut them down first, or set force: true" % (self.name, ", ".join(sorted(users))), option="state")
                if users:
                    self.warnings.append("volume '%s' is deleted while the running guest(s) %s use it (force: true)"
                                         % (self.name, ", ".join(sorted(users))))
                self.diff.add("state", "present", "absent")
                vol = self.vol
                self.act("delete volume '%s' from storage pool '%s'" % (self.name, self.pool_name), lambda: self._delete(vol))
            return None
        if self.vol is None:
            return self._plan_create(capacity, source)
        return self._plan_update(capacity)

    def _default_format(self):
        return "qcow2" if self.pool_model.type in FILE_POOL_TYPES else "raw"

    def _check_format_for_pool(self, fmt):
        if fmt != "raw" and self.pool_model.type not in FILE_POOL_TYPES:
            raise InvalidArgument(
                "format", "'%s' pools hold raw volumes only; use format: raw (or leave it unset)" % self.pool_model.type
            )

    def _plan_create(self, capacity, source):
        fmt = self.params.get("format")
        backing_volume = self.params.get("backing_volume")
        ptype = self.pool_model.type
        file_pool = ptype in FILE_POOL_TYPES
        backing = None
        upload = None
        grow_to = None

        if fmt is not None:
            self._check_format_for_pool(fmt)
        if backing_volume is not None:
            if not file_pool:
                raise InvalidArgument("backing_volume", "overlays need a pool of files (dir, fs, netfs); '%s' is a '%s' pool" % (self.pool_name, ptype))
            if fmt not in (None, "qcow2"):
                raise InvalidArgument("format", "an overlay on a backing volume must be qcow2, got '%s'" % fmt)
            fmt = "qcow2"
            bpath, bfmt, bcap = resolve_backing(self.client, self.pool, backing_volume, "backing_volume")
            if capacity is None:
                capacity = bcap
            elif bcap and capacity < bcap:
                raise InvalidArgument(
                    "capacity", "an overlay cannot be smaller than its backing volume: %s < %s (%s)"
                    % (human_size(capacity), human_size(bcap), bpath)
                )
            backing = (bpath, bfmt)
        elif source is not None:
            if not os.path.exists(source):
                raise InvalidArgument("source", "file '%s' does not exist" % source)
            sfmt, virtual, size, has_backing = inspect_image(source, "source")
            if has_backing:
                raise InvalidArgument(
                    "source", "'%s' is a qcow2 overlay with a backing file; import a standalone image "
                    "(qemu-img convert -O qcow2 it first)" % source
                )
            if not file_pool and sfmt != "raw":
                raise InvalidArgument(
                    "source", "'%s' is a %s image, but '%s' pools hold raw volumes only; convert it to raw first" % (source, sfmt, ptype)
                )
            if fmt is None:
                fmt = sfmt
            if fmt != sfmt:
                raise InvalidArgument(
                    "format", "'%s' is a %s image and is copied byte for byte, so the volume format must be %s, not %s"
                    % (source, sfmt, sfmt, fmt)
                )
            if capacity is not None and capacity < virtual:
                raise InvalidArgument(
                    "capacity", "%s is smaller than the image in '%s' (%s); shrinking is refused"
                    % (human_size(capacity), source, human_size(virtual))
                )
            upload = (source, size)
            grow_to = capacity if capacity is not None and capacity > virtual else None
            capacity = capacity if capacity is not None else virtual
        else:
            if capacity is None:
                raise InvalidArgument("capacity", "required to create volume '%s' (or give source or backing_volume)" % self.name)
            fmt = fmt or self._default_format()

        self.diff.add("state", "absent", "present")
        self.diff.add("format", None, fmt)
        self.diff.add("capacity", None, capacity)
        if backing:
            self.diff.add("backing_volume", None, backing[0])
        if upload:
            self.diff.add("source", None, upload[0])

        base = self.pool_model.path or ""
        self.predicted = {
            "name": self.name,
            "pool": self.pool_name,
            "path": os.path.join(base, self.name) if base else None,
            "format": fmt,
            "capacity": capacity,
            "allocation": None,
            "backing": backing[0] if backing else None,
        }
        # LVM and partitions are allocated in full; files are thin (allocation 0)
        allocation = 0 if file_pool else None
        vol_fmt = fmt if file_pool else None
        if upload:
            # a raw volume of the file's size, overwritten byte for byte; the pool
            # refresh then detects the image format of the uploaded file
            xml = volume_xml(self.name, upload[1], "raw" if file_pool else None, allocation_bytes=allocation)
            self.act("create volume '%s' in storage pool '%s' (%s)" % (self.name, self.pool_name, human_size(upload[1])),
                     lambda: self._create(xml))
            self.act("upload '%s' (%s) into volume '%s'" % (upload[0], human_size(upload[1]), self.name), lambda: self._upload(upload[0]))
            if grow_to:
                self.act("grow volume '%s' to %s" % (self.name, human_size(grow_to)), lambda: self._resize(grow_to))
        else:
            xml = volume_xml(self.name, capacity, vol_fmt, backing[0] if backing else None, backing[1] if backing else None,
                             allocation_bytes=allocation)
            what = "overlay on %s" % backing[0] if backing else "%s %s" % (fmt, human_size(capacity))
            self.act("create volume '%s' in storage pool '%s' (%s)" % (self.name, self.pool_name, what), lambda: self._create(xml))
        return None

    def _plan_update(self, capacity):
        try:
            facts = volume_facts(self.client, self.vol, self.pool_name)
        except NotFound as e:
            # listed but without its file: another client is creating it right now
            raise Conflict(e.msg, code=e.code, uri=e.uri)
        fmt = self.params.get("format")
        if fmt is not None and facts["format"] not in (None, "none") and fmt != facts["format"]:
            raise InvalidArgument(
                "format", "volume '%s' exists with format %s; converting an existing volume to %s is not supported "
                "(create a new volume, or remove this one first)" % (self.name, facts["format"], fmt)
            )
        backing_volume = self.params.get("backing_volume")
        if backing_volume is not None:
            bpath, _bfmt, _bcap = resolve_backing(self.client, self.pool, backing_volume, "backing_volume")
            if facts["backing"] != bpath:
                raise InvalidArgument(
                    "backing_volume", "volume '%s' exists with backing store %s; changing the backing store of an existing "
                    "volume is not supported" % (self.name, facts["backing"] or "(none)")
                )
        self.predicted = dict(facts)
        if capacity is None:
            return None
        actual = facts["capacity"]
        step = granularity(self.pool_model.type)
        if round_up(capacity, step) < actual:
            raise InvalidArgument(
                "capacity", "cannot shrink volume '%s' from %s to %s; shrinking is refused"
                % (self.name, human_size(actual), human_size(capacity))
            )
        if capacity > actual:
            self.diff.add("capacity", actual, capacity)
            self.predicted["capacity"] = capacity
            users = self._running_users()
            if not users:
                self.act("grow volume '%s' from %s to %s" % (self.name, human_size(actual), human_size(capacity)),
                         lambda: self._resize(capacity))
                return None
            dom, target = self._live_target(users, facts["path"])
            self.act("grow volume '%s' from %s to %s live through disk %s of the running guest '%s'"
                     % (self.name, human_size(actual), human_size(capacity), target, dom.name()),
                     lambda: self.client.block_resize(dom, target, round_up(capacity, SECTOR)))
        return None

    # -- volumes of running guests ----------------------------------------
    def _running_users(self):
        """The running guests whose live definition has this volume (by its pool and name, or as the same file)."""
        path = self.client.call("reading volume '%s'" % self.name, self.vol.path)
        found = guests_using(self.client, self.pool_name, [path], running_only=True)
        return [name for name, hits in found.items() if self.name in hits or path in hits]

    def _live_target(self, users, path):
        """``(domain, target)``: the one running guest that has the volume as a disk, to grow it through."""
        if not self.params.get("force"):
            raise Refused(
                "capacity: volume '%s' is used by the running guest(s) %s; set force: true to grow it live through the "
                "guest (it sees the new size at once), or shut the guest down first" % (self.name, ", ".join(sorted(users))),
                option="capacity")
        if len(users) > 1:
            raise Refused("capacity: volume '%s' is used by more than one running guest (%s); it can be grown live through "
                          "one guest only: shut the others down first" % (self.name, ", ".join(sorted(users))), option="capacity")
        dom = self.client.lookup_domain(users[0])
        live = Domain.from_xml(self.client.call("reading guest '%s'" % users[0], dom.XMLDesc, 0)) if dom else None
        disk = live_disk(live, path, lambda pool, vol: path if (pool, vol) == (self.pool_name, self.name) else None,
                         is_local_uri(self.client.uri))
        if disk is None or disk.type == "block":
            raise Refused("capacity: volume '%s' backs a disk of the running guest '%s' (a backing file or a block device), "
                          "so it cannot be grown while that guest runs; shut it down first" % (self.name, users[0]),
                          option="capacity")
        return dom, disk.target

    # -- steps ------------------------------------------------------------
    def apply(self):
        try:
            super().apply()
        except VirtError as e:
            if self.created is not None:
                # a volume this run created must not stay behind half made
                try:
                    delete_volume(self.client, self.created)
                    e.msg = "%s (the new volume '%s' was deleted again)" % (e.msg, self.name)
                except VirtError:
                    path = (self.predicted or {}).get("path")
                    e.msg = "%s (the new volume '%s'%s could not be deleted and is left in storage pool '%s')" % (
                        e.msg, self.name, " (%s)" % path if path else "", self.pool_name)
                    e.details["left_behind"] = [{"pool": self.pool_name, "volume": self.name, "path": path}]
                e.args = (e.msg,)
            raise

    def _create(self, xml):
        self.created = create_volume(self.client, self.pool, xml)
        self.vol = self.created

    def _upload(self, source):
        upload_file(self.client, self.vol, source)
        refresh_pool(self.client, self.pool)
        self.vol = self.client.lookup_volume(self.pool, self.name)
        self.created = self.vol

    def _resize(self, capacity):
        self.client.call("resizing volume '%s'" % self.name, self.vol.resize, capacity, 0)

    def _delete(self, vol):
        delete_volume(self.client, vol)
        refresh_pool(self.client, self.pool)

    # -- result -----------------------------------------------------------
    def result(self):
        if self.state == "absent" or self.pool is None:
            return {"volume": {}}
        if self.check_mode:
            return {"volume": self.predicted}
        refresh_pool(self.client, self.pool)
        vol = self.client.lookup_volume(self.pool, self.name)
        return {"volume": volume_facts(self.client, vol, self.pool_name)}
