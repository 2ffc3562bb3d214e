# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of ``kvm_snapshot``: internal snapshots of a guest's qcow2 disks.

It plans creating a snapshot (after checking that every disk can hold one,
that a running guest's snapshot includes its memory and, for ``quiesce``,
that the guest agent answers), updating its description in place (a
redefinition of the same snapshot), rotating the oldest ones (``keep``),
deleting it, and reverting the guest to it. The ``<domainsnapshot>`` model is
in ``_snapshot_xml``, the guest's disks are read with ``_domain_xml``.

QEMU keeps internal snapshots inside the qcow2 files: a shut-off guest's
snapshot holds its disks, a running (or paused) guest's snapshot always holds
its memory too (QEMU's ``savevm``; libvirt refuses a disk-only internal
snapshot of a running guest, and ``quiesce`` through libvirt needs a disk-only
one, so the module freezes and thaws the filesystems itself around the snapshot).
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, libvirt
from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import STATE_NAMES, Domain
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, NotFound, OperationFailed
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._snapshot_xml import SnapshotXML, new_snapshot_xml
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name

STATES = ("present", "absent", "reverted")
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
# guest states whose internal snapshot is QEMU's savevm (disks and memory together)
LIVE_STATES = ("running", "paused")
# disk devices that hold no guest data to snapshot (libvirt's snapshot='no' for read-only media)
MEDIA_DEVICES = ("cdrom", "floppy")


