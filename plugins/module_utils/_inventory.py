# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``kvmops.virt.libvirt_guests`` inventory plugin reads from libvirt.

Two halves:

* :func:`collect` talks to one hypervisor through :class:`LibvirtClient` and
  returns plain, JSON-serializable data (so it can go into an inventory
  cache): the hypervisor's name and, for every guest, its UUID, state, CPUs,
  memory, interfaces with their addresses, disks and tags.
* Pure functions turn that data into inventory terms: which guests pass the
  filters, their host names (:func:`assign_host_names`), their ``libvirt_*``
  variables (:func:`host_vars`) and default groups (:func:`default_groups`).

Domain XML is read with kvm_guest's model (``_domain_xml.Domain``, ``GuestMetadata``),
so interfaces, disks and tags mean the same as in kvm_guest's ``guest`` result.
"""

from __future__ import annotations

import fnmatch
import re

from ansible_collections.kvmops.virt.plugins.module_utils import _domain_xml as dm
from ansible_collections.kvmops.virt.plugins.module_utils._addresses import (
    interface_addresses,
    merge_addresses,
    missing_addresses,
    ordered_addresses,
    usable_addresses,
)
from ansible_collections.kvmops.virt.plugins.module_utils._client import libvirt, uri_host
from ansible_collections.kvmops.virt.plugins.module_utils._errors import NotFound, VirtError

# The namespace kvm_guest keeps its <metadata> in (tags are read through _domain_xml.GuestMetadata).
GUEST_METADATA_NS = dm.NS

STATE_CHOICES = ["crashed", "paused", "pmsuspended", "running", "shutdown"]
# Other spellings accepted by the ``states`` filter.
STATE_ALIASES = {"shutoff": "shutdown", "shut off": "shutdown", "stopped": "shutdown", "suspended": "pmsuspended"}

DEFAULT_GROUP_KINDS = ("hypervisor", "state", "network", "tag")


def normalize_states(states):
    """The ``states`` option -> a list of state names, or None for every state.

    Raises ValueError naming the unknown entries."""
    result, unknown = [], []
    for state in states or ["all"]:
        state = STATE_ALIASES.get(str(state).strip().lower(), str(state).strip().lower())
        if state == "all":
            return None
        if state not in STATE_CHOICES:
            unknown.append(str(state))
        elif state not in result:
            result.append(state)
    if unknown:
        raise ValueError(
            "states: unknown state(s) %s; use %s (shutoff is an alias of shutdown) or all" % (", ".join(unknown), ", ".join(STATE_CHOICES))
        )
    return result


# -- the domain XML, through kvm_guest's model (_domain_xml.py) --------------------------------
def parse_domain(xml, resolve_volume=None):
    """The facts of one guest that come from its XML (no addresses, no state).

    Interfaces and disks have the shape of kvm_guest's ``guest.interfaces`` /
    ``guest.disks``, plus what an inventory needs (see the plugin's documentation).
    ``resolve_volume(pool, volume)`` gives the path of a ``type='volume'`` disk.
    """
    domain = dm.Domain.from_xml(xml)
    interfaces = dm.interface_facts(domain)
    for nic in interfaces:
        nic.update({"addresses": [], "address_source": None})
    disks = dm.disk_facts(domain, resolve_volume)
    for fact, disk in zip(disks, domain.disks):
        fact.update({"type": disk.type, "pool": disk.source_pool, "volume": disk.source_volume})
    tags = []
    for tag in domain.metadata().tags:
        tag = (tag or "").strip()
        if tag and tag not in tags:
            tags.append(tag)
    return {
        "name": domain.name,
        "uuid": domain.uuid,
        "title": domain.node.findtext("title"),
        "description": domain.node.findtext("description"),
        "virt_type": domain.virt_type,
        "arch": domain.arch,
        "machine": domain.machine,
        "vcpus": domain.vcpus,
        "max_vcpus": domain.max_vcpus,
        "memory_mb": domain.memory_mib,
        "max_memory_mb": domain.max_memory_mib,
        "interfaces": interfaces,
        "disks": disks,
        "tags": tags,
    }


# -- reading one hypervisor ------------------------------------------------------
def collect(client, sources, warn=None):
    """Read every guest of the hypervisor behind ``client``.

    ``sources``: address sources to ask, in order (see :func:`_addresses.address_sources`).
    ``warn``: called with a message for a guest that could not be read.
    Raises the client's typed errors when the hypervisor cannot be listed.
    """
    conn = client.conn
    with client.errors("reading the host name"):
        hostname = conn.getHostname()
    domains = client.list_domains()  # the handles, not just the XML: state, addresses and autostart are read per guest
    guests = []
    resolve_volume = _volume_resolver(client)
    for dom in domains:
        try:
            guest = _read_guest(client, dom, sources, resolve_volume)
        except NotFound:
            continue  # undefined while we were reading it
        except VirtError as e:
            if warn:
                warn(e.msg)
            continue
        guests.append(guest)
    guests.sort(key=lambda g: g["name"])
    return {"uri": client.uri, "hostname": hostname, "guests": guests}


def _volume_resolver(client):
    """``resolve(pool, volume)`` -> the volume's path, or None (looked up once each)."""
    known = {}

    def resolve(pool, volume):
        if (pool, volume) not in known:
            path = None
            try:
                found = client.lookup_pool(pool)
                vol = client.lookup_volume(found, volume) if found is not None else None
                path = vol.path() if vol is not None else None
            except (VirtError, libvirt.libvirtError):
                path = None
            known[(pool, volume)] = path
        return known[(pool, volume)]

    return resolve


def _read_guest(client, dom, sources, resolve_volume=None):
    name = dom.name()
    what = "guest '%s'" % name
    with client.errors("reading the definition of %s" % what):
        xml = dom.XMLDesc(0)
        state, _reason = dom.state(0)
        active = bool(dom.isActive())
        persistent = bool(dom.isPersistent())
        try:
            autostart = bool(dom.autostart())
        except libvirt.libvirtError:
            autostart = None
    guest = parse_domain(xml, resolve_volume)
    guest.update(
        {
            "state": dm.STATE_NAMES.get(state, "running"),
            "active": active,
            "persistent": persistent,
            "autostart": autostart,
            "id": dom.ID() if active else None,
        }
    )
    if active and guest["interfaces"]:
        replies = []
        for source in sources:
            if not missing_addresses(guest["interfaces"]):
                break
            reply = interface_addresses(dom, source)
            replies.append((source, reply))
            merge_addresses(guest["interfaces"], replies[-1:])
    return guest


# -- filters, names, variables and groups ------------------------------------------
def name_matches(name, patterns, exclude=()):
    """Case-sensitive shell-style (fnmatch) matching: any of ``patterns`` and none of ``exclude``."""
    if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def select_guests(guests, patterns, exclude=(), states=None):
    """Guests passing the filters; ``states`` None means every state."""
    return [
        g
        for g in guests
        if name_matches(g["name"], patterns, exclude) and (states is None or g["state"] in states)
    ]


def hypervisor_names(hypervisors, overrides=None):
    """A unique name per reachable hypervisor, in the order given.

    ``overrides`` maps a URI to a name. Otherwise the name is the host part of
    the URI, or the host name libvirt reports for a local URI. A name already
    used by an earlier hypervisor gets ``_2``, ``_3``, ... appended.
    """
    overrides = overrides or {}
    names = []
    for hv in hypervisors:
        base = overrides.get(hv["uri"]) or uri_host(hv["uri"]) or hv.get("hostname") or "localhost"
        name, n = base, 1
        while name in names:
            n += 1
            name = "%s_%d" % (base, n)
        names.append(name)
    return names


def assign_host_names(entries, qualified=False):
    """Inventory host names for ``(guest_name, hypervisor_name)`` pairs, in order.

    The first guest with a name keeps it; later guests with the same name are
    named ``<guest>@<hypervisor>``. With ``qualified`` every host is
    ``<guest>@<hypervisor>``. Should that be taken too (a guest literally named
    so), ``#2``, ``#3``, ... is appended.
    """
    taken = set()
    result = []
    for guest, hypervisor in entries:
        name = "%s@%s" % (guest, hypervisor) if qualified or guest in taken else guest
        base, n = name, 1
        while name in taken:
            n += 1
            name = "%s#%d" % (base, n)
        taken.add(name)
        result.append(name)
    return result


def host_vars(guest, uri, hypervisor, prefer_ipv4=True):
    """The ``libvirt_*`` variables of one guest (and ``ansible_host`` when it has an address)."""
    addresses = ordered_addresses(guest["interfaces"], prefer_ipv4)
    networks = []
    interfaces = []
    for iface in guest["interfaces"]:
        if iface.get("network") and iface["network"] not in networks:
            networks.append(iface["network"])
        ips = usable_addresses(iface.get("addresses") or [], prefer_ipv4)
        iface = dict(iface, ips=ips, ip=ips[0] if ips else None)
        interfaces.append(iface)
    variables = {
        "libvirt_name": guest["name"],
        "libvirt_uuid": guest["uuid"],
        "libvirt_state": guest["state"],
        "libvirt_active": guest.get("active"),
        "libvirt_persistent": guest.get("persistent"),
        "libvirt_autostart": guest.get("autostart"),
        "libvirt_id": guest.get("id"),
        "libvirt_title": guest.get("title"),
        "libvirt_description": guest.get("description"),
        "libvirt_virt_type": guest.get("virt_type"),
        "libvirt_arch": guest.get("arch"),
        "libvirt_machine": guest.get("machine"),
        "libvirt_vcpus": guest["vcpus"],
        "libvirt_max_vcpus": guest.get("max_vcpus"),
        "libvirt_memory_mb": guest["memory_mb"],
        "libvirt_max_memory_mb": guest.get("max_memory_mb"),
        "libvirt_interfaces": interfaces,
        "libvirt_networks": networks,
        "libvirt_addresses": addresses,
        "libvirt_disks": guest["disks"],
        "libvirt_tags": guest["tags"],
        "libvirt_uri": uri,
        "libvirt_hypervisor": hypervisor,
    }
    if addresses:
        variables["ansible_host"] = addresses[0]
    return variables


_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")


def safe_group_name(name):
    """Group names are letters, digits and ``_`` only; anything else becomes ``_``."""
    name = _UNSAFE_GROUP_CHARS.sub("_", str(name))
    if name[:1].isdigit():
        name = "_" + name
    return name


def default_groups(variables, kinds=DEFAULT_GROUP_KINDS):
    """``libvirt_hypervisor_<name>``, ``libvirt_state_<state>``, ``libvirt_network_<net>``, ``libvirt_tag_<tag>``."""
    groups = []
    if "hypervisor" in kinds:
        groups.append("libvirt_hypervisor_%s" % variables["libvirt_hypervisor"])
    if "state" in kinds:
        groups.append("libvirt_state_%s" % variables["libvirt_state"])
    if "network" in kinds:
        groups.extend("libvirt_network_%s" % n for n in variables["libvirt_networks"])
    if "tag" in kinds:
        groups.extend("libvirt_tag_%s" % t for t in variables["libvirt_tags"])
    result = []
    for group in groups:
        group = safe_group_name(group)
        if group not in result:
            result.append(group)
    return result
