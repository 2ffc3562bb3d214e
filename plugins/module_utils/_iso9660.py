# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ISO 9660 image writer for cloud-init NoCloud seeds (pure Python, standard library only).

:func:`build_iso` packs files into an ISO 9660 image with a Joliet
supplementary volume descriptor (exact lowercase names on Linux, Windows and
the BSDs), labelled ``cidata`` for cloud-init's NoCloud data source. The same
files give byte-identical images on every host. It runs on the managed KVM
host, which may have neither genisoimage nor xorriso; ``kvm_guest`` imports it
only when it (re)builds a seed.
"""

from __future__ import annotations

import re
import struct

from ansible_collections.kvmops.virt.plugins.module_utils._cloudinit import check_files
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument

SECTOR = 2048
# The primary volume descriptor: a reader sees a file system only when it is there.
PVD_OFFSET = 16 * SECTOR
_SEED_MARK = b"KVMOPS.VIRT CLOUD-INIT SEED OF GUEST "

# ---------------------------------------------------------------------------
# ISO 9660 + Joliet
# ---------------------------------------------------------------------------

_VOLUME_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,16}\Z")
# Joliet forbids control characters and * / : ; ? \ in names.
_JOLIET_BAD_RE = re.compile(r"[\x00-\x1f*/:;?\\]")
_JOLIET_MAX = 64
_APPLICATION_ID = "KVMOPS.VIRT CLOUD-INIT NOCLOUD SEED"
# Every date is 1970-01-01 00:00:00 UTC so that the image is reproducible.
_VD_DATE = b"1970010100000000\x00"
_VD_NO_DATE = b"0000000000000000\x00"
_DIR_DATE = bytes((70, 1, 1, 0, 0, 0, 0))
_FLAG_DIRECTORY = 0x02
_MAX_FILE_SIZE = 0xFFFFFFFF


def _both16(value):
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value):
    return struct.pack("<I", value) + struct.pack(">I", value)


def _pad(data, length, fill=b" "):
    return data + fill * ((length - len(data)) // len(fill)) + b"\x00" * ((length - len(data)) % len(fill))


def _sectors(size):
    return (size + SECTOR - 1) // SECTOR


def _dir_record(identifier, extent, size, flags):
    length = 33 + len(identifier) + (1 - len(identifier) % 2)
    record = (struct.pack("<BB", length, 0) + _both32(extent) + _both32(size) + _DIR_DATE
              + struct.pack("<BBB", flags, 0, 0) + _both16(1) + struct.pack("<B", len(identifier)) + identifier)
    return _pad(record, length, b"\x00")


def _directory(records):
    """Pack directory records into whole sectors (a record never spans two)."""
    out = bytearray()
    for record in records:
        if len(out) % SECTOR + len(record) > SECTOR:
            out.extend(b"\x00" * (SECTOR - len(out) % SECTOR))
        out.extend(record)
    return bytes(_pad(bytes(out), _sectors(len(out)) * SECTOR, b"\x00"))


def _path_table(extent, big_endian):
    order = ">" if big_endian else "<"
    return struct.pack(order + "BBIH", 1, 0, extent, 1) + b"\x00\x00"


def _volume_descriptor(joliet, volume_id, total, path_table_size, l_table, m_table, root_record):
    if joliet:
        def field(text, length):
            return _pad(text.encode("utf-16-be"), length, b"\x00 ")
        vtype, escapes = 2, b"%/E"
    else:
        def field(text, length):
            return _pad(text.encode("ascii"), length)
        vtype, escapes = 1, b""
    return _pad(
        struct.pack("<B", vtype) + b"CD001\x01\x00"
        + field("", 32)                                       # system identifier
        + field(volume_id, 32)
        + b"\x00" * 8
        + _both32(total)
        + _pad(escapes, 32, b"\x00")
        + _both16(1) + _both16(1) + _both16(SECTOR)           # volume set size, sequence number, block size
        + _both32(path_table_size)
        + struct.pack("<II", l_table, 0) + struct.pack(">II", m_table, 0)
        + root_record
        + field("", 128) + field("", 128) + field("", 128)    # volume set, publisher, data preparer
        + field(_APPLICATION_ID, 128)
        + field("", 37) + field("", 37) + field("", 37)       # copyright, abstract, bibliographic files
        + _VD_DATE + _VD_DATE + _VD_NO_DATE + _VD_NO_DATE     # created, modified, expires, effective
        + b"\x01\x00"                                         # file structure version
        + b" " * 512,                                         # application use
        SECTOR, b"\x00")


def _d_characters(text):
    return re.sub(r"[^A-Z0-9_]", "_", text.upper())


def _primary_identifiers(names):
    """ISO 9660 level 1 identifiers (``USER_DAT.;1``), unique, for each name."""
    used = set()
    result = {}
    for name in names:
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        stem = _d_characters(stem)[:8] or "_"
        ext = _d_characters(ext)[:3]
        base, counter = stem, 0
        while (base, ext) in used:
            counter += 1
            base = stem[:8 - len(str(counter))] + str(counter)
        used.add((base, ext))
        result[name] = (base, ext)
    return result


def _check_name(name):
    if not name or name in (".", ".."):
        raise InvalidArgument("files", "file names must not be empty, '.' or '..'")
    if len(name) > _JOLIET_MAX:
        raise InvalidArgument("files", "file name '%s' is longer than %d characters (Joliet limit)" % (name[:_JOLIET_MAX], _JOLIET_MAX))
    if _JOLIET_BAD_RE.search(name) or any(ord(char) > 0xFFFF or 0xD800 <= ord(char) <= 0xDFFF for char in name):
        raise InvalidArgument("files", "file name %r has characters Joliet cannot hold (control characters, * / : ; ? \\, or beyond U+FFFF)" % name)
    if name.endswith("."):
        raise InvalidArgument("files", "file name '%s' must not end with '.' (readers drop it)" % name)


def build_iso(files, volume_id="cidata"):
    """Return an ISO 9660 image (bytes) holding ``files`` in its root directory.

    A Joliet supplementary volume descriptor carries the exact names (up to 64
    characters, case preserved); the primary tree has ISO 9660 level 1 names
    (``USER_DAT.;1``) for readers without Joliet. ``volume_id`` (1-16 letters,
    digits, '_' or '-', case preserved) labels both volume descriptors. All
    timestamps are 1970-01-01 00:00:00 UTC and files are laid out in name
    order, so the same files give the same bytes.
    """
    check_files(files)
    if not isinstance(volume_id, str) or not _VOLUME_ID_RE.match(volume_id):
        raise InvalidArgument("volume_id", "must be 1 to 16 letters, digits, '_' or '-'")
    names = sorted(files, key=lambda n: n.encode("utf-16-be"))
    for name in names:
        _check_name(name)
        if len(files[name]) > _MAX_FILE_SIZE:
            raise InvalidArgument("files", "'%s' is larger than an ISO 9660 file can be (4 GiB - 1)" % name)
    primary = _primary_identifiers(names)

    # Layout: system area (0-15), volume descriptors (16-18), path tables (19-22),
    # the primary and the Joliet root directories, then file data (one extent each).
    l_primary, m_primary, l_joliet, m_joliet = 19, 20, 21, 22
    primary_root = 23

    def records(root, root_size, entries):
        return [_dir_record(b"\x00", root, root_size, _FLAG_DIRECTORY), _dir_record(b"\x01", root, root_size, _FLAG_DIRECTORY)] + entries

    # Directory sizes do not depend on extents: size them with placeholder extents first.
    primary_order = sorted(names, key=lambda n: (primary[n][0].ljust(8), primary[n][1].ljust(3)))
    primary_ids = {n: ("%s.%s;1" % primary[n]).encode("ascii") for n in names}
    joliet_ids = {n: n.encode("utf-16-be") for n in names}
    primary_size = len(_directory(records(0, 0, [_dir_record(primary_ids[n], 0, 0, 0) for n in primary_order])))
    joliet_size = len(_directory(records(0, 0, [_dir_record(joliet_ids[n], 0, 0, 0) for n in names])))
    joliet_root = primary_root + primary_size // SECTOR
    data_start = joliet_root + joliet_size // SECTOR

    extents = {}
    next_sector = data_start
    for name in names:
        extents[name] = next_sector  # an empty file points at the next extent and takes no space
        next_sector += _sectors(len(files[name]))
    total = max(next_sector, data_start + 1)

    primary_dir = _directory(records(primary_root, primary_size, [
        _dir_record(primary_ids[n], extents[n], len(files[n]), 0) for n in primary_order]))
    joliet_dir = _directory(records(joliet_root, joliet_size, [
        _dir_record(joliet_ids[n], extents[n], len(files[n]), 0) for n in names]))

    image = bytearray(total * SECTOR)

    def put(sector, data):
        image[sector * SECTOR:sector * SECTOR + len(data)] = data

    path_table_size = len(_path_table(0, False))
    put(16, _volume_descriptor(False, volume_id, total, path_table_size, l_primary, m_primary,
                               _dir_record(b"\x00", primary_root, primary_size, _FLAG_DIRECTORY)))
    put(17, _volume_descriptor(True, volume_id, total, path_table_size, l_joliet, m_joliet,
                               _dir_record(b"\x00", joliet_root, joliet_size, _FLAG_DIRECTORY)))
    put(18, b"\xffCD001\x01")
    put(l_primary, _path_table(primary_root, False))
    put(m_primary, _path_table(primary_root, True))
    put(l_joliet, _path_table(joliet_root, False))
    put(m_joliet, _path_table(joliet_root, True))
    put(primary_root, primary_dir)
    put(joliet_root, joliet_dir)
    for name in names:
        put(extents[name], files[name])
    return bytes(image)


# ---------------------------------------------------------------------------
# Seeds written in an order that tells an interrupted upload
# ---------------------------------------------------------------------------

def seed_mark(guest):
    """The text a seed of ``guest`` carries at the start of its system area (unused by ISO 9660)."""
    return _SEED_MARK + guest.encode("utf-8") + b"\n"


def seed_writes(iso, guest):
    """``[(offset, bytes), ...]``: the seed ``iso`` of ``guest`` as writes to make in this order.

    The first write is the image with the guest's mark in its system area and
    without its primary volume descriptor, the second that descriptor: until
    the last write is done the volume holds no file system, so a volume whose
    upload was interrupted is told from a complete seed (:func:`seed_state`).
    """
    image = bytearray(iso)
    mark = seed_mark(guest)
    image[:len(mark)] = mark
    descriptor = bytes(image[PVD_OFFSET:PVD_OFFSET + SECTOR])
    image[PVD_OFFSET:PVD_OFFSET + SECTOR] = bytes(SECTOR)
    return [(0, bytes(image)), (PVD_OFFSET, descriptor)]


# how much of a volume seed_state() reads
SEED_HEAD = PVD_OFFSET + 6


def seed_state(head, guest):
    """What the first :data:`SEED_HEAD` bytes of a volume say: ``"complete"`` (an ISO 9660
    volume descriptor is there), ``"interrupted"`` (``guest``'s seed mark without the
    descriptor: an upload of this collection that did not finish) or ``"other"``."""
    if head[PVD_OFFSET:PVD_OFFSET + 6] == b"\x01CD001":
        return "complete"
    if head.startswith(seed_mark(guest)):
        return "interrupted"
    return "other"
