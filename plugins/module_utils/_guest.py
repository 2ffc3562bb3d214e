# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of ``kvm_guest``: validate, resolve, plan, apply.

``plan()`` validates every option first (an :class:`InvalidArgument` names
the option), then reads the guest, the pools, volumes and networks it names,
builds the desired definition on top of the existing one
(:class:`_domain_builder.DomainBuilder`) and records the steps. Nothing changes on
the host before ``apply()``, which check mode skips: the diff of a check run
is the diff of the real run.

The phases live in their own files: :mod:`_guest_resolve` validates the
options and resolves them into a plain :class:`_guest_spec.GuestSpec`,
:mod:`_domain_builder` plans the definition, :mod:`_guest_ops` runs live
changes, power and undefine, :mod:`_addresses` finds the guest's addresses.
This file holds the plan (what to create, define, change live, start or stop),
the apply step with its rollback, and the result.

Changes reach a running guest in two ways: the persistent definition is
always rewritten with ``defineXML`` (never undefine + define), and what QEMU
can change live is applied to the running guest as well (memory and vCPUs
within their maximums, hot-plug of virtio/SCSI disks and of interfaces, cdrom
media, the graphics password, tags). Everything else waits for the next
boot and is reported with ``reboot_required`` and ``pending_changes``, which
are computed by comparing the user's options with the *live* definition, so
they stay true until the guest is powered off and on again.
"""

from __future__ import annotations

import time

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_spec as gs
from ansible_collections.kvmops.virt.plugins.module_utils import _guest_tuning
from ansible_collections.kvmops.virt.plugins.module_utils._client import flag
from ansible_collections.kvmops.virt.plugins.module_utils._domain_builder import DomainBuilder
from ansible_collections.kvmops.virt.plugins.module_utils._domain_tuning import find_filesystem, has_shared_memory, tuning_facts
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, OperationFailed, VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._guest_resolve import CreatedVolume, GuestResolver
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size
from ansible_collections.kvmops.virt.plugins.module_utils._xml import find_path, parse_xml, to_string


# What only some runs need is imported on first use: every module_utils file a
# run loads is compiled from Ansible's zip file on every task, so a run that
# changes nothing loads neither the operations on the guest, nor address
# discovery, nor storage operations (docs/developing.md, "What a module run loads").
def _storage_ops():
    from ansible_collections.kvmops.virt.plugins.module_utils import _storage_ops  # pylint: disable=import-outside-toplevel

    return _storage_ops


def _guest_ops():
    from ansible_collections.kvmops.virt.plugins.module_utils import _guest_ops  # pylint: disable=import-outside-toplevel

    return _guest_ops


def no_address_error(client, name, timeout, params=None, secrets=()):
    """The failure of a guest that had no address within ``wait_timeout`` (kvm_guest and kvm_guests),
    with the last lines of the guest's ``console_log`` as ``console_tail`` (``secrets`` and the
    graphics password masked; empty without a console_log)."""
    tail = []
    if params and params.get("console_log"):
        from ansible_collections.kvmops.virt.plugins.module_utils._disk_resize import console_tail  # pylint: disable=import-outside-toplevel

        known = set(str(v) for v in secrets or () if v)
        known.add((params.get("graphics") or {}).get("password"))
        tail = console_tail(params["console_log"], sorted(v for v in known if v))
    return OperationFailed(
        "wait_for_ip: guest '%s' is running, but none of its interfaces had an address after %d s "
        "(sources: DHCP leases, guest agent, ARP); raise wait_timeout, or check the guest's network" % (name, timeout),
        uri=client.uri, option="wait_for_ip", details={"console_tail": tail},
    )


class GuestManager(Manager):
    """Plans and applies ``kvmops.virt.kvm_guest``."""

    def __init__(self, module, client, host_guests=None):
        """``host_guests``: a shared ``_host_guests.HostGuests`` (kvm_guests), else the resolver reads its own."""
        super().__init__(module, client)
        self.name = self.params["name"]
        self.state = self.params["state"]
        self.resolver = GuestResolver(client, self.params, self.warnings, host_guests)
        self.dom = None
        self.actual = None        # persistent definition (Domain)
        self.live = None          # live definition of an active guest (Domain)
        self.cur_state = "absent"
        self.final = None         # the desired persistent definition
        self.changes = []
        self.spec = None
        self.to_create = []       # CreatedVolume
        self.seed_plan = None
        self.created_now = []     # volumes created by apply(), for rollback
        self.defined = False
        self.ips = {}
        self.predicted_state = None
        self.predicted_autostart = None
        self.live_kinds = set()
        self.persistent = False
        self.autostart = False
        self.started_at = None
        self.tuning = {}          # the tuning options, validated (_guest_tuning)

    def validate_options(self):
        """Check every option before anything is read (kvm_guests checks its whole list with it)."""
        self.resolver.validate()
        if self.state != "absent":
            self.tuning = _guest_tuning.validate(self.params)

    def _ops(self):
        """Operations on the guest as it is now (``self.dom`` is set once it is defined)."""
        return _guest_ops().GuestOps(self.client, self.dom, self.name, self.warnings, self.params["wait_timeout"])

    # =====================================================================
    # reading
    # =====================================================================
    def _read(self):
        self.dom = self.client.lookup_domain(self.name)
        if self.dom is None:
            self.cur_state = "absent"
            return
        secure = flag("VIR_DOMAIN_XML_SECURE")
        with self.client.errors("reading guest '%s'" % self.name):
            state = self.dom.state()[0]
            self.cur_state = dm.STATE_NAMES.get(state, "running")
            self.persistent = bool(self.dom.isPersistent())
            inactive = self.dom.XMLDesc(secure | (flag("VIR_DOMAIN_XML_INACTIVE") if self.persistent else 0))
            self.actual = dm.Domain.from_xml(inactive)
            if self.dom.isActive():
                self.live = dm.Domain.from_xml(self.dom.XMLDesc(secure))
            self.autostart = bool(self.dom.autostart()) if self.persistent else False

    # =====================================================================
    # planning
    # =====================================================================
    def plan(self):
        self.validate_options()
        self._read()
        if self.state == "absent":
            return self._plan_absent()
        r = self.resolver
        spec = r.resolve(self.actual, self.cur_state, self.check_mode)
        self.spec = spec
        _guest_tuning.check_host(self.client, self.tuning)
        _guest_tuning.apply_to_spec(spec, self.tuning)
        self.to_create = r.to_create
        self.seed_plan = r.seed_plan

        builder = DomainBuilder(self.actual, spec)
        self.final, self.changes = builder.build()
        if self.seed_plan is not None and self.seed_plan["missing"]:
            self.changes.append(gs.Change("cloud_init.volume", None, self.seed_plan["path"], dm.SEED))
        elif self.seed_plan is not None and self.seed_plan["incomplete"] and self.actual is not None:
            self.changes.append(gs.Change("cloud_init.volume", "incomplete", self.seed_plan["path"], dm.SEED))
        r.check_mac_conflicts(spec)
        if any(c.path == "tpm" and c.after is None for c in self.changes):
            self.warnings.append("tpm: libvirt keeps the removed TPM's state under /var/lib/libvirt/swtpm/%s on the host "
                                 "(a TPM added again finds it; removing the guest later does not delete it)" % self.actual.uuid)
        self._record_diff()
        self._plan_storage()
        self._plan_disk_grows()
        self._plan_define()
        self._plan_seed_replacement()
        self._plan_live()
        self._plan_autostart()
        self._plan_power()
        return None

    def _record_diff(self):
        target_state = self._target_state()
        if self.cur_state != target_state:
            self.diff.add("state", self.cur_state, target_state)
        for c in self.changes:
            self.diff.add(c.path, c.before, c.after, secret=c.secret)
        for cv in self.to_create:
            after = {"size": human_size(cv.size), "pool": cv.pool_name}
            if cv.backing:
                after["backing"] = cv.backing
            self.diff.add("volumes[%s/%s]" % (cv.pool_name, cv.name), None, after)
        if self.seed_plan is not None and self.seed_plan["rebuild"] and not any(c.path.startswith("cloud_init.") for c in self.changes):
            # a seed volume that does not match the recorded one (made outside this collection)
            self.diff.add("cloud_init.volume", "unrecorded", self.seed_plan["path"])

    def _target_state(self):
        if self.state == "present":
            return "shutdown" if self.cur_state == "absent" else self.cur_state
        return self.state

    # -- storage ----------------------------------------------------------

    def _plan_storage(self):
        for cv in self.to_create:
            self.act("create volume '%s' in storage pool '%s' (%s)" % (cv.name, cv.pool_name, human_size(cv.size)),
                     lambda cv=cv: self._create_volume(cv))
        sp = self.seed_plan
        if sp is not None and sp["rebuild"] and sp["vol"] is None:
            self.act("build the cloud-init seed ISO '%s' in storage pool '%s'" % (sp["name"], sp["pool_name"]), self._build_seed)

    def _plan_disk_grows(self):
        """Existing disks whose ``size`` is larger: grown live on a running guest, else offline (never shrunk)."""
        disks = self.params.get("disks") or []
        if not any(d and d.get("size") is not None for d in disks):
            return
        from ansible_collections.kvmops.virt.plugins.module_utils._disk_resize import plan_disk_grows  # pylint: disable=import-outside-toplevel

        running = self.cur_state in ("running", "paused")
        grows = plan_disk_grows(self.client, disks, self.spec.disks, set(cv.option for cv in self.to_create),
                                self.dom if running else None, self.live if running else None, self.resolver.resolve_volume_path)
        for g in grows:
            self.diff.add(g.option + ".size", human_size(g.before), human_size(g.after))
            self.act(g.description(), lambda g=g: g.apply(self.client, self.dom))

    def _plan_seed_replacement(self):
        """An existing seed is replaced only once libvirt has accepted the new
        definition: a rejected definition leaves the guest with its old seed."""
        sp = self.seed_plan
        if sp is not None and sp["rebuild"] and sp["vol"] is not None:
            self.act("build the cloud-init seed ISO '%s' in storage pool '%s'" % (sp["name"], sp["pool_name"]), self._replace_seed)

    def _replace_seed(self):
        try:
            self._build_seed()
        except VirtError as e:
            if self.actual is None or not self.defined:
                raise
            # the new definition records the new seed's digest; put the old one back so
            # that the next run sees the difference and builds the seed again
            try:
                _guest_ops().define(self.client, self.name, self.actual.to_xml())
                e.msg = ("%s; the previous definition of guest '%s' was restored, and its seed volume '%s' is rebuilt by the next run"
                         % (e.msg, self.name, self.seed_plan["name"]))
            except VirtError:
                e.msg = "%s; the previous definition of guest '%s' could not be restored" % (e.msg, self.name)
            e.args = (e.msg,)
            raise

    def _create_volume(self, cv):
        cv.vol = _storage_ops().create_volume(self.client, cv.pool, cv.xml)
        self.created_now.append(cv)
        real = dm.norm_path(self.client.call("reading volume '%s'" % cv.name, cv.vol.path))
        if real != cv.path:
            self._move_path(cv.path, real, cv.pool_name, cv.name)
            cv.path = real

    def _move_path(self, old, new, pool_name, vol_name):
        for disk in self.final.disks:
            if disk.path() == old:
                disk.set_source("block" if disk.type == "block" else "file", new)
        meta = self.final.metadata()
        meta.set_volume_path(pool_name, vol_name, new)
        meta.write(self.final)

    def _build_seed(self):
        # the ISO writer is needed only when a seed is (re)built
        from ansible_collections.kvmops.virt.plugins.module_utils._iso9660 import build_iso, seed_writes  # pylint: disable=import-outside-toplevel

        ops = _storage_ops()
        sp = self.seed_plan
        iso = build_iso(sp["files"], volume_id="cidata")
        if sp["vol"] is not None:
            ops.delete_volume(self.client, sp["vol"])
        from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import volume_xml  # pylint: disable=import-outside-toplevel

        xml = parse_xml(volume_xml(sp["name"], len(iso), fmt="raw"), what="volume XML")
        find_path(xml, ["target", "permissions", "mode"], create=True).text = "0600"
        vol = ops.create_volume(self.client, sp["pool"], to_string(xml))
        cv = CreatedVolume("cloud_init", sp["pool"], sp["pool_name"], sp["name"], None, sp["path"], len(iso))
        cv.vol = vol
        self.created_now.append(cv)
        # the volume descriptor last: an interrupted upload leaves no file system (rebuilt by the next run)
        for offset, data in seed_writes(iso, self.name):
            ops.upload_bytes(self.client, vol, data, offset)
        real = dm.norm_path(self.client.call("reading volume '%s'" % sp["name"], vol.path))
        if real != sp["path"]:
            self._move_path(sp["path"], real, sp["pool_name"], sp["name"])
            meta = self.final.metadata()
            seed = meta.seed
            seed["path"] = real
            meta.seed = seed
            meta.write(self.final)

    # -- definition -----------------------------------------------------------

    def _plan_define(self):
        if self.actual is not None and not self.changes and self.persistent:
            return
        what = "define guest '%s'" % self.name if self.actual is None else "update the definition of guest '%s'" % self.name
        self.act(what, self._define)

    def _define(self):
        self.dom = _guest_ops().define(self.client, self.name, self.final.to_xml())
        self.defined = True

    # -- live changes ---------------------------------------------------------

    def _stays_active(self):
        return self.cur_state in ("running", "paused") and self._target_state() in ("running", "paused")

    def _live_applicable(self, change):
        """Whether ``change`` can be applied to the running guest (as far as can be known beforehand)."""
        live = self.live
        kind = change.kind
        if kind == dm.MEMORY:
            return live is not None and change.after <= (live.max_memory_mib or 0)
        if kind == dm.VCPUS:
            return live is not None and change.after <= (live.max_vcpus or 0)
        if kind in (dm.DISK_ATTACH, dm.DISK_DETACH):
            return change.data.get("bus") in dm.HOTPLUG_BUSES
        if kind == dm.FS_ATTACH:
            return live is not None and has_shared_memory(live)  # else the memory backing needs a restart first
        if kind == dm.FS_DETACH:
            return True
        if kind in (dm.DISK_MEDIA, dm.NIC_ATTACH, dm.NIC_DETACH, dm.NIC_UPDATE, dm.GRAPHICS_PASSWORD, dm.METADATA,
                    dm.VCPU_PIN, dm.EMULATOR_PIN):
            return True
        return False

    def _plan_live(self):
        if not self._stays_active() or self.live is None:
            return
        for c in self.changes:
            if not self._live_applicable(c):
                continue
            self.live_kinds.add(c.path)
            if c.kind == dm.MEMORY:
                self.act("set the memory of the running guest to %d MiB" % c.after, lambda c=c: self._ops().set_memory(c.after))
            elif c.kind == dm.VCPUS:
                self.act("set the vCPUs of the running guest to %d" % c.after, lambda c=c: self._ops().set_vcpus(c.after))
            elif c.kind == dm.DISK_DETACH:
                self.act("detach disk %s from the running guest" % c.data["target"], lambda c=c: self._ops().detach_disk(c.data["target"]))
            elif c.kind == dm.DISK_ATTACH:
                self.act("attach disk %s to the running guest" % c.data["target"], lambda c=c: self._ops().attach_disk(self._final_disk(c)))
            elif c.kind == dm.DISK_MEDIA:
                self.act("change the media of cdrom %s of the running guest" % c.data["target"], lambda c=c: self._ops().change_media(self._final_disk(c)))
            elif c.kind == dm.NIC_DETACH:
                self.act("detach interface %s from the running guest" % c.data.get("mac"), lambda c=c: self._ops().detach_interface(c.data.get("mac")))
            elif c.kind == dm.NIC_ATTACH:
                self.act("attach interface %s to the running guest" % c.path,
                         lambda c=c: self._ops().attach_interface(c.data.get("mac"), self._final_interface(c)))
            elif c.kind == dm.NIC_UPDATE:
                self.act("change the source of interface %s of the running guest" % c.data.get("mac"),
                         lambda c=c: self._ops().update_interface_source(c.data.get("mac"), self._final_interface(c)))
            elif c.kind == dm.GRAPHICS_PASSWORD:
                self.act("change the graphics password of the running guest",
                         lambda: self._ops().set_graphics_password((list(self.final.graphics) or [None])[0]))
            elif c.kind == dm.METADATA:
                self.act("update the tags of the running guest", lambda: self._ops().set_tags(self.spec.tags))
            elif c.kind == dm.VCPU_PIN:
                self.act("pin the vCPUs of the running guest",
                         lambda c=c: self._ops().pin_vcpus(c.data["pins"], c.data["unpinned"]))
            elif c.kind == dm.FS_DETACH:
                self.act("detach shared directory '%s' from the running guest" % c.data["target"],
                         lambda c=c: self._ops().detach_filesystem(c.data["target"]))
            elif c.kind == dm.FS_ATTACH:
                self.act("attach shared directory '%s' to the running guest" % c.data["target"],
                         lambda c=c: self._ops().attach_filesystem(c.data["target"], find_filesystem(self.final, c.data["target"])))
            elif c.kind == dm.EMULATOR_PIN:
                self.act("pin the emulator threads of the running guest", lambda c=c: self._ops().pin_emulator(c.data["cpus"]))
        # de-duplicate actions that several changes share (a NIC with two source keys)
        seen = set()
        kept = []
        for a in self.actions:
            if a.description in seen:
                continue
            seen.add(a.description)
            kept.append(a)
        self.actions = kept

    def _final_disk(self, change):
        return self.final.find_disk(change.data["target"])

    def _final_interface(self, change):
        mac = change.data.get("mac")
        return self.final.find_interface(mac) if mac else None

    # -- autostart --------------------------------------------------------------

    def _plan_autostart(self):
        want = self.params.get("autostart")
        current = False if self.actual is None else self.autostart
        self.predicted_autostart = current if want is None else want
        if want is None or (self.actual is not None and want == current):
            return
        if self.actual is None and not want:
            return
        self.diff.add("autostart", None if self.actual is None else current, want)
        self.act("%s autostart of guest '%s'" % ("enable" if want else "disable", self.name),
                 lambda: self._ops().set_autostart(want))

    # -- power ------------------------------------------------------------------

    def _plan_power(self):
        cur = self.cur_state
        target = self._target_state()
        self.predicted_state = target
        if cur == target or self.state == "present":
            return
        if target == "running":
            if cur in ("absent", "shutdown"):
                self.act("start guest '%s'" % self.name, self._start)
            elif cur == "crashed":
                self.act("power off crashed guest '%s'" % self.name, lambda: self._ops().destroy())
                self.act("start guest '%s'" % self.name, self._start)
            elif cur == "paused":
                self.act("resume guest '%s'" % self.name, lambda: self._ops().resume())
            elif cur == "pmsuspended":
                self.act("wake up guest '%s'" % self.name, lambda: self._ops().wakeup())
        elif target == "paused":
            if cur in ("absent", "shutdown"):
                self.act("start guest '%s' paused" % self.name, lambda: self._start(paused=True))
            elif cur == "crashed":
                self.act("power off crashed guest '%s'" % self.name, lambda: self._ops().destroy())
                self.act("start guest '%s' paused" % self.name, lambda: self._start(paused=True))
            else:
                if cur == "pmsuspended":
                    self.act("wake up guest '%s'" % self.name, lambda: self._ops().wakeup())
                self.act("pause guest '%s'" % self.name, lambda: self._ops().pause())
        elif target == "shutdown":
            if cur == "crashed":
                self.act("power off crashed guest '%s'" % self.name, lambda: self._ops().destroy())
            elif cur in ("running", "paused", "pmsuspended"):
                self.act("shut down guest '%s'" % self.name, lambda: self._ops().shutdown(self.params["force"]))

    def _start(self, paused=False):
        self.started_at = self._ops().start(paused)

    # =====================================================================
    # removal
    # =====================================================================

    def _plan_absent(self):
        if self.dom is None:
            return None
        self.diff.add("state", self.cur_state, "absent")
        if self.cur_state in ("running", "paused", "pmsuspended"):
            self.act("shut down guest '%s'" % self.name, lambda: self._ops().shutdown(self.params["force"]))
        elif self.cur_state == "crashed":
            self.act("power off crashed guest '%s'" % self.name, lambda: self._ops().destroy())
        self.act("undefine guest '%s' (with its NVRAM, TPM state, managed save, snapshot and checkpoint metadata)" % self.name,
                 self._undefine)
        if self.params["remove_storage"]:
            self._plan_remove_storage()
        return None

    def _undefine(self):
        if not self.persistent:
            return  # a transient guest is gone once it is off
        self._ops().undefine()

    def _plan_remove_storage(self):
        meta = self.actual.metadata()
        records = list(meta.volumes)
        seed = meta.seed
        if seed and seed.get("pool") and seed.get("volume"):
            if not any(r["pool"] == seed["pool"] and r["name"] == seed["volume"] for r in records):
                records.append(dict(pool=seed["pool"], name=seed["volume"], path=seed.get("path")))
        for rec in records:
            key = "volumes[%s/%s]" % (rec["pool"], rec["name"])
            pool = self.client.lookup_pool(rec["pool"])
            if pool is None or not pool.isActive():
                self.warnings.append("%s: storage pool '%s' is missing or inactive; the volume was not removed" % (key, rec["pool"]))
                continue
            if _storage_ops().missing_target_path(self.client, pool):
                self.warnings.append("%s: the directory of storage pool '%s' does not exist any more; the volume is gone with it" % (key, rec["pool"]))
                continue
            vol = self.resolver.lookup_volume(pool, rec["name"])
            if vol is None:
                continue
            path = dm.norm_path(self.client.call("reading volume '%s'" % rec["name"], vol.path))
            if rec.get("path") and dm.norm_path(rec["path"]) != path:
                self.warnings.append("%s: the volume's path %s is not the recorded %s; it was kept" % (key, path, rec["path"]))
                continue
            users = self.resolver.other_domains_using(path)
            if users:
                self.warnings.append("%s: kept, it is used by another guest: %s" % (key, ", ".join(sorted(users))))
                continue
            backed, doubts = self.resolver.volumes_backed_by(path)
            if backed:
                self.warnings.append("%s: kept, it is the backing file of %s" % (key, ", ".join(sorted(backed))))
                continue
            if doubts:
                self.warnings.append("%s: kept, it may be the backing file of an overlay that could not be checked (%s)"
                                     % (key, "; ".join(doubts)))
                continue
            self.diff.add(key, path, None)
            self.act("delete volume '%s' from storage pool '%s'" % (rec["name"], rec["pool"]),
                     lambda vol=vol: _storage_ops().delete_volume(self.client, vol))

    # =====================================================================
    # applying
    # =====================================================================

    def apply(self):
        try:
            for action in self.actions:
                action.func()
        except VirtError as e:
            removed, left = self._rollback()
            if removed:
                e.msg = "%s; removed the volumes this task had created: %s" % (e.msg, ", ".join(removed))
            if left:
                e.msg = "%s; these volumes this task had created could not be deleted and are left behind: %s" % (
                    e.msg, ", ".join("%s/%s (%s)" % (v["pool"], v["volume"], v["path"]) for v in left))
                e.details["left_behind"] = left
            e.args = (e.msg,)
            raise
        if self.params.get("wait_for_ip") and self.state == "running":
            self._wait_for_ip()

    def _rollback(self):
        """A definition that failed leaves no volumes behind that nothing uses."""
        if self.defined or self.state == "absent":
            return [], []
        removed = []
        left = []
        for cv in reversed(self.created_now):
            try:
                _storage_ops().delete_volume(self.client, cv.vol)
                removed.append("%s/%s" % (cv.pool_name, cv.name))
            except VirtError:
                left.append({"pool": cv.pool_name, "volume": cv.name, "path": cv.path})
        return removed, left

    def _wait_for_ip(self):
        timeout = self.params["wait_timeout"]
        deadline = time.time() + timeout
        while True:
            self.ips = self._addresses()
            if any(self.ips.values()):
                return
            if time.time() >= deadline:
                break
            time.sleep(_guest_ops().POLL)
        raise no_address_error(self.client, self.name, timeout, self.params, getattr(self.module, "no_log_values", ()))

    # =====================================================================
    # result
    # =====================================================================

    def _pending(self):
        """What the running guest lacks: user-specified values that differ in its live definition."""
        if self.check_mode:
            live = self.live
            state = self.predicted_state
            if state not in ("running", "paused") or live is None or self.cur_state not in ("running", "paused"):
                return []
        else:
            if self.dom is None or not self.dom.isActive():
                return []
            try:
                live = self._ops().current_live()
            except VirtError:
                return []
        spec = self.spec.for_live_comparison()
        spec.volume_paths = self.resolver.volume_paths_of(live)
        if spec.machine:
            spec.machine_names = self.resolver.machine_names(spec.machine, live.machine)
        try:
            _dom, changes = DomainBuilder(live, spec).build()
        except InvalidArgument:
            return []
        pending = []
        for c in changes:
            if c.kind == dm.METADATA:
                continue
            if c.kind == dm.MEMORY and c.after <= (live.max_memory_mib or 0):
                continue  # the balloon target is set; the live XML shows the balloon's own value
            if c.path == "cpu_mode" and c.after in ("host-model", "maximum") and c.before == "custom":
                continue  # libvirt shows the expanded CPU of a running host-model guest
            if self.check_mode and c.path in self.live_kinds:
                continue  # applied live by the real run
            pending.append(c.path)
        return gs.unique(pending)

    def result(self):
        if self.state == "absent":
            facts = {"name": self.name, "state": "absent", "reboot_required": False, "pending_changes": []}
            return {"guest": facts, "reboot_required": False}
        if self.check_mode:
            domain = self.final
            state = self.predicted_state
            autostart = self.predicted_autostart
            if self.live is not None and self.dom is not None and self.cur_state in ("running", "paused"):
                self.ips = self._addresses(use_agent=False)
        else:
            self._read_back()
            domain = self.actual
            state = self.cur_state
            autostart = self.autostart
            if not self.ips and self.dom is not None and self.dom.isActive():
                self.ips = self._addresses(use_agent=False)
        pending = self._pending()
        facts = self._facts(domain, state, autostart)
        facts["reboot_required"] = bool(pending)
        facts["pending_changes"] = pending
        return {"guest": facts, "reboot_required": bool(pending)}

    def _read_back(self):
        self.live = None
        self.actual = None
        self._read()

    def _facts(self, domain, state, autostart):
        meta = domain.metadata()
        seed = meta.seed
        interfaces = dm.interface_facts(domain)
        for nic in interfaces:
            ips = self.ips.get(nic["mac"] or "", [])
            v4 = [ip for ip in ips if ":" not in ip]
            nic["ips"] = ips
            nic["ip"] = (v4 or ips or [None])[0]
        graphics = None
        gdevs = list(domain.graphics)
        if gdevs:
            graphics = {"type": gdevs[0].type, "listen": gdevs[0].listen}
            if self.live is not None and list(self.live.graphics):
                graphics["port"] = list(self.live.graphics)[0].port
        serials = list(domain.serials)
        facts = {
            "name": self.name,
            "uuid": domain.uuid,
            "state": state,
            "autostart": bool(autostart),
            "persistent": True,
            "virt_type": domain.virt_type,
            "machine": domain.machine,
            "arch": domain.arch,
            "memory_mb": domain.memory_mib,
            "max_memory_mb": domain.max_memory_mib,
            "vcpus": domain.vcpus,
            "max_vcpus": domain.max_vcpus,
            "cpu_mode": domain.cpu_mode,
            "firmware": domain.firmware,
            "secure_boot": domain.secure_boot,
            "boot": {"kernel": domain.kernel, "initrd": domain.initrd, "cmdline": domain.cmdline},
            "interfaces": interfaces,
            "disks": dm.disk_facts(domain, self.resolver.resolve_volume_path),
            "graphics": graphics,
            "console_log": dm.norm_path(serials[0].source_path) if serials and serials[0].type == "file" else None,
            "tags": meta.tags,
            "tpm": dm.tpm_facts(domain),
            "boot_order": domain.boot_devs or None,
            "cloud_init": None if not seed else {"pool": seed.get("pool"), "volume": seed.get("volume"), "path": seed.get("path")},
            "created_volumes": meta.volumes,
        }
        facts.update(tuning_facts(domain))
        return facts

    def _addresses(self, use_agent=True):
        from ansible_collections.kvmops.virt.plugins.module_utils._addresses import guest_addresses  # pylint: disable=import-outside-toplevel

        return guest_addresses(self.client, self.dom, self.name, self.started_at, use_agent)
