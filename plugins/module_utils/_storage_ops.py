# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage operations shared by the pool and volume managers and the guest layer.

Each function takes a ``LibvirtClient`` and libvirt objects and maps libvirt
errors to the typed exceptions of ``_errors``:

* pools: :func:`persistent_xml`, :func:`refresh_pool` (waits while another
  client creates a volume), :func:`missing_target_path` /
  :func:`check_target_exists` (an active pool of files whose directory is
  gone), :func:`pool_volume_names`, :func:`pool_facts`,
  :func:`logical_volume_groups`;
* volumes: :func:`check_volume_name`, :func:`inspect_image` (format and size
  from a local file's header, no qemu-img), :func:`resolve_backing` (a volume
  name or an absolute path to ``(path, format, capacity_bytes)``),
  :func:`create_volume`, :func:`delete_volume`, :func:`volume_facts`,
  :func:`granularity` / :func:`round_up`;
* :func:`upload_file` / :func:`upload_bytes` stream data into a volume through
  ``virStorageVolUpload`` in 1 MiB chunks, so it works over remote URIs with
  bounded memory; :func:`read_bytes` reads a few bytes back
  (``virStorageVolDownload``); :func:`copy_volume` streams one host's volume
  into another host's.

It never imports a manager; the managers (``_pool``, ``_volume``) and the
guest layer import it.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import time

from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, is_local_uri, libvirt
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, OperationFailed, VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import FILE_POOL_TYPES, PoolXML, VolumeXML
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name
from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml

CHUNK_SIZE = 1024 * 1024
QCOW2_MAGIC = b"QFI\xfb"
MIB = 1024 * 1024


# -- pools -------------------------------------------------------------------
def live_pool_model(client, pool):
    """The running definition of an active pool (the current one of an inactive pool) as a ``PoolXML``."""
    return PoolXML.from_xml(client.call("reading storage pool '%s'" % pool.name(), pool.XMLDesc, 0))


def persistent_xml(client, pool):
    """The pool's persistent (inactive) definition; the live one on drivers without the flag."""
    try:
        return pool.XMLDesc(flag("VIR_STORAGE_XML_INACTIVE", 1))
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise client.translate(e, "reading storage pool '%s'" % pool.name())
    return client.call("reading storage pool '%s'" % pool.name(), pool.XMLDesc, 0)


# libvirt refuses to rescan a pool while a volume is being created in it (by
# another client): wait for that, up to this many seconds.
REFRESH_BUSY_WAIT = 120


def missing_target_path(client, pool, model=None):
    """The target directory of ``pool`` when it is an active pool of files on this
    host and that directory is gone; None otherwise."""
    if not is_local_uri(client.uri) or client.uri.startswith("test:") or not pool.isActive():
        return None
    if model is None:
        model = live_pool_model(client, pool)
    if model.type in FILE_POOL_TYPES and model.path and not os.path.isdir(model.path):
        return model.path
    return None


def check_target_exists(client, pool, model=None):
    """Fail clearly when an active pool of files lost its target directory.

    When the directory of a running ``dir``/``fs``/``netfs`` pool is removed
    behind libvirt's back, libvirt still lists the old volumes, and its next
    refresh fails and stops the pool. Say what happened instead, and never
    create the directory again on the user's behalf (the data is gone; an
    empty directory would hide that). Only on a local URI: a remote host's
    files cannot be looked at.
    """
    path = missing_target_path(client, pool, model)
    if path is None:
        return
    raise OperationFailed(
        "storage pool '%s' is active, but its target directory %s does not exist any more (removed outside libvirt?); "
        "the volumes that were in it are gone. The module does not create the directory again: restore it, or stop "
        "and start the pool (kvmops.virt.storage_pool state: inactive, then state: active) to start over with an "
        "empty directory" % (pool.name(), path),
        uri=client.uri,
        details={"missing_path": path},
    )


def refresh_pool(client, pool):
    """Rescan an active pool so that volumes made outside libvirt are seen."""
    if not pool.isActive():
        return
    check_target_exists(client, pool)
    deadline = time.monotonic() + REFRESH_BUSY_WAIT
    while True:
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError as e:
            busy = "asynchronous jobs running" in (e.get_error_message() or "")
            if not busy or time.monotonic() > deadline:
                raise client.translate(e, "refreshing storage pool '%s'" % pool.name())
        time.sleep(0.25)


def pool_volume_names(client, pool):
    """Sorted volume names of an active pool (``None`` when inactive)."""
    if not pool.isActive():
        return None
    return sorted(client.call("listing volumes of storage pool '%s'" % pool.name(), pool.listVolumes))


def pool_facts(client, pool):
    """The ``pool`` return value for an existing pool."""
    name = pool.name()
    with client.errors("reading storage pool '%s'" % name):
        model = PoolXML.from_xml(pool.XMLDesc(0))
        active = bool(pool.isActive())
        autostart = bool(pool.autostart()) if pool.isPersistent() else False
    return {
        "name": name,
        "uuid": model.uuid,
        "type": model.type,
        "path": model.path,
        "active": active,
        "autostart": autostart,
        "persistent": bool(pool.isPersistent()),
        "capacity": model.capacity if active else None,
        "allocation": model.allocation if active else None,
        "available": model.available if active else None,
        "volumes": pool_volume_names(client, pool),
    }


def logical_volume_groups(client):
    """Names of the LVM volume groups on the libvirt host."""
    text = client.call("looking for LVM volume groups", client.conn.findStoragePoolSources, "logical", None, 0)
    root = parse_xml(text, what="storage pool sources")
    return sorted(n.text.strip() for n in root.findall("./source/name") if n.text)


