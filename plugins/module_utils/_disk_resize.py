# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Growing the existing disks of a guest to their ``disks[].size`` (never shrinking).

:func:`plan_disk_grows` compares the size the user gave for each existing disk
with what the disk has now and returns a :class:`DiskGrow` per disk that must
grow. A disk of a running guest is grown live through QEMU
(``virDomainBlockResize``: the guest sees the new size at once); any other
disk offline: a volume of a storage pool with ``virStorageVolResize``, a raw
file outside the pools by extending the file. Shrinking, block devices and
(offline) qcow2 files outside the pools are refused with the option's name.
Nothing here changes the host before :meth:`DiskGrow.apply`.

The guest's console tail (:func:`console_tail`) lives here too: the last
lines of its ``console_log`` for a failed wait.
"""

from __future__ import annotations

import os

from ansible_collections.kvmops.virt.plugins.module_utils._client import is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, OperationFailed
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils._storage_ops import (
    granularity,
    inspect_image,
    live_pool_model,
    round_up,
    same_file,
)

SECTOR = 512          # QEMU resizes a running disk in whole sectors
CONSOLE_TAIL_LINES = 40
CONSOLE_TAIL_BYTES = 64 * 1024


class DiskGrow:
    """One disk to grow: ``live`` (the running guest's ``target``), a pool volume ``vol``, or a raw ``path``."""

    def __init__(self, option, path, before, after, target=None, vol=None):
        self.option = option
        self.path = path
        self.before = before
        self.after = after
        self.target = target
        self.vol = vol

    @property
    def live(self):
        return self.target is not None

    def description(self):
        size = "from %s to %s" % (human_size(self.before), human_size(self.after))
        if self.live:
            return "grow disk %s of the running guest (%s) %s" % (self.target, self.path, size)
        if self.vol is not None:
            return "grow volume '%s' (%s) %s" % (self.vol.name(), self.option, size)
        return "grow the raw file '%s' (%s) %s" % (self.path, self.option, size)

    def apply(self, client, dom):
        if self.live:
            client.block_resize(dom, self.target, self.after)
        elif self.vol is not None:
            client.call("resizing volume '%s'" % self.vol.name(), self.vol.resize, self.after, 0)
        else:
            try:
                os.truncate(self.path, self.after)
            except OSError as e:
                raise OperationFailed("%s.size: growing '%s' failed: %s" % (self.option, self.path, e), option=self.option + ".size")


def live_disk(live, path, resolve_volume, local):
    """The disk (not cdrom) of the live ``Domain`` ``live`` whose source is the file ``path``."""
    for disk in [] if live is None else live.disks:
        if disk.device not in (None, "disk"):
            continue
        if same_file(path, disk.path(resolve_volume), local):
            return disk
    return None


def _refuse_shrink(opt, path, before, size, step):
    if round_up(size, step) < before:
        raise InvalidArgument(opt, "cannot shrink disk %s from %s to %s; shrinking is refused (nothing was changed)"
                              % (path, human_size(before), human_size(size)))


def plan_disk_grows(client, disks_params, spec_disks, created_options, dom, live, resolve_volume):
    """The :class:`DiskGrow` of each existing disk whose ``size`` is larger than the disk.

    ``created_options``: the options (``disks[i]``) of disks this run creates from
    ``size``; ``dom``/``live``: the running guest and its live ``Domain`` (or None)."""
    grows = []
    local = is_local_uri(client.uri)
    for ds in spec_disks or []:
        if ds.index is None or ds.device != "disk" or ds.option in created_options or not ds.path:
            continue
        opt = ds.option + ".size"
        size = parse_size((disks_params[ds.index] or {}).get("size"), opt, default_unit="B")
        if size is None:
            continue
        if ds.source_type != "file":
            raise InvalidArgument(opt, "%s is a block device; the collection grows files only (grow the device on the host, "
                                  "for example with lvextend, or leave size unset)" % ds.path)
        disk = live_disk(live, ds.path, resolve_volume, local)
        if disk is not None:
            target = disk.target
            before = client.call("reading the size of disk %s of guest '%s'" % (target, dom.name()), dom.blockInfo, target, 0)[0]
            _refuse_shrink(opt, ds.path, before, size, SECTOR)
            if size > before:
                grows.append(DiskGrow(ds.option, ds.path, before, round_up(size, SECTOR), target=target))
            continue
        vol = client.lookup_volume_by_path(ds.path)
        if vol is not None:
            pool = client.call("reading volume '%s'" % ds.path, vol.storagePoolLookupByVolume)
            step = granularity(live_pool_model(client, pool).type)
            before = client.call("reading volume '%s'" % ds.path, vol.info)[1]
            _refuse_shrink(opt, ds.path, before, size, step)
            if size > before:
                grows.append(DiskGrow(ds.option, ds.path, before, round_up(size, step), vol=vol))
            continue
        if not local or not os.path.isfile(ds.path):
            raise InvalidArgument(opt, "%s is not a volume of a storage pool, so its size cannot be read or changed here; "
                                  "leave size unset" % ds.path)
        fmt, before, _size, _backing = inspect_image(ds.path, ds.option + ".path")
        _refuse_shrink(opt, ds.path, before, size, SECTOR)
        if size > before:
            if fmt != "raw":
                raise InvalidArgument(opt, "%s is a %s file outside the storage pools; it is grown only while the guest runs "
                                      "(or make it a volume of a pool)" % (ds.path, fmt))
            grows.append(DiskGrow(ds.option, ds.path, before, round_up(size, SECTOR)))
    return grows


def console_tail(path, secrets=(), lines=CONSOLE_TAIL_LINES):
    """The last ``lines`` lines of the console log at ``path`` (a list; empty when
    there is none or it cannot be read), with every known secret value masked."""
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - CONSOLE_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    all_lines = text.replace("\r", "").split("\n")
    while all_lines and not all_lines[-1].strip():
        all_lines.pop()
    out = []
    for line in all_lines[-lines:]:
        for secret in secrets:
            if secret and len(str(secret)) >= 3:
                line = line.replace(str(secret), "********")
        out.append(line)
    return out
