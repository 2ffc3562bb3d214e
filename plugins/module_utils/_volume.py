# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage volumes: the volume XML model, reusable volume functions and the
manager of ``storage_volume``.

The functions below are shared with the guest module (disks created from a
size or as an overlay on a base image):

* :func:`volume_xml` builds ``<volume>`` XML with the model.
* :func:`resolve_backing` turns a volume name or an absolute path into
  ``(path, format, capacity_bytes)``.
* :func:`create_volume`, :func:`delete_volume`, :func:`volume_facts`.
* :func:`upload_file` / :func:`upload_bytes` stream data into a volume through
  ``virStorageVolUpload`` in 1 MiB chunks, so it works over remote URIs with
  bounded memory.
"""

from __future__ import annotations

import io
import os
import stat
import struct

from ansible_collections.kvmops.virt.plugins.module_utils._client import is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    VirtError,
)
from ansible_collections.kvmops.virt.plugins.module_utils._pool import (
    FILE_POOL_TYPES,
    PoolXML,
    check_name,
    refresh_pool,
)
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils._xml import XMLObject, XMLProperty

CHUNK_SIZE = 1024 * 1024
VOLUME_FORMATS = ("qcow2", "raw")
QCOW2_MAGIC = b"QFI\xfb"
MIB = 1024 * 1024


# -- XML model ---------------------------------------------------------------
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


# -- names and files ---------------------------------------------------------
def check_volume_name(name, option="name"):
    """A volume name is a plain file name: no ``/``, not ``.``/``..``, not empty, no NUL."""
    return check_name(name, option, what="volume")


def inspect_image(path, option="source"):
    """Format and size of a local image file from its header (no qemu-img).

    Returns ``(format, virtual_size, size_on_disk, has_backing)``: ``qcow2``
    when the file starts with the qcow2 magic (virtual size from the header),
    else ``raw`` (virtual size = file size).
    """
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_ISBLK(mode):
                size = fh.seek(0, os.SEEK_END)
                fh.seek(0)
            elif stat.S_ISREG(mode):
                size = os.fstat(fh.fileno()).st_size
            else:
                raise InvalidArgument(option, "'%s' is not a regular file or block device" % path)
            header = fh.read(32)
    except (IOError, OSError) as e:
        raise InvalidArgument(option, "cannot read '%s': %s" % (path, e.strerror or e))
    if len(header) >= 32 and header[:4] == QCOW2_MAGIC:
        backing_offset, _backing_len, _cluster_bits, virtual = struct.unpack(">QIIQ", header[8:32])
        return "qcow2", virtual, size, backing_offset != 0
    return "raw", size, size, False


def _pool_model(client, pool):
    return PoolXML.from_xml(client.call("reading storage pool '%s'" % pool.name(), pool.XMLDesc, 0))


def _volume_model(client, vol):
    return VolumeXML.from_xml(client.call("reading volume '%s'" % vol.name(), vol.XMLDesc, 0))


def resolve_backing(client, pool, backing_volume, option="backing_volume"):
    """Resolve a base image for an overlay to ``(path, format, capacity_bytes)``.

    ``backing_volume`` is a volume name in ``pool`` (a virStoragePool) or an
    absolute path: a volume libvirt knows (read from its XML) or, on a local
    URI, a plain file whose format is read from its header. Raises
    :class:`InvalidArgument` naming ``option`` when it does not exist.
    """
    if backing_volume is None or backing_volume == "":
        raise InvalidArgument(option, "must name a volume or an absolute path")
    if backing_volume.startswith("/"):
        path = os.path.normpath(backing_volume)
        vol = client.lookup_volume_by_path(path)
        if vol is not None:
            model = _volume_model(client, vol)
            return model.path or path, model.format or "raw", model.capacity
        if is_local_uri(client.uri) and os.path.exists(path):
            fmt, virtual, _size, _has_backing = inspect_image(path, option)
            return path, fmt, virtual
        raise InvalidArgument(option, "'%s' does not exist (it is neither a libvirt volume nor a file on this host)" % path)
    check_volume_name(backing_volume, option)
    if pool is None:
        raise InvalidArgument(option, "volume '%s' needs a pool to be looked up in" % backing_volume)
    refresh_pool(client, pool)
    vol = client.lookup_volume(pool, backing_volume)
    if vol is None:
        raise InvalidArgument(option, "volume '%s' does not exist in storage pool '%s'" % (backing_volume, pool.name()))
    model = _volume_model(client, vol)
    return model.path, model.format or "raw", model.capacity


def create_volume(client, pool, xml):
    """Create a volume from ``xml`` in ``pool``; libvirt errors are mapped."""
    model = VolumeXML.from_xml(xml)
    return client.call("creating volume '%s' in storage pool '%s'" % (model.name, pool.name()), pool.createXML, xml, 0)


def delete_volume(client, vol):
    """Delete a volume and its data."""
    client.call("deleting volume '%s'" % vol.name(), vol.delete, 0)


def _send_all(stream, data):
    """Send all of ``data``; a blocking stream may accept less than offered."""
    offset = 0
    while offset < len(data):
        sent = stream.send(data[offset:] if offset else data)
        if sent is None or sent <= 0:
            raise OSError("the stream accepted no data (returned %r)" % sent)
        offset += sent


def _upload(client, vol, fileobj, length, what):
    name = vol.name()
    action = "uploading %s into volume '%s'" % (what, name)
    stream = client.call("opening a stream for volume '%s'" % name, client.conn.newStream, 0)
    try:
        with client.errors(action):
            vol.upload(stream, 0, length, 0)
            remaining = length
            while remaining > 0:
                chunk = fileobj.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise OSError("the source ended after %d of %d bytes" % (length - remaining, length))
                _send_all(stream, chunk)
                remaining -= len(chunk)
            stream.finish()
    except (IOError, OSError) as e:
        _abort(stream)
        raise VirtError("%s failed: %s" % (action, e))
    except Exception:
        _abort(stream)
        raise


def _abort(stream):
    try:
        stream.abort()
    except Exception:  # pylint: disable=broad-except
        pass


def upload_file(client, vol, source_path):
    """Stream a local file into ``vol`` (1 MiB chunks, bounded memory)."""
    _fmt, _virtual, size, _backing = inspect_image(source_path)
    with open(source_path, "rb") as fh:
        _upload(client, vol, fh, size, "'%s'" % source_path)
    return size


def upload_bytes(client, vol, data):
    """Write ``data`` (bytes) into ``vol`` from offset 0."""
    _upload(client, vol, io.BytesIO(data), len(data), "%d bytes" % len(data))
    return len(data)


def volume_facts(client, vol, pool_name):
    """The ``volume`` return value: name, pool, path, format, capacity, allocation, backing."""
    with client.errors("reading volume '%s'" % vol.name()):
        model = VolumeXML.from_xml(vol.XMLDesc(0))
        _type, capacity, allocation = vol.info()
    return {
        "name": model.name,
        "pool": pool_name,
        "path": model.path,
        "format": model.format,
        "capacity": capacity,
        "allocation": allocation,
        "backing": model.backing_path,
    }


def granularity(pool_type):
    """Bytes a requested capacity may be rounded up to when a volume is created or grown."""
    if pool_type in FILE_POOL_TYPES:
        return 1024  # libvirt passes sizes to qemu-img in KiB
    if pool_type == "logical":
        return 4 * MIB  # the default LVM extent size
    return MIB


def round_up(value, step):
    return -(-value // step) * step


# -- the manager -------------------------------------------------------------
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
        self.pool_model = _pool_model(self.client, pool)
        refresh_pool(self.client, pool)  # libvirt caches pool contents
        self.vol = self.client.lookup_volume(pool, self.name)

        if self.state == "absent":
            if self.vol is not None:
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
            self.act("grow volume '%s' from %s to %s" % (self.name, human_size(actual), human_size(capacity)),
                     lambda: self._resize(capacity))
        return None

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
