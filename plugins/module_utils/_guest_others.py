# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The other guests of the host, as the guest layer's guards see them.

:class:`OtherGuests` is a base of :class:`_guest_resolve.GuestResolver`: who
else uses a file (in a live *or* persistent definition, compared as files, not
path strings), which overlays a file backs, and which MACs others have. When a
guard cannot be sure, it says why, and the caller keeps the file.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument


def _storage_ops():
    # imported on first use, like the resolver does: only removals and seeds need it
    from ansible_collections.kvmops.virt.plugins.module_utils import _storage_ops  # pylint: disable=import-outside-toplevel

    return _storage_ops


class OtherGuests:
    """Needs ``self.client``, ``self.name``, ``self.warnings``, ``self.host_guests`` (a
    :class:`_host_guests.HostGuests`) and ``self.resolve_volume_path``."""

    def _guests(self, exclude=None, both=False):
        """``(name, Domain)`` of every guest of the host but ``exclude`` (unreadable ones are skipped).

        With ``both``, a running guest is yielded twice: its persistent
        definition (the next boot) and its live one (what runs now)."""
        if not both:
            # the host's guests as read once for the run (shared by every item of a kvm_guests run)
            yield from self.host_guests.items(exclude=exclude)
            return
        for name, xml in self.client.domain_xmls(xml_flags=flag("VIR_DOMAIN_XML_INACTIVE", 2), exclude=exclude):
            try:
                yield name, dm.Domain.from_xml(xml)
            except Exception:  # pylint: disable=broad-except
                continue
        if both:
            for name, xml in self.client.domain_xmls(flags=flag("VIR_CONNECT_LIST_DOMAINS_ACTIVE", 1), exclude=exclude):
                try:
                    yield name, dm.Domain.from_xml(xml)
                except Exception:  # pylint: disable=broad-except
                    continue

    def _disk_files(self, model):
        """Every file a guest's disks name: sources, backing chains, resolved pool volumes."""
        for disk in model.disks:
            yield disk.path(self.resolve_volume_path)
            for node in disk.node.iter("source"):
                yield dm.norm_path(node.get("file") or node.get("dev"))

    def other_domains_using(self, path):
        """The other guests with a disk on ``path`` (the same file, in their live or persistent definition)."""
        ops = _storage_ops()
        local = is_local_uri(self.client.uri)
        users = []
        for name, model in self._guests(exclude=self.name, both=True):
            if name in users:
                continue
            if any(ops.same_file(path, other, local) for other in self._disk_files(model)):
                users.append(name)
        return users

    def _check_not_used_elsewhere(self, path, option, what):
        users = self.other_domains_using(path)
        if users:
            raise InvalidArgument(option, "%s (%s) is used by another guest: %s" % (what, path, ", ".join(sorted(users))))

    def check_mac_conflicts(self, spec):
        """A warning for each user-given MAC another guest has too."""
        if spec.interfaces is None:
            return
        wanted = [(n.index, n.mac) for n in spec.interfaces if n.mac]
        if not wanted:
            return
        others = {}
        for name, model in self._guests(exclude=self.name):
            for nic in model.interfaces:
                if nic.mac:
                    others[nic.normalized_mac()] = name
        for index, mac in wanted:
            if mac in others:
                self.warnings.append("interfaces[%d].mac: %s is also used by guest '%s'" % (index, mac, others[mac]))

    def volumes_backed_by(self, path):
        """``(overlays, doubts)``: the files whose backing file is ``path``, and
        why that list may be incomplete (a caller keeps the file when in doubt).

        Every active pool is refreshed first (an overlay made outside libvirt);
        an inactive pool of files cannot be listed, which is a doubt; on the
        local host the qcow2 headers of other guests' disks outside any pool
        are read too."""
        ops = _storage_ops()
        # only removal reads pools and volumes: not loaded on other runs
        from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import (  # pylint: disable=import-outside-toplevel
            FILE_POOL_TYPES, PoolXML, VolumeXML)

        local = is_local_uri(self.client.uri)
        found = []
        doubts = []
        pooled = set()
        for pool in self.client.list_pools():
            if not pool.isActive():
                try:
                    model = PoolXML.from_xml(pool.XMLDesc(0))
                    if model.type in FILE_POOL_TYPES:
                        doubts.append("storage pool '%s' is inactive, so its volumes could not be checked" % pool.name())
                except Exception:  # pylint: disable=broad-except
                    doubts.append("storage pool '%s' could not be read" % pool.name())
                continue
            try:
                ops.refresh_pool(self.client, pool)
                vols = pool.listAllVolumes(0)
            except Exception:  # pylint: disable=broad-except
                doubts.append("storage pool '%s' could not be listed" % pool.name())
                continue
            for vol in vols:
                try:
                    model = VolumeXML.from_xml(vol.XMLDesc(0))
                except Exception:  # pylint: disable=broad-except
                    doubts.append("volume '%s' could not be read" % vol.name())
                    continue
                if model.path:
                    pooled.add(dm.norm_path(model.path))
                if model.backing_path and ops.same_file(dm.norm_path(model.backing_path), path, local):
                    found.append(model.path or vol.name())
        if local:
            for _name, model in self._guests(exclude=self.name, both=True):
                for other in self._disk_files(model):
                    if not other or other in pooled or other in found or ops.same_file(other, path, local):
                        continue
                    backing = ops.qcow2_backing_file(other)
                    if backing and ops.same_file(backing, path, local):
                        found.append(other)
        return found, doubts
