# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The other guests of a host, read once: what a guest's checks need to know about its neighbours.

A new interface needs a MAC no guest of the host uses, a user-given MAC is
checked against the other guests' MACs, and a disk path against the other
guests' disks. Each of these reads every guest's XML. :class:`HostGuests`
reads them on first use and keeps the parsed ``Domain`` models, so that one
``kvm_guest`` run reads the host's guests at most once, and one
``kvm_guests`` run shares one instance for all its items (the runner calls
:meth:`refresh` for each guest it changed, and MACs handed to new interfaces
are reserved for the whole run, check mode included): N guests cost one read
of the host, not N.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm


class HostGuests:
    """``(name, Domain)`` of every guest of the host, read on first use; unreadable guests are skipped."""

    def __init__(self, client):
        self.client = client
        self._models = None
        self.reserved_macs = set()   # given to new interfaces during this run (not necessarily defined yet)

    @property
    def loaded(self):
        return self._models is not None

    def items(self, exclude=None):
        """``(name, Domain)`` of every guest but ``exclude``."""
        if self._models is None:
            self._models = {}
            for name, xml in self.client.domain_xmls():
                model = _parse(xml)
                if model is not None:
                    self._models[name] = model
        return [(name, model) for name, model in self._models.items() if name != exclude]

    def macs(self):
        """Every MAC of the host's guests, and those reserved in this run."""
        used = set(self.reserved_macs)
        for _name, model in self.items():
            used.update(nic.normalized_mac() for nic in model.interfaces if nic.mac)
        return used

    def refresh(self, name):
        """Read guest ``name`` again (defined, changed or removed since); nothing to do before the first read."""
        if self._models is None:
            return
        self._models.pop(name, None)
        dom = self.client.lookup_domain(name)
        if dom is None:
            return
        try:
            model = _parse(dom.XMLDesc(0))
        except Exception:  # pylint: disable=broad-except
            return  # vanished meanwhile: skipped, as the first read does
        if model is not None:
            self._models[name] = model


def _parse(xml):
    try:
        return dm.Domain.from_xml(xml)
    except Exception:  # pylint: disable=broad-except
        return None
