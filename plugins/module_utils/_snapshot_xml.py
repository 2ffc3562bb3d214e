# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt ``<domainsnapshot>`` XML model: :class:`SnapshotXML`.

Declarative views on the XML (``_xml.XMLProperty``): parse, edit in place,
serialize; elements the model does not name (the ``<domain>`` copy, cookies)
are kept untouched, so a redefinition with a new description keeps the rest.
No connection: ``_snapshot`` reads and writes through ``_client``.
"""

from __future__ import annotations

import datetime

from ansible_collections.kvmops.virt.plugins.module_utils._xml import XMLChildren, XMLObject, XMLProperty

# <state> of a snapshot (the guest's state when it was taken) -> the state names kvm_guest uses
SNAPSHOT_STATES = {
    "running": "running",
    "blocked": "running",
    "shutdown": "running",  # being shut down
    "paused": "paused",
    "shutoff": "shutdown",
    "crashed": "crashed",
    "pmsuspended": "pmsuspended",
    "disk-snapshot": "running",
}


class SnapshotDiskXML(XMLObject):
    """``<disks><disk name= snapshot=>``"""

    TAG = "disk"
    name = XMLProperty("@name")
    snapshot = XMLProperty("@snapshot")


class SnapshotXML(XMLObject):
    """``<domainsnapshot>``"""

    TAG = "domainsnapshot"
    name = XMLProperty("./name")
    description = XMLProperty("./description")
    state = XMLProperty("./state")
    parent = XMLProperty("./parent/name")
    creation_time = XMLProperty("./creationTime", kind="int")
    memory_snapshot = XMLProperty("./memory/@snapshot")
    disks = XMLChildren(SnapshotDiskXML, "./disks/disk")

    @property
    def guest_state(self):
        """The guest's state when the snapshot was taken, in kvm_guest's names."""
        return SNAPSHOT_STATES.get(self.state, self.state)

    @property
    def has_memory(self):
        return self.memory_snapshot == "internal"

    @property
    def created(self):
        """``creationTime`` as ISO 8601 in UTC (``None`` when missing)."""
        if self.creation_time is None:
            return None
        stamp = datetime.datetime.fromtimestamp(self.creation_time, datetime.timezone.utc)
        return stamp.isoformat()

    def facts(self, guest, current):
        return {
            "name": self.name,
            "guest": guest,
            "created": self.created,
            "guest_state": self.guest_state,
            "current": bool(current),
            "parent": self.parent,
            "memory": self.has_memory,
            "left_out": [d.name for d in self.disks if d.snapshot == "no"],
        }


def new_snapshot_xml(name, description, memory, disks):
    """The XML to create an internal snapshot: ``memory`` True saves the running
    guest's memory with it; ``disks`` maps a target (``vda``) to ``internal`` or ``no``."""
    snap = SnapshotXML.new(name=name)
    if description:
        snap.description = description
    snap.memory_snapshot = "internal" if memory else "no"
    for target, mode in disks:
        snap.disks.add(name=target, snapshot=mode)
    return snap.to_xml()
