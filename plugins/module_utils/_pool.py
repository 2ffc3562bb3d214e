# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of ``storage_pool``.

It validates the options for the pool type (``dir``, ``fs``, ``netfs``,
``logical``, ``disk``, ``iscsi``, ``rbd``), compares only what the user
specified with the pool's persistent definition, and plans define / build /
start / stop / autostart / redefine / delete steps. The ``<pool>`` model is in
``_storage_xml``; reading, refreshing and listing pools in ``_storage_ops``.

libvirt has no API to change a running pool. Changes to ``type``, ``path`` or
``source`` are written to the persistent definition (``defineXML`` with the
same UUID); on an active pool they take effect when it is restarted, which
the module reports with ``restart_required`` and a warning.
"""

from __future__ import annotations

import os

from ansible_collections.kvmops.virt.plugins.module_utils._client import flag, is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    InvalidArgument,
    Refused,
    VirtError,
)
from ansible_collections.kvmops.virt.plugins.module_utils._module import Manager
from ansible_collections.kvmops.virt.plugins.module_utils._storage_ops import (
    check_target_exists,
    live_pool_model,
    logical_volume_groups,
    missing_target_path,
    persistent_xml,
    pool_facts,
    pool_volume_names,
    refresh_pool,
)
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import (
    AUTH_TYPES,
    FILE_POOL_TYPES,
    POOL_TYPES,
    SOURCE_KEYS,
    TYPE_RULES,
    PoolXML,
    normalize_path,
    pool_xml,
    set_pool_options,
)
from ansible_collections.kvmops.virt.plugins.module_utils._validate import check_name

# Pool types whose storage libvirt can remove (virStoragePoolDelete).
DELETABLE_POOL_TYPES = ("dir", "fs", "netfs", "logical")


# -- options ------------------------------------------------------------------
def normalize_source(ptype, source):
    """Normalize the ``source`` option: drop unset keys, normalize device paths."""
    if not source:
        return {}
    result = {}
    for key in SOURCE_KEYS:
        value = source.get(key)
        if value is None:
            continue
        if key == "device":
            value = [v for v in value if v is not None]
            if ptype != "iscsi":
                value = [normalize_path(v) if v.startswith("/") else v for v in value]
        if key == "dir":
            value = normalize_path(value) if value.startswith("/") else value
        if key == "auth":
            value = dict((k, v) for k, v in value.items() if v is not None)
        result[key] = value
    return result


def validate_options(ptype, path, source):
    """Check the options given for ``ptype`` (whatever the pool's current state)."""
    rules = TYPE_RULES[ptype]
    if path is not None:
        if rules["path"] == "none":
            raise InvalidArgument("path", "'%s' pools have no target path; leave path unset" % ptype)
        if not path.startswith("/"):
            raise InvalidArgument("path", "must be an absolute path, got '%s'" % path)
    for key, value in source.items():
        if key not in rules["source"]:
            allowed = ", ".join("source.%s" % k for k in rules["source"]) or "no source options"
            raise InvalidArgument("source.%s" % key, "not used by '%s' pools (they take %s)" % (ptype, allowed))
        if key == "device":
            if not value:
                raise InvalidArgument("source.device", "must list at least one device")
            if rules["single_device"] and len(value) != 1:
                raise InvalidArgument("source.device", "'%s' pools take exactly one device, got %d" % (ptype, len(value)))
            if ptype != "iscsi":
                for dev in value:
                    if not dev.startswith("/"):
                        raise InvalidArgument("source.device", "must be an absolute device path, got '%s'" % dev)
        if key == "format" and rules["formats"] and value not in rules["formats"]:
            raise InvalidArgument("source.format", "unknown format '%s' for '%s' pools; use one of: %s" % (value, ptype, ", ".join(rules["formats"])))
        if key == "port" and not 0 < value < 65536:
            raise InvalidArgument("source.port", "must be between 1 and 65535, got %d" % value)
        if key == "name":
            check_name(value, "source.name", what="source")
        if key == "auth":
            if value.get("type") != AUTH_TYPES[ptype]:
                raise InvalidArgument("source.auth.type", "'%s' pools use auth type '%s'" % (ptype, AUTH_TYPES[ptype]))
        if key in ("host", "dir", "initiator") and not value:
            raise InvalidArgument("source.%s" % key, "must not be empty")


def validate_definition(model):
    """Check that a complete definition has what its type needs."""
    ptype = model.type
    rules = TYPE_RULES[ptype]
    if rules["path"] == "required" and not model.path:
        raise InvalidArgument("path", "required for a '%s' pool (%s)" % (ptype, rules["hint"]))
    for key in rules["required"]:
        if model.source_value(key) is None:
            raise InvalidArgument("source.%s" % key, "required for a '%s' pool" % ptype)


def _describe(value):
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


# -- the manager -------------------------------------------------------------
class PoolManager(Manager):
    """Plans and applies the ``storage_pool`` module's states."""

    def __init__(self, module, client):
        super().__init__(module, client)
        self.name = self.params["name"]
        self.state = self.params["state"]
        self.pool = None  # virStoragePool when it exists
        self.current = None  # PoolXML: persistent definition
        self.desired = None  # PoolXML: definition after this run
        self.was_active = False
        self.final_active = False
        self.restart_pending = False  # live and persistent definitions already differ
        self.redefine = False
        self.persistent = True
        self._rollback = []

    # -- planning ---------------------------------------------------------
    def plan(self):
        check_name(self.name, "name", "pool")
        path = self.params.get("path")
        if path is not None:
            path = normalize_path(path) if path.startswith("/") else path
        ptype = self.params.get("type")
        self.pool = self.client.lookup_pool(self.name)

        if self.state == "absent":
            if ptype is not None or path is not None or self.params.get("source"):
                self._validate_given(ptype or "dir", path)
            return self._plan_absent()

        if self.params.get("delete_storage"):
            raise InvalidArgument("delete_storage", "only used with state=absent")

        if self.pool is None:
            return self._plan_create(ptype or "dir", path)
        return self._plan_update(ptype, path)

    def _validate_given(self, ptype, path):
        source = normalize_source(ptype, self.params.get("source"))
        validate_options(ptype, path, source)
        return source

    def _plan_create(self, ptype, path):
        source = self._validate_given(ptype, path)
        desired = pool_xml(self.name, ptype, path, source)
        validate_definition(desired)
        self.desired = desired
        build = self._needs_build(desired, creating=True)

        self.diff.add("state", "absent", "active" if self.state == "active" else "inactive")
        self.diff.add("type", None, ptype)
        self.diff.add("path", None, desired.path)
        for key, value in source.items():
            if key == "auth":
                for akey, avalue in value.items():
                    self.diff.add("source.auth." + akey, None, avalue)
            else:
                self.diff.add("source." + key, None, value)
        autostart = self.params.get("autostart")
        if autostart is not None:
            self.diff.add("autostart", None, autostart)

        xml = desired.to_xml()
        self.act("define storage pool '%s' (%s)" % (self.name, ptype), lambda: self._define(xml, new=True))
        if build:
            self.act("build storage pool '%s' (%s)" % (self.name, self._build_what(desired)), self._build)
        if autostart:
            self.act("enable autostart of storage pool '%s'" % self.name, lambda: self._set_autostart(True))
        if self.state == "active":
            self.act("start storage pool '%s'" % self.name, self._start)
        self.final_active = self.state == "active"

    def _plan_update(self, ptype, path):
        pool = self.pool
        with self.client.errors("reading storage pool '%s'" % self.name):
            self.was_active = bool(pool.isActive())
            persistent = self.persistent = bool(pool.isPersistent())
            autostart_now = bool(pool.autostart()) if persistent else False
        self.current = PoolXML.from_xml(persistent_xml(self.client, pool))
        if self.was_active:
            live = live_pool_model(self.client, pool)
            self.restart_pending = _differs(self.current.key_fields(), live.key_fields())
            if self.state != "inactive":
                check_target_exists(self.client, pool, live)
        current_type = self.current.type
        if current_type not in POOL_TYPES:
            if ptype is not None or path is not None or self.params.get("source"):
                raise InvalidArgument("type", "pool '%s' has type '%s', which this module does not manage" % (self.name, current_type))
            target_type = current_type
            source = {}
        else:
            target_type = ptype or current_type
            source = self._validate_given(target_type, path)

        # the desired persistent definition
        if target_type != current_type:
            # a different kind of pool: build it from the options alone, keep name and UUID
            desired = pool_xml(self.name, target_type, path, source, uuid=self.current.uuid)
        else:
            desired = self.current.copy()
            if target_type in POOL_TYPES:
                set_pool_options(desired, target_type, path, source)
        if target_type in POOL_TYPES:
            validate_definition(desired)
        self.desired = desired

        # compare only what was specified
        changed_keys = []
        if self.diff.compare("type", ptype, current_type):
            changed_keys.append("type")
        if self.diff.compare("path", path, normalize_path(self.current.path)):
            changed_keys.append("path")
        for key, value in source.items():
            if key == "auth":
                for akey, avalue in value.items():
                    if self.diff.compare("source.auth." + akey, avalue, self.current.auth_value(akey)):
                        changed_keys.append("source.auth." + akey)
            elif self.diff.compare("source." + key, value, self.current.source_value(key)):
                changed_keys.append("source." + key)
        if ptype is not None and ptype != current_type and path is None and desired.path != self.current.path:
            # a type change can move the default target path too
            self.diff.add("path", self.current.path, desired.path)
        self.redefine = bool(changed_keys) or not persistent

        desired_active = {"active": True, "inactive": False, "present": self.was_active}[self.state]
        self.final_active = desired_active
        if desired_active != self.was_active:
            self.diff.add("state", "active" if self.was_active else "inactive", "active" if desired_active else "inactive")

        # steps: stop before redefining, start after
        if self.was_active and not desired_active:
            self.act("stop storage pool '%s'" % self.name, self._stop)
        if self.redefine:
            xml = desired.to_xml()
            what = ", ".join(changed_keys) if changed_keys else "make it persistent"
            self.act("redefine storage pool '%s' (%s)" % (self.name, what), lambda: self._define(xml, new=False))
        autostart = self.params.get("autostart")
        if self.diff.compare("autostart", autostart, autostart_now):
            self.act("%s autostart of storage pool '%s'" % ("enable" if autostart else "disable", self.name),
                     lambda: self._set_autostart(autostart))
        if desired_active and not self.was_active:
            if self._needs_build(desired, creating=False):
                if desired.type in FILE_POOL_TYPES and normalize_path(desired.path) == normalize_path(self.current.path):
                    self.warnings.append(
                        "the target directory %s of storage pool '%s' does not exist; it is created empty "
                        "(volumes that were in it are not restored)" % (desired.path, self.name)
                    )
                self.act("build storage pool '%s' (%s)" % (self.name, self._build_what(desired)), self._build)
            self.act("start storage pool '%s'" % self.name, self._start)

    def _plan_absent(self):
        if self.pool is None:
            return
        pool = self.pool
        force = self.params.get("force")
        delete_storage = self.params.get("delete_storage")
        with self.client.errors("reading storage pool '%s'" % self.name):
            self.was_active = bool(pool.isActive())
            self.persistent = bool(pool.isPersistent())
        if delete_storage and not self.persistent:
            raise InvalidArgument("delete_storage", "storage pool '%s' is transient (it disappears when stopped); "
                                  "libvirt can only delete the storage of a defined pool" % self.name)
        self.current = PoolXML.from_xml(persistent_xml(self.client, pool))
        live = None
        if self.was_active:
            live = live_pool_model(self.client, pool)
            self.restart_pending = _differs(self.current.key_fields(), live.key_fields())
        # the storage to delete is the one in use: the running definition of an active pool
        storage = live if live is not None else self.current
        ptype = storage.type
        if delete_storage and ptype not in DELETABLE_POOL_TYPES:
            raise InvalidArgument(
                "delete_storage", "libvirt cannot remove the storage of '%s' pools (only %s); remove it by other means"
                % (ptype, ", ".join(DELETABLE_POOL_TYPES))
            )
        volumes = None
        if self.was_active and missing_target_path(self.client, pool, live):
            volumes = []  # libvirt's list is stale: the files went with the directory
            self.warnings.append("the target directory %s of storage pool '%s' does not exist any more; "
                                 "the volumes that were in it are gone" % (live.path, self.name))
        elif self.was_active:
            refresh_pool(self.client, pool)
            volumes = pool_volume_names(self.client, pool)
            if volumes and not force:
                raise Refused(
                    "storage pool '%s' still holds %d volume(s) (%s); refusing to remove it. Remove the volumes first, "
                    "or set force: true (with delete_storage: true the volumes are deleted too, otherwise they stay on the storage)"
                    % (self.name, len(volumes), ", ".join(volumes[:10]) + (", ..." if len(volumes) > 10 else "")),
                    option="force",
                )
        elif not force:
            raise Refused(
                "storage pool '%s' is inactive, so libvirt cannot list its volumes and the module cannot check that it is empty; "
                "start it (state: active) and retry, or set force: true to remove it anyway" % self.name,
                option="force",
            )

        self.diff.add("state", "active" if self.was_active else "inactive", "absent")
        if delete_storage and volumes:
            self.diff.add("volumes", volumes, [])
            for vol_name in volumes:
                self.act("delete volume '%s' of storage pool '%s'" % (vol_name, self.name),
                         lambda vol_name=vol_name: self._delete_volume(vol_name))
        if self.was_active:
            self.act("stop storage pool '%s'" % self.name, self._stop)
        if delete_storage:
            if self.restart_pending:
                # stopping the pool would switch it to the pending definition; delete what was running
                xml = _definition_xml(live)
                self.act("restore the running definition of storage pool '%s' (path %s)" % (self.name, live.path),
                         lambda: self._define(xml, new=False))
            if self._storage_exists(storage):
                self.act("delete the storage of pool '%s' (%s)" % (self.name, self._delete_what(storage)), self._delete_storage)
            else:
                self.warnings.append("the storage of pool '%s' (%s) does not exist any more; nothing to delete" % (self.name, storage.path))
        elif volumes:
            self.warnings.append(
                "storage pool '%s' is removed; its %d volume(s) stay on the storage at %s (use delete_storage: true to remove them)"
                % (self.name, len(volumes), storage.path or storage.source_name)
            )
        if self.persistent:
            self.act("undefine storage pool '%s'" % self.name, self._undefine)

    def _needs_build(self, model, creating):
        ptype = model.type
        if ptype in FILE_POOL_TYPES:
            if is_local_uri(self.client.uri) and not self.client.uri.startswith("test:"):
                return not os.path.isdir(model.path)
            return creating  # cannot look at a remote host: build (mkdir -p) when defining
        if ptype == "logical":
            vg = model.source_name or self.name
            if vg in logical_volume_groups(self.client):
                return False
            if not model.source_device:
                raise InvalidArgument(
                    "source.device", "volume group '%s' does not exist; list the physical devices to create it on" % vg
                )
            return True
        return False

    def _build_what(self, model):
        if model.type == "logical":
            return "create volume group '%s' on %s" % (model.source_name or self.name, _describe(model.source_device))
        return "create directory %s" % model.path

    def _delete_what(self, model):
        if model.type == "logical":
            return "remove volume group '%s'" % (model.source_name or self.name)
        return "remove directory %s" % model.path

    def _storage_exists(self, model):
        if model.type in FILE_POOL_TYPES and is_local_uri(self.client.uri) and not self.client.uri.startswith("test:"):
            return os.path.isdir(model.path)
        if model.type == "logical":
            return (model.source_name or self.name) in logical_volume_groups(self.client)
        return True

    # -- steps ------------------------------------------------------------
    def apply(self):
        done = []
        try:
            for action in self.actions:
                action.func()
                done.append(action.description)
        except VirtError as e:
            notes = []
            undone = self._undo()
            if undone:
                notes.append("rolled back: " + "; ".join(undone))
            if done:
                notes.append("steps completed before the failure: " + "; ".join(done))
            if notes:
                e.msg = "%s (%s)" % (e.msg, "; ".join(notes))
                e.args = (e.msg,)
            raise

    def _undo(self):
        done = []
        for description, func in reversed(self._rollback):
            try:
                func()
                done.append(description)
            except Exception:  # pylint: disable=broad-except
                done.append("FAILED to undo: " + description)
        self._rollback = []
        return done

    def _define(self, xml, new):
        conn = self.client.conn
        self.pool = self.client.call("defining storage pool '%s'" % self.name, conn.storagePoolDefineXML, xml, 0)
        pool = self.pool
        if new:
            self._rollback.append(("undefined the new pool", pool.undefine))
        elif self.current is not None and self.persistent:
            previous = self.current.to_xml()
            self._rollback.append(("restored the previous definition", lambda: conn.storagePoolDefineXML(previous, 0)))

    def _build(self):
        flags = 0
        if self.desired.type == "logical":
            # never write over a device that already holds data
            flags = flag("VIR_STORAGE_POOL_BUILD_NO_OVERWRITE", 4)  # 4 in every libvirt that has the flag
        self.client.call("building storage pool '%s'" % self.name, self.pool.build, flags)
        if self.current is None:  # a new pool: remove what was built if a later step fails
            pool = self.pool
            self._rollback.append(("removed the storage built for it", lambda: pool.delete(0)))

    def _start(self):
        self.client.call("starting storage pool '%s'" % self.name, self.pool.create, 0)

    def _stop(self):
        self.client.call("stopping storage pool '%s'" % self.name, self.pool.destroy)

    def _set_autostart(self, value):
        self.client.call("setting autostart of storage pool '%s'" % self.name, self.pool.setAutostart, 1 if value else 0)

    def _delete_volume(self, vol_name):
        vol = self.client.lookup_volume(self.pool, vol_name)
        if vol is not None:
            self.client.call("deleting volume '%s' of storage pool '%s'" % (vol_name, self.name), vol.delete, 0)

    def _delete_storage(self):
        self.client.call("deleting the storage of pool '%s'" % self.name, self.pool.delete, 0)

    def _undefine(self):
        self.client.call("undefining storage pool '%s'" % self.name, self.pool.undefine)

    # -- result -----------------------------------------------------------
    def result(self):
        if self.state == "absent":
            return {"pool": {}, "restart_required": False}
        if self.check_mode:
            facts = self._predicted_facts()
            restart = self.final_active and (self.restart_pending or (self.redefine and self.was_active))
        else:
            pool = self.client.lookup_pool(self.name)
            facts = pool_facts(self.client, pool)
            restart = False
            if facts["active"]:
                live = live_pool_model(self.client, pool)
                restart = _differs(PoolXML.from_xml(persistent_xml(self.client, pool)).key_fields(), live.key_fields())
        if restart:
            self.warnings.append(
                "storage pool '%s' is active and its persistent definition differs from the running one; "
                "the change takes effect when the pool is restarted (state: inactive, then state: active)" % self.name
            )
        return {"pool": facts, "restart_required": restart}

    def _predicted_facts(self):
        if self.pool is not None and not self.diff.changed and not self.actions:
            return pool_facts(self.client, self.pool)
        current = pool_facts(self.client, self.pool) if self.pool is not None else {}
        desired = self.desired
        autostart = self.params.get("autostart")
        if autostart is None:
            autostart = current.get("autostart", False)
        facts = {
            "name": self.name,
            "uuid": current.get("uuid"),
            "type": desired.type,
            "path": desired.path,
            "active": self.final_active,
            "autostart": autostart,
            "persistent": True,
            "capacity": None,
            "allocation": None,
            "available": None,
            "volumes": None,
        }
        if self.final_active and current.get("active"):
            # a running pool keeps running on its current definition
            for key in ("capacity", "allocation", "available", "volumes", "path", "type"):
                facts[key] = current.get(key)
        elif self.final_active:
            facts["volumes"] = []
        return facts


def _definition_xml(model):
    """A definition to pass to defineXML: without the live sizes."""
    copy = model.copy()
    copy.capacity = None
    copy.allocation = None
    copy.available = None
    return copy.to_xml()


def _differs(persistent_fields, live_fields):
    """True when a field set in the persistent definition differs in the live one."""
    for key, value in persistent_fields.items():
        if value is not None and live_fields.get(key) != value:
            return True
    return False
