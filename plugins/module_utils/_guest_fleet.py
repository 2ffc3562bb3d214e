# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_guests``: the guest manager of ``kvm_guest`` applied to a list of guests over one connection.

The run has three phases:

1. Input. Every item (``defaults`` merged under it) is validated against
   ``kvm_guest``'s own argument spec (:mod:`_guest_args`) with Ansible's
   ArgumentSpecValidator, then by the manager's own validation
   (:meth:`_guest_resolve.GuestResolver.validate`). Any error in any item
   fails the task before anything is read or changed, naming
   ``guests[i] (name)`` and the option.
2. Converge. Each guest runs :class:`_guest.GuestManager` exactly as
   ``kvm_guest`` does (plan, apply unless check mode, result), with its
   waits left out. A guest that fails does not stop the others.
3. Wait. The guests to wait for (running, with ``wait_for_ip``) are polled
   together, in one loop bounded by one timeout; each network's leases are
   read once per round (:func:`_addresses.guests_addresses`).

Secrets of the items (the options ``kvm_guest``'s spec marks ``no_log``)
are added to the module's ``no_log_values`` when its parameters are loaded,
before Ansible logs the invocation or validates anything (:class:`FleetModule`).
"""

from __future__ import annotations

import functools
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import _return_datastructure_name

from ansible_collections.kvmops.virt.plugins.module_utils._addresses import guests_addresses
from ansible_collections.kvmops.virt.plugins.module_utils._client import LibvirtClient
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument, VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._guest import GuestManager, no_address_error
from ansible_collections.kvmops.virt.plugins.module_utils._guest_args import guest_options
from ansible_collections.kvmops.virt.plugins.module_utils._guest_ops import POLL
from ansible_collections.kvmops.virt.plugins.module_utils._host_guests import HostGuests
from ansible_collections.kvmops.virt.plugins.module_utils._module import converge, require_libraries


def fleet_options():
    """The options of ``kvm_guests`` besides ``uri``."""
    return dict(
        guests=dict(type="list", elements="dict", required=True),
        defaults=dict(type="dict", default={}),
        wait_for_ip=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
    )


def _secrets(spec, params):
    """Every text value of ``params`` (raw, not validated) under an option the spec marks ``no_log``."""
    found = set()
    if not isinstance(params, dict):
        return found
    for key, opt in spec.items():
        value = params.get(key)
        if value is None:
            continue
        if opt.get("no_log"):
            try:
                found.update(_return_datastructure_name(value))
            except TypeError:
                found.add(str(value))
        elif opt.get("options"):
            for sub in value if isinstance(value, list) else [value]:
                found.update(_secrets(opt["options"], sub))
    return found


def item_secrets(params):
    """The secrets in the ``guests`` items and ``defaults`` of ``kvm_guests``' raw parameters."""
    spec = guest_options()
    found = _secrets(spec, params.get("defaults"))
    guests = params.get("guests")
    for item in guests if isinstance(guests, list) else []:
        found.update(_secrets(spec, item))
    return found


class FleetModule(AnsibleModule):
    """An AnsibleModule that knows the secrets inside its list items before it logs or validates them."""

    def _load_params(self):
        super()._load_params()
        # AnsibleModule logs its arguments (syslog) and echoes them (invocation, errors)
        # masking only no_log_values: the item options marked no_log go there first.
        self.no_log_values.update(s for s in item_secrets(self.params) if s)


class _GuestModule:
    """What :class:`GuestManager` reads from its module: one guest's parameters and check mode."""

    def __init__(self, params, check_mode):
        self.params = params
        self.check_mode = check_mode


class GuestRun:
    """One item of the list: its parameters, its manager once run, its result or failure."""

    def __init__(self, index, params, wait):
        self.index = index
        self.params = params
        self.name = params["name"]
        self.wait = wait
        self.manager = None
        self.result = None
        self.error = None

    @property
    def label(self):
        return "guests[%d] (%s)" % (self.index, self.name)


class GuestFleet:
    """Converges a list of guests with one :class:`GuestManager` per guest, over one connection."""

    def __init__(self, module, client):
        self.module = module
        self.params = module.params
        self.client = client
        self.check_mode = module.check_mode
        self.runs = []
        self.warnings = []
        # The host's guests, read at most once for the whole list (new MACs, MAC and disk path checks):
        # every item's manager gets this one instance, and it is refreshed for each guest changed here.
        self.host_guests = HostGuests(client)
        self.manager_cls = functools.partial(GuestManager, host_guests=self.host_guests)

    # -- input ---------------------------------------------------------------------
    def validate(self):
        """Every item against kvm_guest's spec, then the manager's validation; all errors at once."""
        validator = ArgumentSpecValidator(guest_options())
        defaults = self.params.get("defaults") or {}
        errors = []
        seen = {}
        for index, item in enumerate(self.params["guests"]):
            merged = dict(defaults)
            merged.update(item)
            label = "guests[%d] (%s)" % (index, merged.get("name") if isinstance(merged.get("name"), str) else "?")
            checked = validator.validate(merged)
            if checked.error_messages:
                errors.extend("%s: %s" % (label, msg) for msg in checked.error_messages)
                continue
            params = checked.validated_parameters
            if params["name"] in seen:
                duplicate = InvalidArgument("name", "the guest is already guests[%d] of the list" % seen[params["name"]])
                errors.append("%s: %s" % (label, duplicate.msg))
                continue
            seen[params["name"]] = index
            wait = params["state"] == "running" and (self.params["wait_for_ip"] or params["wait_for_ip"])
            run = GuestRun(index, params, wait)
            try:
                self.manager_cls(_GuestModule(params, self.check_mode), self.client).validate_options()
            except InvalidArgument as e:
                errors.append("%s: %s" % (label, e.msg))
                continue
            # The waits are the fleet's (one loop, one timeout); the manager's own is left out.
            params["wait_for_ip"] = False
            self.runs.append(run)
        if self.params["wait_timeout"] < 0:
            errors.append("wait_timeout: must not be negative, got %d" % self.params["wait_timeout"])
        if errors:
            raise InvalidArgument("guests", "nothing was changed; " + "; ".join(errors))

    # -- converge ------------------------------------------------------------------
    def converge(self, run):
        try:
            run.manager, run.result = converge(_GuestModule(run.params, self.check_mode), self.manager_cls, self.client)
        except VirtError as e:
            run.error = e
            if not self.check_mode:
                self.host_guests.refresh(run.name)  # it may have changed before it failed
            return
        if run.result.get("changed") and not self.check_mode:
            self.host_guests.refresh(run.name)
        for warning in run.result.pop("warnings", []):
            self.warnings.append("%s: %s" % (run.label, warning))

    # -- wait ------------------------------------------------------------------------
    def wait_for_addresses(self):
        """Poll every guest that waits, together, until each has an address or the timeout."""
        timeout = self.params["wait_timeout"]
        deadline = time.time() + timeout
        pending = [r for r in self.runs if r.wait and r.error is None and r.manager is not None]
        while pending:
            found = guests_addresses(self.client, [(r.name, r.manager.dom, r.manager.started_at) for r in pending])
            still = []
            for r in pending:
                if any(found[r.name].values()):
                    r.manager.ips = found[r.name]
                    r.result.update(r.manager.result())
                else:
                    still.append(r)
            pending = still
            if not pending:
                return
            if time.time() >= deadline:
                break
            time.sleep(POLL)
        for r in pending:
            r.error = no_address_error(self.client, r.name, timeout, r.manager.params, getattr(self.module, "no_log_values", ()))

    # -- the whole run ---------------------------------------------------------------
    def run(self):
        self.validate()
        for run in self.runs:
            self.converge(run)
        if not self.check_mode:
            self.wait_for_addresses()
        return self.result()

    def result(self):
        guests = []
        before = {}
        after = {}
        failed = []
        for r in self.runs:
            entry = dict(r.result or {"changed": False, "actions": []})
            diff = entry.pop("diff", None)
            entry["name"] = r.name
            entry["failed"] = r.error is not None
            if r.error is not None:
                # A guest that failed waiting for its address did converge: its result and diff stay.
                entry["msg"] = r.error.msg
                entry.update(r.error.result())
                failed.append("%s: %s" % (r.label, r.error.msg))
            if diff and (diff["before"] or diff["after"]):
                before[r.name] = diff["before"]
                after[r.name] = diff["after"]
            guests.append(entry)
        result = {
            "changed": any(g["changed"] for g in guests),
            "diff": {"before": before, "after": after},
            "guests": guests,
            "reboot_required": any(g.get("reboot_required") for g in guests),
            "failed_guests": [r.name for r in self.runs if r.error is not None],
        }
        if failed:
            result["msg"] = "%d of %d guests failed: %s" % (len(failed), len(self.runs), "; ".join(failed))
        return result


class _CachingClient(LibvirtClient):
    """One connection for the whole list; the host's capabilities are read once, not once per guest."""

    def __init__(self, uri):
        super().__init__(uri)
        self._capabilities = None
        self._domain_capabilities = {}

    def capabilities_xml(self):
        if self._capabilities is None:
            self._capabilities = super().capabilities_xml()
        return self._capabilities

    def domain_capabilities_xml(self, emulator=None, arch=None, machine=None, virttype=None):
        key = (emulator, arch, machine, virttype)
        if key not in self._domain_capabilities:
            self._domain_capabilities[key] = super().domain_capabilities_xml(emulator, arch, machine, virttype)
        return self._domain_capabilities[key]


def run_fleet(module):
    """Run ``kvm_guests``: every guest converges that can; the task fails naming each one that did not."""
    require_libraries(module)
    client = _CachingClient(module.params.get("uri"))
    fleet = GuestFleet(module, client)
    try:
        result = fleet.run()
    except VirtError as e:
        module.fail_json(msg=e.msg, **e.result())
    finally:
        client.close()
    for warning in fleet.warnings:
        module.warn(warning)
    if result.get("msg"):
        module.fail_json(**result)
    module.exit_json(**result)
