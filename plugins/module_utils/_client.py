# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one libvirt client of the collection.

It owns the connection, object lookups (``None`` when an object is missing)
and the mapping of ``libvirtError`` to the typed exceptions in ``_errors``.
Modules, the inventory plugin and role helpers all go through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback

from ansible_collections.kvmops.virt.plugins.module_utils._errors import (
    Conflict,
    ConnectionFailed,
    NotFound,
    OperationFailed,
    VirtError,
)

try:
    import libvirt

    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only without the binding
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

DEFAULT_URI = "qemu:///system"

# libvirt error codes that mean "the object you asked for does not exist".
_NOT_FOUND_CODES = (
    "VIR_ERR_NO_DOMAIN",
    "VIR_ERR_NO_NETWORK",
    "VIR_ERR_NO_STORAGE_POOL",
    "VIR_ERR_NO_STORAGE_VOL",
    "VIR_ERR_NO_DOMAIN_SNAPSHOT",
    "VIR_ERR_NO_NWFILTER",
    "VIR_ERR_NO_SECRET",
    "VIR_ERR_NO_INTERFACE",
    "VIR_ERR_NO_NODE_DEVICE",
)
# Codes that mean the connection itself is gone or was never usable.
_CONNECTION_CODES = (
    "VIR_ERR_NO_CONNECT",
    "VIR_ERR_INVALID_CONN",
    "VIR_ERR_AUTH_FAILED",
    "VIR_ERR_AUTH_CANCELLED",
    "VIR_ERR_AUTH_UNAVAILABLE",
    "VIR_ERR_RPC",
)
# Codes that mean another client created the object or changed its state first.
_CONFLICT_CODES = ("VIR_ERR_STORAGE_VOL_EXIST", "VIR_ERR_DOM_EXIST", "VIR_ERR_NETWORK_EXIST")
# ... and the messages that say the same under a generic code.
_CONFLICT_MESSAGES = ("already exists", "exists already", "is already active", "is already running")


# scheme://[user@]host[:port]/...; a regular expression rather than urllib.parse,
# whose import (with ipaddress) costs every module run about 5 ms.
_URI_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]/?#]*\]|[^:/?#]*)")


def uri_host(uri):
    """The host part of a libvirt URI, lower case and without IPv6 brackets ("" when local)."""
    match = _URI_HOST.match(uri)
    return match.group(1).strip("[]").lower() if match else ""


def is_local_uri(uri):
    """True when the hypervisor at ``uri`` runs on the host executing this code,
    so that its files (images, console logs) are this host's files."""
    return uri_host(resolve_uri(uri)) in ("", "localhost", "127.0.0.1", "::1")


def resolve_uri(uri):
    """The URI to use: the option, then ``LIBVIRT_DEFAULT_URI``, then qemu:///system."""
    return uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def flag(name, default=0):
    """The libvirt constant ``name``, or ``default`` when this binding lacks it
    (older libvirt) or is not installed."""
    return getattr(libvirt, name, default) if libvirt is not None else default


def _codes(names):
    if libvirt is None:
        return ()
    return tuple(getattr(libvirt, n) for n in names if hasattr(libvirt, n))