class SnapshotManager(Manager):
    """Plans and applies the ``kvm_snapshot`` module's states."""

    def __init__(self, module, client):
        super().__init__(module, client)
        self.guest = self.params["guest"]
        self.name = self.params["name"]
        self.state = self.params["state"]
        self.dom = None
        self.cur_state = None
        self.snaps = []  # SnapshotXML, oldest first
        self.current = None
        self.predicted = None

    # -- reading ----------------------------------------------------------
    def _read_snapshots(self):
        """The guest's snapshots oldest first, and the name of the current one."""
        action = "listing the snapshots of guest '%s'" % self.guest
        with self.client.errors(action):
            objs = self.dom.listAllSnapshots(flag("VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL"))
            snaps = [SnapshotXML.from_xml(s.getXMLDesc(0)) for s in objs]
            current = None
            if self.dom.hasCurrentSnapshot(0):
                current = self.dom.snapshotCurrent(0).getName()
        # creationTime has whole seconds; the topological order (parents first) breaks ties
        snaps.sort(key=lambda s: s.creation_time or 0)
        return snaps, current

    def _find(self, name):
        for snap in self.snaps:
            if snap.name == name:
                return snap
        return None

    def _lookup(self, name):
        return self.client.call("looking up snapshot '%s' of guest '%s'" % (name, self.guest),
                                self.dom.snapshotLookupByName, name, 0)

    # -- planning ---------------------------------------------------------
    def _validate(self):
        check_name(self.guest, "guest", what="guest")
        check_name(self.name, "name", what="snapshot")
        keep = self.params.get("keep")
        if keep is not None:
            if self.state != "present":
                raise InvalidArgument("keep", "rotates snapshots after creating one; it is only used with state: present")
            if keep < 1:
                raise InvalidArgument("keep", "must be at least 1 (the snapshot just created is kept), got %d" % keep)
        for option in ("memory", "quiesce"):
            if self.params.get(option) and self.state != "present":
                raise InvalidArgument(option, "only matters when a snapshot is created; it is only used with state: present")
        if self.params.get("description") is not None and self.state != "present":
            raise InvalidArgument("description", "is only used with state: present")

    def plan(self):
        self._validate()
        self.dom = self.client.lookup_domain(self.guest)
        if self.dom is None:
            if self.state == "absent":
                self.warnings.append("guest '%s' does not exist on uri '%s'; snapshot '%s' is absent"
                                     % (self.guest, self.client.uri, self.name))
                return None
            raise NotFound("guest: guest '%s' does not exist on uri '%s'" % (self.guest, self.client.uri),
                           uri=self.client.uri, option="guest")
        state, _reason = self.client.call("reading the state of guest '%s'" % self.guest, self.dom.state)
        self.cur_state = STATE_NAMES.get(state, "running")
        self.snaps, self.current = self._read_snapshots()
        existing = self._find(self.name)
        if self.state == "absent":
            return self._plan_absent(existing)
        if self.state == "reverted":
            return self._plan_revert(existing)
        if existing is not None:
            return self._plan_update(existing)
        return self._plan_create()

    def _names(self):
        return [s.name for s in self.snaps]

    def _plan_absent(self, existing):
        if existing is None:
            return None
        names = self._names()
        self.diff.add("state", "present", "absent")
        self.diff.add("snapshots", names, [n for n in names if n != self.name])
        self.act("delete snapshot '%s' of guest '%s'" % (self.name, self.guest), lambda: self._delete(self.name))
        return None

    def _plan_revert(self, existing):
        if existing is None:
            raise NotFound("name: guest '%s' has no snapshot '%s' (it has: %s)"
                           % (self.guest, self.name, ", ".join(self._names()) or "none"),
                           uri=self.client.uri, option="name")
        # always a change: the guest's disks (and memory) go back to the snapshot's
        self.diff.add("reverted_to", None, self.name)
        self.diff.add("current", self.current, self.name)
        self.diff.add("guest_state", self.cur_state, existing.guest_state)
        self.act("revert guest '%s' to snapshot '%s' (%s)" % (self.guest, self.name, existing.guest_state),
                 lambda: self._revert(existing))
        self.current = self.name
        self.predicted = existing.facts(self.guest, True)
        return None

    def _plan_update(self, existing):
        desc = self.params.get("description")
        self.predicted = existing.facts(self.guest, existing.name == self.current)
        if desc is None:
            return None
        want = desc or None
        if self.diff.add("description", existing.description, want):
            self.act("update the description of snapshot '%s' of guest '%s'" % (self.name, self.guest),
                     lambda: self._redefine(existing, want))
        return None

    def _plan_create(self):
        memory = self._memory()
        disks = self._disks()
        if self.params["quiesce"]:
            self._check_agent()
        description = self.params.get("description") or None
        names = self._names()
        after = names + [self.name]
        keep = self.params.get("keep")
        rotated = []
        if keep is not None and len(after) > keep:
            rotated = names[:len(after) - keep]
            after = after[len(after) - keep:]
        self.diff.add("state", "absent", "present")
        self.diff.add("description", None, description)
        self.diff.add("memory", None, memory)
        self.diff.add("snapshots", names, after)
        xml = new_snapshot_xml(self.name, description, memory, disks)
        left_out = [target for target, mode in disks if mode == "no"]
        if left_out:
            # never silently: a revert leaves these disks as they are then
            self.warnings.append(
                "snapshot '%s' of guest '%s' leaves out %s (read-only media, read-only disks and disks marked "
                "snapshot='no' hold no snapshot; a revert does not change them)"
                % (self.name, self.guest, ", ".join(left_out)))
        what = "disks and memory" if memory else "disks"
        self.act("create snapshot '%s' of guest '%s' (%s)" % (self.name, self.guest, what), lambda: self._create(xml))
        for old in rotated:
            self.act("delete the old snapshot '%s' of guest '%s' (keep: %d)" % (old, self.guest, keep),
                     lambda old=old: self._delete(old))
        self.predicted = {"name": self.name, "guest": self.guest, "created": None, "guest_state": self.cur_state,
                          "current": True, "parent": self.current, "memory": memory,
                          "left_out": left_out}
        self.snaps = [s for s in self.snaps if s.name not in rotated]
        self.current = self.name
        return None

    def _memory(self):
        """Whether the new snapshot holds the guest's memory."""
        memory = self.params["memory"]
        if self.cur_state in LIVE_STATES:
            if not memory:
                raise InvalidArgument(
                    "memory", "guest '%s' is %s, and QEMU's internal snapshot of a running guest always includes its "
                    "memory (libvirt refuses a disk-only one); set memory: true, or shut the guest down first"
                    % (self.guest, self.cur_state))
            return True
        if memory:
            self.warnings.append("memory: guest '%s' is %s; its snapshot holds its disks only" % (self.guest, self.cur_state))
        return False

    def _disks(self):
        """``(target, internal|no)`` for every disk; a disk that cannot hold an internal snapshot is an error."""
        action = "reading guest '%s'" % self.guest
        domain = Domain.from_xml(self.client.call(action, self.dom.XMLDesc, 0))
        out = []
        bad = []
        for disk in domain.disks:
            if disk.device in MEDIA_DEVICES or disk.readonly or disk.node.get("snapshot") == "no":
                out.append((disk.target, "no"))
                continue
            if disk.format != "qcow2" or disk.type not in ("file", "volume"):
                where = disk.path() or ("%s/%s" % (disk.source_pool, disk.source_volume) if disk.type == "volume" else None)
                bad.append("%s (%s, %s)" % (disk.target, where or disk.type, disk.format or "unknown format"))
                continue
            out.append((disk.target, "internal"))
        if bad:
            raise InvalidArgument(
                "guest", "guest '%s' has disks that cannot hold an internal snapshot: %s; internal snapshots need "
                "qcow2 files (convert the disk with qemu-img convert -O qcow2, or detach it); nothing was created"
                % (self.guest, "; ".join(bad)))
        return out

    def _check_agent(self):
        if self.cur_state not in LIVE_STATES:
            raise InvalidArgument(
                "quiesce", "guest '%s' is %s, so no guest agent can freeze its filesystems (the disks of a guest that "
                "is shut down are consistent already); drop quiesce" % (self.guest, self.cur_state))
        try:
            self.dom.fsInfo(0)  # answered by the guest agent; changes nothing
        except libvirt.libvirtError as e:
            raise OperationFailed(
                "quiesce: the guest agent of guest '%s' does not answer (%s); install and start qemu-guest-agent in the "
                "guest (kvm_guest adds its channel), or drop quiesce" % (self.guest, e.get_error_message()),
                code=e.get_error_code(), uri=self.client.uri, option="quiesce")

    # -- steps ------------------------------------------------------------
    def _create(self, xml):
        flags = flag("VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC")
        action = "creating snapshot '%s' of guest '%s'" % (self.name, self.guest)
        if not self.params["quiesce"]:
            self.client.call(action, self.dom.snapshotCreateXML, xml, flags)
            return
        self.client.call("freezing the filesystems of guest '%s' (quiesce)" % self.guest, self.dom.fsFreeze, None, 0)
        try:
            self.client.call(action, self.dom.snapshotCreateXML, xml, flags)
        finally:
            self.client.call("thawing the filesystems of guest '%s'" % self.guest, self.dom.fsThaw, None, 0)

    def _delete(self, name):
        snap = self._lookup(name)
        self.client.call("deleting snapshot '%s' of guest '%s'" % (name, self.guest), snap.delete, 0)

    def _redefine(self, existing, description):
        snap = existing.copy()
        snap.description = description
        flags = flag("VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE")
        if existing.name == self.current:
            flags |= flag("VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT")
        self.client.call("updating the description of snapshot '%s' of guest '%s'" % (self.name, self.guest),
                         self.dom.snapshotCreateXML, snap.to_xml(), flags)

    def _revert(self, existing):
        snap = self._lookup(self.name)
        action = "reverting guest '%s' to snapshot '%s'" % (self.guest, self.name)
        try:
            self.dom.revertToSnapshot(snap, 0)
        except libvirt.libvirtError as e:
            if e.get_error_code() != flag("VIR_ERR_SNAPSHOT_REVERT_RISKY", -1):
                raise self.client.translate(e, action)
            # the running QEMU cannot load the snapshot in place; libvirt starts a new one
            self.client.call(action, self.dom.revertToSnapshot, snap, flag("VIR_DOMAIN_SNAPSHOT_REVERT_FORCE"))
        if existing.has_memory and self._agent_connected():
            # a snapshot taken with quiesce holds frozen filesystems in its memory; thawing others is a no-op
            try:
                self.dom.fsThaw(None, 0)
            except libvirt.libvirtError as e:
                self.warnings.append(
                    "guest '%s' resumed from snapshot '%s', but its guest agent did not thaw its filesystems (%s); if the "
                    "snapshot was taken with quiesce, thaw them once the agent answers (virsh domfsthaw)"
                    % (self.guest, self.name, e.get_error_message()))

    def _agent_connected(self):
        """Whether the guest agent's channel is open inside the guest (libvirt's live ``state``)."""
        domain = Domain.from_xml(self.client.call("reading guest '%s'" % self.guest, self.dom.XMLDesc, 0))
        return any(t.get("name") == GUEST_AGENT_CHANNEL and t.get("state") == "connected"
                   for t in domain.node.iterfind("./devices/channel/target"))

    # -- result -----------------------------------------------------------
    def result(self):
        if self.dom is None:
            return {"snapshot": {}, "snapshots": []}
        if self.check_mode:
            names = self._names()
            if self.state == "present" and self.name not in names:
                names.append(self.name)
            if self.state == "absent":
                names = [n for n in names if n != self.name]
            return {"snapshot": self.predicted or {}, "snapshots": names}
        self.snaps, self.current = self._read_snapshots()
        snap = self._find(self.name)
        facts = snap.facts(self.guest, snap.name == self.current) if snap is not None and self.state != "absent" else {}
        return {"snapshot": facts, "snapshots": self._names()}
