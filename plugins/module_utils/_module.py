# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module shares: the ``uri`` option, the run loop and a manager base.

A module's ``main()`` builds its AnsibleModule with :func:`argument_spec`
and hands it to :func:`run_module` with its manager class. Managers read
the actual state, compare it with the desired one, record a plan of
actions and apply it. Check mode runs the same code and only skips the
apply step, so ``changed`` and ``diff`` are the same in both modes.
"""

from __future__ import annotations

import time

from ansible.module_utils.basic import AnsibleModule, _load_params, env_fallback, missing_required_lib

from ansible_collections.kvmops.virt.plugins.module_utils._client import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LibvirtClient,
)
from ansible_collections.kvmops.virt.plugins.module_utils._diff import DiffTracker
from ansible_collections.kvmops.virt.plugins.module_utils._errors import Conflict, VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._xml import HAS_LXML, LXML_IMPORT_ERROR

COMMON_ARGS = dict(
    uri=dict(type="str", fallback=(env_fallback, ["LIBVIRT_DEFAULT_URI"])),
)


def argument_spec(**spec):
    """The module's own options plus the shared ones."""
    merged = dict(COMMON_ARGS)
    merged.update(spec)
    return merged


def refuse_nul_arguments():
    """Fail naming the option when a text argument holds a NUL character.

    Call it first in ``main()``: AnsibleModule logs its arguments to syslog
    when it starts, and syslog refuses NUL with a message that names no option
    ("embedded null character"). No value is shown: it may be a secret.
    """
    try:
        params = _load_params()
    except Exception:  # pylint: disable=broad-except  # AnsibleModule reports unreadable arguments itself
        return
    path = _nul_path(params, "")
    if path:
        # A module that logs nothing and checks nothing, only to report the failure;
        # its result carries no arguments (invocation) either.
        spec = dict((key, dict(type="raw")) for key in params if not key.startswith("_ansible_"))
        module = _UnloggedModule(argument_spec=spec, bypass_checks=True, supports_check_mode=True)
        module.fail_json(msg="%s: must not contain a NUL character" % path, invocation={"module_args": {}})


class _UnloggedModule(AnsibleModule):
    """An AnsibleModule that does not log its arguments (the task's no_log setting overrides the constructor's)."""

    def _log_invocation(self):
        pass


def _nul_path(value, path):
    """The option path of the first text value holding NUL in ``value``, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items = ((("%s.%s" % (path, k)) if path else str(k), v) for k, v in value.items() if not str(k).startswith("_ansible_"))
    elif isinstance(value, list):
        items = (("%s[%d]" % (path, i), v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, sub in items:
        found = _nul_path(sub, sub_path)
        if found:
            return found
    return None


def require_libraries(module, need_libvirt=True):
    if need_libvirt and not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not HAS_LXML:
        module.fail_json(msg=missing_required_lib("lxml"), exception=LXML_IMPORT_ERROR)


class Action:
    """One step of a plan: a description for the user and the call that does it."""

    __slots__ = ("description", "func")

    def __init__(self, description, func):
        self.description = description
        self.func = func


class Manager:
    """Base class of the resource managers.

    Subclasses implement :meth:`plan` (read, compare, call :meth:`act`) and
    :meth:`result` (the module's return keys after applying).
    """

    def __init__(self, module, client):
        self.module = module
        self.params = module.params
        self.client = client
        self.check_mode = module.check_mode
        self.diff = DiffTracker()
        self.actions = []
        self.warnings = []

    def act(self, description, func):
        """Add a step to the plan; it runs only outside check mode."""
        self.actions.append(Action(description, func))

    def plan(self):
        raise NotImplementedError

    def apply(self):
        for action in self.actions:
            action.func()

    def result(self):
        return {}

    @property
    def changed(self):
        return bool(self.actions) or self.diff.changed

    def run(self):
        self.plan()
        if not self.check_mode:
            self.apply()
        result = dict(changed=self.changed, diff=self.diff.diff(), actions=[a.description for a in self.actions])
        result.update(self.result())
        if self.warnings:
            result["warnings"] = list(self.warnings)
        return result


# How often a run that lost a race (see ``Conflict``) reads the state again and converges.
CONFLICT_ATTEMPTS = 4


def run_managed(module, manager_cls, client):
    """Plan and apply with a fresh manager; when another client created the
    object or changed its state first (``Conflict``), read the state again and
    converge from there, a few times."""
    for attempt in range(1, CONFLICT_ATTEMPTS):
        try:
            return manager_cls(module, client).run()
        except Conflict:
            time.sleep(0.2 * attempt)
    return manager_cls(module, client).run()  # the last attempt: a Conflict now is the error


def run_module(module, manager_cls, need_libvirt=True):
    """Run ``manager_cls`` against the module's URI; errors become ``fail_json``."""
    require_libraries(module, need_libvirt=need_libvirt)
    client = LibvirtClient(module.params.get("uri"))
    try:
        result = run_managed(module, manager_cls, client)
    except VirtError as e:
        module.fail_json(msg=e.msg, **e.result())
    finally:
        client.close()
    warnings = result.pop("warnings", [])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)