class LibvirtClient:
    """A lazily opened libvirt connection with typed errors.

    Use as a context manager so the connection is always closed::

        with LibvirtClient(uri) as client:
            dom = client.lookup_domain("web1")
    """

    def __init__(self, uri=None, readonly=False, option="uri"):
        self.uri = resolve_uri(uri)
        self.readonly = readonly
        self.option = option  # the option the URI came from, named in connection errors
        self._conn = None

    # -- connection -------------------------------------------------------
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def open(self):
        if self._conn is not None:
            return self._conn
        if libvirt is None:
            raise VirtError("the libvirt Python binding (libvirt-python) is not installed")
        # Silence libvirt's default handler, which prints every error to stderr.
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        try:
            if self.readonly:
                self._conn = libvirt.openReadOnly(self.uri)
            else:
                self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise ConnectionFailed(
                "cannot connect to libvirt at uri '%s': %s" % (self.uri, _message(e)),
                code=e.get_error_code(),
                uri=self.uri,
                option=self.option,
                details={"daemon_unreachable": _is_socket_failure(e)},
            )
        if self._conn is None:  # older bindings return None instead of raising
            raise ConnectionFailed("cannot connect to libvirt at uri '%s'" % self.uri, uri=self.uri, option=self.option)
        return self._conn

    def close(self):
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @property
    def conn(self):
        return self.open()

    # -- error mapping ----------------------------------------------------
    @contextlib.contextmanager
    def errors(self, action):
        """Map a ``libvirtError`` raised inside the block to a typed exception.

        ``action`` says what was attempted, e.g. ``"starting network 'lab'"``.
        """
        try:
            yield
        except VirtError:
            raise
        except Exception as e:
            if libvirt is None or not isinstance(e, libvirt.libvirtError):
                raise
            raise self.translate(e, action)

    def translate(self, err, action):
        code = err.get_error_code()
        text = "%s failed on uri '%s': %s" % (action, self.uri, _message(err))
        if code in _codes(_NOT_FOUND_CODES):
            return NotFound(text, code=code, uri=self.uri)
        if code in _codes(_CONNECTION_CODES) or (
            code == getattr(libvirt, "VIR_ERR_SYSTEM_ERROR", -1)
            and err.get_error_domain() in _codes(("VIR_FROM_RPC", "VIR_FROM_REMOTE"))
        ):
            return ConnectionFailed(text, code=code, uri=self.uri)
        if code in _codes(_CONFLICT_CODES) or (
            code in _codes(("VIR_ERR_OPERATION_FAILED", "VIR_ERR_OPERATION_INVALID", "VIR_ERR_INTERNAL_ERROR"))
            and any(m in _message(err) for m in _CONFLICT_MESSAGES)
        ):
            return Conflict(text, code=code, uri=self.uri)
        return OperationFailed(text, code=code, uri=self.uri)

    def call(self, action, func, *args):
        """Call ``func(*args)`` with errors mapped; see :meth:`errors`."""
        with self.errors(action):
            return func(*args)

    def _lookup(self, what, name, func):
        try:
            return func(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _codes(_NOT_FOUND_CODES):
                return None
            raise self.translate(e, "looking up %s '%s'" % (what, name))

    # -- lookups (None when missing) -----------------------------------------
    def lookup_domain(self, name):
        return self._lookup("guest", name, self.conn.lookupByName)

    def lookup_network(self, name):
        return self._lookup("network", name, self.conn.networkLookupByName)

    def lookup_pool(self, name):
        return self._lookup("storage pool", name, self.conn.storagePoolLookupByName)

    def lookup_volume(self, pool, name):
        """``pool`` is a virStoragePool; refreshes nothing, the caller decides."""
        return self._lookup("volume", name, pool.storageVolLookupByName)

    def lookup_volume_by_path(self, path):
        return self._lookup("volume", path, self.conn.storageVolLookupByPath)

    def require_pool(self, name, option="pool"):
        pool = self.lookup_pool(name)
        if pool is None:
            raise NotFound(
                "%s: storage pool '%s' does not exist on uri '%s'" % (option, name, self.uri),
                uri=self.uri,
                option=option,
            )
        return pool

    def require_network(self, name, option="network"):
        net = self.lookup_network(name)
        if net is None:
            raise NotFound(
                "%s: network '%s' does not exist on uri '%s'" % (option, name, self.uri),
                uri=self.uri,
                option=option,
            )
        return net

    # -- iterating ------------------------------------------------------------
    def list_domains(self, flags=0, action="listing guests"):
        """Every guest (``listAllDomains``); ``flags`` such as ``VIR_CONNECT_LIST_DOMAINS_ACTIVE``."""
        return self.call(action, self.conn.listAllDomains, flags)

    def domain_xmls(self, flags=0, xml_flags=0, exclude=None):
        """``(name, xml)`` of every guest but ``exclude``, skipping guests that
        vanish or cannot be read while we list them (another client's work)."""
        for dom in self.list_domains(flags):
            try:
                name = dom.name()
                if name == exclude:
                    continue
                yield name, dom.XMLDesc(xml_flags)
            except Exception as e:  # pylint: disable=broad-except
                if libvirt is None or not isinstance(e, libvirt.libvirtError):
                    raise

    def list_pools(self):
        return self.call("listing storage pools", self.conn.listAllStoragePools, 0)

    # -- host ---------------------------------------------------------------
    def capabilities_xml(self):
        return self.call("reading host capabilities", self.conn.getCapabilities)

    def domain_capabilities_xml(self, emulator=None, arch=None, machine=None, virttype=None):
        return self.call(
            "reading domain capabilities",
            self.conn.getDomainCapabilities,
            emulator,
            arch,
            machine,
            virttype,
            0,
        )

    def versions(self):
        """(library version, hypervisor type, hypervisor version) as strings."""
        with self.errors("reading libvirt versions"):
            lib = _version_string(self.conn.getLibVersion())
            hv_type = self.conn.getType()
            hv = self.conn.getVersion()
        return lib, hv_type, _version_string(hv) if hv else None

    def host_cpu_count(self):
        """How many CPUs the host has (``getCPUMap``: present CPUs, online or not)."""
        return self.call("reading the host's CPUs", self.conn.getCPUMap, 0)[0]

    def node_device_xml(self, name):
        """The XML of host device ``name`` (``pci_0000_03_00_0``), or ``None`` when the host has no such device."""
        dev = self._lookup("host device", name, self.conn.nodeDeviceLookupByName)
        return None if dev is None else self.call("reading host device '%s'" % name, dev.XMLDesc, 0)

    def node_device_xmls(self, capability):
        """The XML of every host device with ``capability`` (``VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV``)."""
        devices = self.call("listing host devices", self.conn.listAllDevices, flag(capability))
        return [self.call("reading host device", dev.XMLDesc, 0) for dev in devices]

    def free_memory(self):
        """Free memory of the host in bytes (``getFreeMemory``)."""
        return self.call("reading free memory", self.conn.getFreeMemory)

    def compare_cpu(self, cpu_xml, arch=None, machine=None, virttype=None, hypervisor=True):
        """Whether this host can run a guest with the CPU ``cpu_xml``.

        ``hypervisor``: compare with what the hypervisor can provide for a guest of
        ``arch``/``machine``/``virttype`` (``compareHypervisorCPU``); otherwise with the
        host's own CPU (``compareCPU``, for host-passthrough guests). Returns
        ``(True, None)``, ``(False, reason)``, or ``(None, reason)`` when the driver
        cannot compare CPUs.
        """
        fail = flag("VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE", 1)
        try:
            if hypervisor:
                result = self.conn.compareHypervisorCPU(None, arch, machine, virttype, cpu_xml, fail)
            else:
                result = self.conn.compareCPU(cpu_xml, fail)
        except libvirt.libvirtError as e:
            code = e.get_error_code()
            if code == flag("VIR_ERR_CPU_INCOMPATIBLE", -1):
                return False, _message(e)
            if code in _codes(("VIR_ERR_NO_SUPPORT", "VIR_ERR_OPERATION_UNSUPPORTED")):
                return None, _message(e)
            raise self.translate(e, "comparing CPUs")
        if result == flag("VIR_CPU_COMPARE_INCOMPATIBLE", 0):
            return False, "the CPU is incompatible"
        return True, None

    # -- disks ----------------------------------------------------------------
    def block_resize(self, dom, target, size):
        """Grow disk ``target`` of the running guest ``dom`` to ``size`` bytes
        (``virDomainBlockResize``: QEMU resizes the image and the guest sees the new size)."""
        with self.errors("growing disk %s of guest '%s'" % (target, dom.name())):
            dom.blockResize(target, size, flag("VIR_DOMAIN_BLOCK_RESIZE_BYTES", 1))

    # -- migration ------------------------------------------------------------
    def migrate(self, dom, destination, params, flags, peer_to_peer):
        """Migrate ``dom`` (a guest of this connection) to ``destination`` (another
        ``LibvirtClient``). Peer to peer, this host's daemon connects to
        ``destination.uri`` itself (so the URI must work from this host);
        otherwise this client drives both connections (``migrate3``). Blocks
        until the migration ends; :meth:`abort_job` from another thread cancels it."""
        action = "migrating guest '%s' to uri '%s'" % (dom.name(), destination.uri)
        with self.errors(action):
            if peer_to_peer:
                dom.migrateToURI3(destination.uri, params, flags | flag("VIR_MIGRATE_PEER2PEER", 2))
            else:
                dom.migrate3(destination.conn, params, flags)

    @staticmethod
    def job_stats(dom, completed=False):
        """The statistics of ``dom``'s current (or last completed) job, ``{}`` when unreadable."""
        try:
            return dom.jobStats(flag("VIR_DOMAIN_JOB_STATS_COMPLETED", 1) if completed else 0) or {}
        except Exception:  # pylint: disable=broad-except  # the job ended or the guest left
            return {}

    def abort_job(self, dom):
        """Cancel ``dom``'s running job (a migration); True when libvirt accepted it."""
        try:
            dom.abortJob()
            return True
        except libvirt.libvirtError as e:
            if e.get_error_code() == flag("VIR_ERR_OPERATION_INVALID", -1):  # no job (any more)
                return False
            raise self.translate(e, "cancelling the migration of guest '%s'" % dom.name())


def _version_string(number):
    major, rest = divmod(int(number), 1000000)
    minor, micro = divmod(rest, 1000)
    return "%d.%d.%d" % (major, minor, micro)


def _is_socket_failure(err):
    """True when the daemon's socket could not be reached (daemon not running)."""
    return (
        err.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR
        and err.get_error_domain() == libvirt.VIR_FROM_RPC
        and "connect socket" in _message(err).lower()
    )


def _message(err):
    msg = err.get_error_message() or str(err)
    return msg.strip()
