# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage XML models: ``<pool>`` and ``<volume>``.

This file owns what the XML of a storage pool or volume looks like: the pool
types the collection manages and what each takes (``TYPE_RULES``), the
``PoolXML`` model with its source and target parts, :func:`pool_xml` and
:func:`set_pool_options` that write structured options into it in libvirt's
element order, and the ``VolumeXML`` model with :func:`volume_xml`.

No connection and no option validation: it builds only on ``_xml``. The pool
and volume managers, the shared storage operations (``_storage_ops``) and the
guest layer use it.
"""

from __future__ import annotations

import os

from ansible_collections.kvmops.virt.plugins.module_utils._xml import XMLChildren, XMLObject, XMLProperty

POOL_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "rbd")
# Pools whose volumes are files in a directory (they hold qcow2 and raw files).
FILE_POOL_TYPES = ("dir", "fs", "netfs")

FS_FORMATS = ("auto", "ext2", "ext3", "ext4", "ufs", "iso9660", "udf", "gfs", "gfs2", "vfat", "hfs+", "xfs", "ocfs2", "vmfs")
NETFS_FORMATS = ("auto", "nfs", "glusterfs", "cifs")
DISK_FORMATS = ("unknown", "dos", "dvh", "gpt", "mac", "bsd", "pc98", "sun", "lvm2")
LOGICAL_FORMATS = ("lvm2",)

SOURCE_KEYS = ("host", "port", "device", "dir", "name", "format", "initiator", "auth")
AUTH_KEYS = ("type", "username", "secret_uuid", "secret_usage")

# What each type takes. ``path``: required / optional (with a default) / none.
TYPE_RULES = {
    "dir": dict(path="required", source=(), required=(), formats=None, single_device=False,
                hint="the directory that holds the volumes"),
    "fs": dict(path="required", source=("device", "format"), required=("device",), formats=FS_FORMATS, single_device=True,
               hint="the directory the device is mounted on"),
    "netfs": dict(path="required", source=("host", "port", "dir", "format"), required=("host", "dir"), formats=NETFS_FORMATS,
                  single_device=False, hint="the directory the export is mounted on"),
    "logical": dict(path="optional", source=("name", "device", "format"), required=(), formats=LOGICAL_FORMATS, single_device=False,
                    hint="/dev/<volume group>"),
    "disk": dict(path="optional", source=("device", "format"), required=("device",), formats=DISK_FORMATS, single_device=True,
                 hint="/dev"),
    "iscsi": dict(path="optional", source=("host", "port", "device", "initiator", "auth"), required=("host", "device"), formats=None,
                  single_device=True, hint="/dev/disk/by-path"),
    "rbd": dict(path="none", source=("host", "port", "name", "auth"), required=("host", "name"), formats=None, single_device=False,
                hint=None),
}
AUTH_TYPES = {"iscsi": "chap", "rbd": "ceph"}


# -- pool XML -------------------------------------------------------------------
class PoolDevice(XMLObject):
    TAG = "device"
    path = XMLProperty("@path")


class PoolHost(XMLObject):
    TAG = "host"
    name = XMLProperty("@name")
    port = XMLProperty("@port", kind="int")


class PoolXML(XMLObject):
    """``<pool>`` XML (https://libvirt.org/formatstorage.html)."""

    TAG = "pool"
    type = XMLProperty("@type")
    name = XMLProperty("./name")
    uuid = XMLProperty("./uuid")
    capacity = XMLProperty("./capacity", kind="int")
    allocation = XMLProperty("./allocation", kind="int")
    available = XMLProperty("./available", kind="int")
    hosts = XMLChildren(PoolHost, "./source/host")
    source_host = XMLProperty("./source/host/@name")
    source_port = XMLProperty("./source/host/@port", kind="int")
    devices = XMLChildren(PoolDevice, "./source/device")
    source_dir = XMLProperty("./source/dir/@path")
    source_name = XMLProperty("./source/name")
    source_format = XMLProperty("./source/format/@type")
    source_initiator = XMLProperty("./source/initiator/iqn/@name")
    auth_type = XMLProperty("./source/auth/@type")
    auth_username = XMLProperty("./source/auth/@username")
    auth_secret_uuid = XMLProperty("./source/auth/secret/@uuid")
    auth_secret_usage = XMLProperty("./source/auth/secret/@usage")
    path = XMLProperty("./target/path")

    @property
    def source_device(self):
        """Device paths as a list (``None`` when there are none)."""
        paths = [d.path for d in self.devices if d.path]
        return paths or None

    @source_device.setter
    def source_device(self, paths):
        if paths is None:
            return
        self.devices.clear()
        for p in paths:
            self.devices.add(path=p)

    def source_value(self, key):
        """The value of the ``source.<key>`` option in this definition."""
        if key == "device":
            return self.source_device
        if key == "host":
            return self.source_host
        if key == "port":
            return self.source_port
        if key == "dir":
            return self.source_dir
        if key == "name":
            return self.source_name
        if key == "format":
            return self.source_format
        if key == "initiator":
            return self.source_initiator
        raise KeyError(key)

    def auth_value(self, key):
        return getattr(self, "auth_" + key)

    def ensure_source(self):
        """libvirt writes an empty ``<source/>``; keep the element order stable."""
        self.ensure("./source")

    def key_fields(self):
        """What defines where the pool's storage is (compared between live and persistent XML)."""
        fields = {"type": self.type, "path": normalize_path(self.path)}
        for key in SOURCE_KEYS:
            if key == "auth":
                for akey in AUTH_KEYS:
                    fields["source.auth." + akey] = self.auth_value(akey)
            else:
                fields["source." + key] = self.source_value(key)
        return fields


def normalize_path(path):
    """``os.path.normpath``, but a leading ``//`` becomes ``/`` (``None`` stays ``None``)."""
    if path is None:
        return None
    norm = os.path.normpath(path)
    if path.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def default_path(ptype, source_name=None):
    """The target path libvirt's tools expect when the user gives none."""
    if ptype == "logical" and source_name:
        return "/dev/" + source_name
    if ptype == "disk":
        return "/dev"
    if ptype == "iscsi":
        return "/dev/disk/by-path"
    return None


def pool_xml(name, ptype="dir", path=None, source=None, uuid=None):
    """Build the XML of a new pool from structured options (no validation)."""
    model = PoolXML.new(type=ptype, name=name)
    if uuid:
        model.uuid = uuid
    source = dict(source or {})
    if ptype == "logical" and source.get("name") is None:
        source["name"] = name  # libvirt's default: the volume group is named like the pool
    set_pool_options(model, ptype, path, source)
    return model


def set_pool_options(model, ptype, path, source):
    """Write the specified (not ``None``) options into ``model``, in libvirt's element order."""
    model.type = ptype
    model.ensure_source()
    if source.get("host") is not None:
        model.source_host = source["host"]
    if source.get("port") is not None:
        model.source_port = source["port"]
    if source.get("device") is not None:
        model.source_device = source["device"]
    if source.get("dir") is not None:
        model.source_dir = source["dir"]
    if source.get("name") is not None:
        model.source_name = source["name"]
    if source.get("format") is not None:
        model.source_format = source["format"]
    if source.get("initiator") is not None:
        model.source_initiator = source["initiator"]
    auth = source.get("auth")
    if auth:
        for akey in AUTH_KEYS:
            if auth.get(akey) is not None:
                setattr(model, "auth_" + akey, auth[akey])
        # a secret is referenced by uuid or by usage, never both
        if auth.get("secret_uuid") is not None:
            model.auth_secret_usage = None
        elif auth.get("secret_usage") is not None:
            model.auth_secret_uuid = None
    if path is not None:
        model.path = path
    elif model.path is None and TYPE_RULES[ptype]["path"] == "optional":
        model.path = default_path(ptype, model.source_name or (model.name if ptype == "logical" else None))


# -- volume XML --------------------------------------------------------------
class VolumeXML(XMLObject):
    """``<volume>`` XML (https://libvirt.org/formatstorage.html#storage-volume-xml)."""

    TAG = "volume"
    type = XMLProperty("@type")
    name = XMLProperty("./name")
    key = XMLProperty("./key")
    capacity = XMLProperty("./capacity", kind="int")
    capacity_unit = XMLProperty("./capacity/@unit")
    allocation = XMLProperty("./allocation", kind="int")
    allocation_unit = XMLProperty("./allocation/@unit")
    path = XMLProperty("./target/path")
    format = XMLProperty("./target/format/@type")
    backing_path = XMLProperty("./backingStore/path")
    backing_format = XMLProperty("./backingStore/format/@type")


def volume_xml(name, capacity_bytes, fmt="qcow2", backing_path=None, backing_format=None, allocation_bytes=0):
    """The XML of a new volume.

    ``allocation_bytes`` 0 (the default) makes a sparse / thin volume; ``None``
    leaves it out (libvirt then allocates the whole capacity, which is what
    LVM volumes need). ``fmt`` ``None`` leaves the format to the pool.
    """
    model = VolumeXML.new(name=name)
    model.capacity = int(capacity_bytes)
    model.capacity_unit = "bytes"
    if allocation_bytes is not None:
        model.allocation = int(allocation_bytes)
        model.allocation_unit = "bytes"
    if fmt:
        model.format = fmt
    if backing_path:
        model.backing_path = backing_path
        if backing_format:
            model.backing_format = backing_format
    return model.to_xml()