# -- volumes -------------------------------------------------------------------
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


def _upload(client, vol, fileobj, length, what, offset=0):
    name = vol.name()
    action = "uploading %s into volume '%s'" % (what, name)
    stream = client.call("opening a stream for volume '%s'" % name, client.conn.newStream, 0)
    try:
        with client.errors(action):
            vol.upload(stream, offset, length, 0)
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


def upload_bytes(client, vol, data, offset=0):
    """Write ``data`` (bytes) into ``vol`` at ``offset``."""
    _upload(client, vol, io.BytesIO(data), len(data), "%d bytes" % len(data), offset)
    return len(data)


def read_bytes(client, vol, offset, length):
    """Up to ``length`` bytes of ``vol`` from ``offset``; None when the driver cannot read volumes."""
    action = "reading volume '%s'" % vol.name()
    stream = client.call("opening a stream for volume '%s'" % vol.name(), client.conn.newStream, 0)
    try:
        try:
            vol.download(stream, offset, length, 0)
        except libvirt.libvirtError as e:
            if e.get_error_code() == flag("VIR_ERR_NO_SUPPORT", 3):
                return None
            raise client.translate(e, action)
        data = []
        got = 0
        with client.errors(action):
            while got < length:
                chunk = stream.recv(min(CHUNK_SIZE, length - got))
                if not isinstance(chunk, bytes) or not chunk:
                    break  # the end of the volume
                data.append(chunk)
                got += len(chunk)
            stream.finish()
        return b"".join(data)
    except Exception:
        _abort(stream)
        raise


def copy_volume(src_client, src_vol, dst_client, dst_vol):
    """Stream the whole file of ``src_vol`` into ``dst_vol`` (another host's volume, created by the
    caller with the same format); returns the bytes copied. Bounded memory: one chunk at a time."""
    action = "copying volume '%s' from uri '%s' into volume '%s' on uri '%s'" % (
        src_vol.name(), src_client.uri, dst_vol.name(), dst_client.uri)
    src = src_client.call("opening a stream for volume '%s'" % src_vol.name(), src_client.conn.newStream, 0)
    dst = dst_client.call("opening a stream for volume '%s'" % dst_vol.name(), dst_client.conn.newStream, 0)
    copied = 0
    try:
        with src_client.errors(action):
            src_vol.download(src, 0, 0, 0)
        with dst_client.errors(action):
            dst_vol.upload(dst, 0, 0, 0)
        while True:
            with src_client.errors(action):
                chunk = src.recv(CHUNK_SIZE)
            if not isinstance(chunk, bytes) or not chunk:
                break  # the end of the source file
            with dst_client.errors(action):
                _send_all(dst, chunk)
            copied += len(chunk)
        with src_client.errors(action):
            src.finish()
        with dst_client.errors(action):
            dst.finish()
        return copied
    except OSError as e:
        _abort(src)
        _abort(dst)
        raise VirtError("%s failed: %s" % (action, e))
    except Exception:
        _abort(src)
        _abort(dst)
        raise


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


# -- file identity (the guards that keep a file another guest or overlay needs) --

def same_file(a, b, local):
    """Whether paths ``a`` and ``b`` name the same file: equal paths, or, on
    the host that runs the hypervisor (``local``), the same device and inode
    (symlinks, hard links, bind mounts, ``..`` in a path)."""
    if not a or not b:
        return False
    if os.path.normpath(a) == os.path.normpath(b):
        return True
    if not local:
        return False
    try:
        sa = os.stat(a)
        sb = os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def qcow2_backing_file(path):
    """The backing file named in the header of the qcow2 image at ``path``
    (``None``: not qcow2, no backing file, or unreadable). Reads 1 KiB at most
    beyond the header; never follows the chain."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
            if len(header) < 20 or header[:4] != b"QFI\xfb":
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if not offset or not size or size > 1023:
                return None
            f.seek(offset)
            name = f.read(size)
    except (OSError, ValueError):
        return None
    text = name.decode("utf-8", "replace")
    if not text.startswith("/") and "://" not in text:
        text = os.path.join(os.path.dirname(path), text)
    return text


def guests_using(client, pool_name, paths, running_only=False):
    """``{guest: [volume paths]}``: the guests whose live or persistent
    definition has a disk on one of ``paths`` (compared as files) or names a
    volume of pool ``pool_name``; with ``running_only``, the running guests
    by their live definition only."""
    local = is_local_uri(client.uri)
    found = {}
    listings = [(0, flag("VIR_DOMAIN_XML_INACTIVE", 2)), (flag("VIR_CONNECT_LIST_DOMAINS_ACTIVE", 1), 0)]
    if running_only:
        listings = listings[1:]
    for list_flags, xml_flags in listings:
        for name, xml in client.domain_xmls(flags=list_flags, xml_flags=xml_flags):
            try:
                root = parse_xml(xml, what="guest XML")
            except VirtError:
                continue
            for source in root.iter("source"):
                parent = source.getparent()
                if parent is None or parent.tag not in ("disk", "backingStore"):
                    continue
                hit = None
                if source.get("pool") == pool_name and source.get("volume"):
                    hit = source.get("volume")
                else:
                    other = source.get("file") or source.get("dev")
                    hit = next((p for p in paths if same_file(p, other, local)), None)
                if hit and hit not in found.setdefault(name, []):
                    found[name].append(hit)
    return dict((name, hits) for name, hits in found.items() if hits)
