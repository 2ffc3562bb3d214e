# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt_guests
short_description: Inventory of the guests on one or more libvirt hypervisors
version_added: 0.1.0
author:
  - kvmops.virt maintainers (@kvmops)
description:
  - Turns the guests (domains) of one or more libvirt hypervisors into inventory hosts.
  - "The configuration is a YAML file whose name ends in C(libvirt_guests.yml) or C(libvirt_guests.yaml)
    and that contains C(plugin: kvmops.virt.libvirt_guests)."
  - Each guest becomes a host named after the guest, with C(ansible_host) set to its first address
    (see O(prefer_ipv4)) and variables prefixed C(libvirt_), namely C(libvirt_name), C(libvirt_uuid), C(libvirt_state),
    C(libvirt_vcpus), C(libvirt_max_vcpus), C(libvirt_memory_mb) (current), C(libvirt_max_memory_mb),
    C(libvirt_interfaces) (each with C(mac), C(type), C(network), C(bridge), C(direct), C(model), C(ip), C(ips),
    C(addresses) with C(address), C(prefix), C(family) and C(guest_interface), and the C(address_source) they came from),
    C(libvirt_networks), C(libvirt_addresses), C(libvirt_disks) (each with C(target), C(device), C(bus), C(path),
    C(format), C(type), C(pool), C(volume)), C(libvirt_tags), C(libvirt_uri), C(libvirt_hypervisor), C(libvirt_virt_type),
    C(libvirt_arch), C(libvirt_machine), C(libvirt_autostart), C(libvirt_persistent), C(libvirt_active), C(libvirt_id),
    C(libvirt_title) and C(libvirt_description).
  - C(libvirt_interfaces) and C(libvirt_disks) have the shape of the C(interfaces) and C(disks) that
    M(kvmops.virt.kvm_guest) returns, with the extra keys above.
  - Tags are the ones M(kvmops.virt.kvm_guest) stores with its C(tags) option in the domain C(<metadata>),
    in the XML namespace C(https://github.com/kvmops/kvmops.virt/guest/1).
  - "Default groups (see O(default_groups)): C(libvirt_hypervisor_<hypervisor>), C(libvirt_state_<state>),
    C(libvirt_network_<network>) for each libvirt network the guest is attached to, and C(libvirt_tag_<tag>) for each tag.
    Characters other than letters, digits and C(_) in group names become C(_)."
  - "Host names: a guest's host name is its name. When a guest of the same name was already added from an earlier
    URI in O(uris) (and passed the filters), the later one is named C(<guest>@<hypervisor>), where C(<hypervisor>) is
    the hypervisor name described in O(hypervisor_names). With O(qualified_names=true) every host is named
    C(<guest>@<hypervisor>)."
  - A URI that cannot be reached, or whose guests cannot be listed, gives a warning and the other URIs are still loaded.
    With O(strict=true) it is an error instead.
  - The connections are read-only unless O(readonly=false), or O(address_source=agent) with O(readonly) unset.
extends_documentation_fragment:
  - constructed
  - inventory_cache
requirements:
  - libvirt-python
  - lxml
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    type: str
    required: true
    choices: [kvmops.virt.libvirt_guests]
  uris:
    description:
      - libvirt connection URIs of the hypervisors, local or remote, for example V(qemu:///system)
        or V(qemu+ssh://root@kvm1.example.com/system?no_tty=1).
      - When not set in the file, the environment variable E(KVMOPS_LIBVIRT_URIS) is used (a comma-separated list,
        for example set by an AWX credential), else E(LIBVIRT_DEFAULT_URI), else V(qemu:///system).
      - Entries may be Jinja2 templates, for example to take an SSH key path from the environment
        with V({{ lookup('env', 'KVMOPS_SSH_KEY'\) }}).
      - The same URI listed twice is read once.
    type: list
    elements: str
    default: [qemu:///system]
    env:
      - name: LIBVIRT_DEFAULT_URI
      - name: KVMOPS_LIBVIRT_URIS
  hypervisor_names:
    description:
      - Names for the hypervisors, by URI. The name is used in C(libvirt_hypervisor), in the group
        C(libvirt_hypervisor_<name>) and in the host names of duplicate guests.
      - A URI not listed here is named after the host part of the URI (V(kvm1.example.com) for
        V(qemu+ssh://root@kvm1.example.com/system)), or for a local URI after the host name libvirt
        reports for it. When two reachable URIs end up with the same name, the later one in O(uris)
        gets V(_2) appended (V(_3) for the third, and so on).
    type: dict
    default: {}
  names:
    description:
      - Only guests whose name matches one of these shell-style patterns (Python C(fnmatch), case-sensitive),
        for example V(web*) or V(db-[0-9]).
    type: list
    elements: str
    default: ['*']
  exclude_names:
    description: Leave out guests whose name matches one of these shell-style patterns (applied after O(names)).
    type: list
    elements: str
    default: []
  states:
    description:
      - Only guests in one of these states, named as in M(kvmops.virt.kvm_guest)'s C(guest.state) (and C(libvirt_state)),
        V(running), V(paused), V(shutdown) (shut off), V(crashed) and V(pmsuspended). V(all) includes every state.
      - A guest that libvirt reports as blocked or as being shut down counts as V(running).
        V(shutoff) and V(stopped) are accepted as other names of V(shutdown), V(suspended) of V(pmsuspended).
    type: list
    elements: str
    default: [running]
  address_source:
    description:
      - Where guest addresses come from. V(lease) reads the DHCP leases of libvirt's networks, V(arp) the host's ARP
        table, V(agent) asks the QEMU guest agent inside the guest (needs a read-write connection, see O(readonly)).
      - Addresses are matched to the guest's interfaces by MAC address.
    type: str
    choices: [lease, agent, arp]
    default: lease
  address_fallback:
    description:
      - For interfaces that O(address_source) has no address for, ask the other sources in the order
        V(lease), V(arp), V(agent). V(agent) is asked only over a read-write connection.
      - C(address_source) in each entry of C(libvirt_interfaces) says which source gave its addresses.
    type: bool
    default: true
  prefer_ipv4:
    description:
      - Order C(libvirt_addresses) with IPv4 addresses first, so that C(ansible_host) is an IPv4 address when the guest has one.
        Otherwise the order is that of the interfaces. Link-local and loopback addresses are never used.
      - A guest without an address gets no C(ansible_host) (set one with O(compose) if needed).
    type: bool
    default: true
  readonly:
    description:
      - Open the connections read-only. When not set, connections are read-only unless O(address_source=agent),
        which libvirt allows only over a read-write connection.
    type: bool
  qualified_names:
    description: Name every host C(<guest>@<hypervisor>) instead of only the later duplicates.
    type: bool
    default: false
  default_groups:
    description: Which default groups to create; an empty list creates none.
    type: list
    elements: str
    choices: [hypervisor, state, network, tag]
    default: [hypervisor, state, network, tag]
  strict:
    description:
      - Besides its meaning for O(compose), O(groups) and O(keyed_groups), V(true) makes an unreachable URI an error
        instead of a warning.
notes:
  - With caching enabled, what was read from the hypervisors is cached (filters, names, variables and groups are
    computed from it on every run). Nothing is written to the cache when a URI could not be read.
  - Remote URIs go through libvirt's own transports; for C(qemu+ssh) use key-based authentication
    (add V(no_tty=1) to the URI so that a missing key fails instead of waiting for a password).
seealso:
  - name: kvmops.virt inventory guide
    description: Configuration by example, host naming, AWX inventory sources and the deploy-then-inventory flow.
    link: https://github.com/kvmops/kvmops.virt/blob/main/docs/inventory.md
  - name: libvirt connection URIs
    description: The forms of O(uris), local and remote, and their parameters.
    link: https://libvirt.org/uri.html
"""

EXAMPLES = r"""
# inventory/kvm.libvirt_guests.yml: running guests on the local hypervisor
plugin: kvmops.virt.libvirt_guests

# Two hypervisors over SSH, every state, names starting with web or db
---
plugin: kvmops.virt.libvirt_guests
uris:
  - qemu+ssh://root@kvm1.example.com/system?no_tty=1
  - qemu+ssh://root@kvm2.example.com/system?no_tty=1
names: ['web*', 'db*']
exclude_names: ['*-template']
states: [all]

# Addresses from the guest agent, groups by tag, SSH as the cloud user
---
plugin: kvmops.virt.libvirt_guests
address_source: agent
keyed_groups:
  - key: libvirt_tags
    prefix: tag
compose:
  ansible_user: "'cloud'"
groups:
  webservers: "'web' in libvirt_tags"
  big: libvirt_memory_mb >= 4096

# Every host named <guest>@<hypervisor>, cached for 10 minutes
---
plugin: kvmops.virt.libvirt_guests
uris:
  - qemu:///system
  - qemu+ssh://root@10.0.0.7/system
hypervisor_names:
  qemu:///system: kvm1
  qemu+ssh://root@10.0.0.7/system: kvm2
qualified_names: true
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/kvmops-inventory
cache_timeout: 600
"""

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.kvmops.virt.plugins.module_utils import _inventory as inv
from ansible_collections.kvmops.virt.plugins.module_utils._addresses import address_sources
from ansible_collections.kvmops.virt.plugins.module_utils._client import (
    HAS_LIBVIRT,
    LibvirtClient,
    resolve_uri,
)
from ansible_collections.kvmops.virt.plugins.module_utils._errors import VirtError
from ansible_collections.kvmops.virt.plugins.module_utils._xml import HAS_LXML

# Bumped when the layout of the cached data changes, so old caches are ignored.
_CACHE_VERSION = 1


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "kvmops.virt.libvirt_guests"

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        if path.endswith(("libvirt_guests.yml", "libvirt_guests.yaml")):
            return True
        self.display.vvv("Skipping %s: the name of a kvmops.virt.libvirt_guests source ends in libvirt_guests.yml or .yaml" % path)
        return False

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        settings = self._settings()

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        data = None
        if use_cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                update_cache = True
            if data is not None and (data.get("version") != _CACHE_VERSION or data.get("source") != settings["source"]):
                data = None
                update_cache = True
        if data is None:
            data = self._read_hypervisors(settings)
            if data.get("complete") is False:
                update_cache = False
        if update_cache:
            self._cache[cache_key] = data

        self._populate(data, settings)

    # -- options ---------------------------------------------------------------
    def _settings(self):
        uris = []
        for uri in self.get_option("uris") or [resolve_uri(None)]:
            if uri and "{{" in uri:
                try:
                    uri = self.templar.template(uri)
                except Exception as e:
                    raise AnsibleParserError("uris: cannot template '%s': %s" % (uri, e))
            uri = str(uri or "").strip()
            if uri and uri not in uris:
                uris.append(uri)
        try:
            states = inv.normalize_states(self.get_option("states"))
        except ValueError as e:
            raise AnsibleParserError(str(e))
        kinds = self.get_option("default_groups") or []
        unknown = [k for k in kinds if k not in inv.DEFAULT_GROUP_KINDS]
        if unknown:
            raise AnsibleParserError("default_groups: unknown kind(s) %s; use %s" % (", ".join(unknown), ", ".join(inv.DEFAULT_GROUP_KINDS)))
        source = self.get_option("address_source")
        readonly = self.get_option("readonly")
        if readonly is None:
            readonly = source != "agent"
        elif readonly and source == "agent":
            raise AnsibleParserError(
                "address_source: agent needs a read-write connection (libvirt refuses the guest agent on read-only ones);"
                " remove readonly: true or choose lease or arp"
            )
        fallback = self.get_option("address_fallback")
        return {
            # What determines the data read from the hypervisors (and so the cache).
            "source": {
                "uris": uris,
                "address_sources": address_sources(source, fallback, agent_allowed=not readonly),
                "readonly": readonly,
            },
            "states": states,
            "names": self.get_option("names") or ["*"],
            "exclude_names": self.get_option("exclude_names") or [],
            "hypervisor_names": self.get_option("hypervisor_names") or {},
            "qualified_names": self.get_option("qualified_names"),
            "prefer_ipv4": self.get_option("prefer_ipv4"),
            "default_groups": kinds,
            "strict": self.get_option("strict"),
        }

    # -- reading ----------------------------------------------------------------
    def _read_hypervisors(self, settings):
        if not HAS_LIBVIRT:
            raise AnsibleParserError("kvmops.virt.libvirt_guests requires the libvirt Python binding (libvirt-python) on the controller")
        if not HAS_LXML:
            raise AnsibleParserError("kvmops.virt.libvirt_guests requires the lxml Python library on the controller")
        source = settings["source"]
        hypervisors = []
        complete = True
        for uri in source["uris"]:
            client = LibvirtClient(uri, readonly=source["readonly"])
            try:
                hypervisors.append(inv.collect(client, source["address_sources"], warn=self._guest_warning))
            except VirtError as e:
                complete = False
                if settings["strict"]:
                    raise AnsibleParserError("kvmops.virt.libvirt_guests: %s" % e.msg)
                self.display.warning("kvmops.virt.libvirt_guests: skipping uri '%s' (its guests are not in the inventory): %s" % (uri, e.msg))
            finally:
                client.close()
        return {"version": _CACHE_VERSION, "source": source, "complete": complete, "hypervisors": hypervisors}

    def _guest_warning(self, msg):
        self.display.warning("kvmops.virt.libvirt_guests: skipping a guest: %s" % msg)

    # -- building the inventory --------------------------------------------------
    def _populate(self, data, settings):
        hypervisors = data["hypervisors"]
        hv_names = inv.hypervisor_names(hypervisors, settings["hypervisor_names"])
        selected = []
        for hv, hv_name in zip(hypervisors, hv_names):
            for guest in inv.select_guests(hv["guests"], settings["names"], settings["exclude_names"], settings["states"]):
                selected.append((hv, hv_name, guest))
        host_names = inv.assign_host_names([(g["name"], hv_name) for _hv, hv_name, g in selected], settings["qualified_names"])

        strict = settings["strict"]
        for (hv, hv_name, guest), host in zip(selected, host_names):
            variables = inv.host_vars(guest, hv["uri"], hv_name, settings["prefer_ipv4"])
            variables = wrap_var(variables)
            host = self.inventory.add_host(host)
            for key, value in variables.items():
                self.inventory.set_variable(host, key, value)
            for group in inv.default_groups(variables, settings["default_groups"]):
                self.inventory.add_group(group)
                self.inventory.add_child(group, host)
            self._set_composite_vars(self.get_option("compose"), variables, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, host, strict=strict)
