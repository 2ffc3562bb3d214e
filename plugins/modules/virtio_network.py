#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: virtio_network
short_description: Manage libvirt virtual networks (NAT, routed, isolated, open, host bridge, macvtap)
version_added: 0.1.0
description:
  - Defines, starts, stops, updates and removes a libvirt virtual network from structured options,
    never from XML templates.
  - All six forward modes are built from O(mode) and its options. V(nat), V(route), V(isolated) and V(open)
    networks get a bridge created by libvirt with addresses, DHCP and DNS served by libvirt's dnsmasq.
    V(bridge) connects guests to an existing host bridge, V(macvtap) gives them macvtap devices on a host interface.
  - Only what you specify is compared with the existing network. Values libvirt generates (UUID, the bridge's MAC,
    the bridge name when O(bridge) is not set, STP and delay, NAT port ranges) are kept and never count as a change.
    O(mode) always counts, because it has a default.
  - Changes to DHCP hosts (O(ipv4.hosts), O(ipv6.hosts)) and DNS hosts (O(dns_hosts)) are applied with libvirt's
    network update API, to the running network and to its persistent definition at once, without a restart.
    Guests on the network stay connected.
  - All other changes (mode, bridge, interface, addresses, DHCP range, MTU, domain) need the network redefined and
    restarted. When no running guest uses the network, this is done directly. When running guests use it, the restart
    is done only with O(force=true), and their interfaces are plugged into the restarted network again
    (unplugged and plugged with the same MAC and PCI slot; see RV(reconnected_guests)).
    Without O(force), the persistent definition is updated, the running network is left as it is, and the module
    returns RV(restart_required=true) with the waiting changes in RV(pending_changes); they take effect at the next
    start of the network, or in a later run with O(force=true).
  - Input is validated before anything is changed; see the notes.
author:
  - kvmops.virt maintainers (@kvmops)
options:
  name:
    description:
      - Name of the network.
      - Letters, digits, V(-), V(_) and V(.) are safe; whitespace, V(/), quotes and the XML characters V(<), V(>) and V(&) are refused.
    type: str
    required: true
  state:
    description:
      - V(present) defines the network (a new one is left stopped, an existing one keeps its running state).
      - V(active) defines and starts it.
      - V(inactive) defines it and stops it. Stopping a network that running guests use is refused unless O(force=true).
      - V(absent) stops and undefines it. Removing a network that running guests use is refused unless O(force=true).
    type: str
    choices: [present, active, inactive, absent]
    default: active
  mode:
    description:
      - V(nat) (guests reach outside networks through NAT on the host), V(route) (routed, no NAT), V(isolated)
        (no forwarding; guests reach only each other and the host), V(open) (routed, and libvirt adds no firewall rules).
        In these modes libvirt creates the bridge, and O(ipv4), O(ipv6), O(domain), O(dns_hosts) and O(mtu) apply.
      - V(bridge) connects guests to the existing host bridge O(bridge), which libvirt neither creates nor configures.
      - V(macvtap) gives guests macvtap devices (bridge mode) on the host interface O(interface).
      - V(bridge) and V(macvtap) networks have no addresses, DHCP, DNS or MTU of their own; switching an existing network
        to them removes those settings.
    type: str
    choices: [nat, route, isolated, open, bridge, macvtap]
    default: nat
  bridge:
    description:
      - With V(nat), V(route), V(isolated) and V(open), the name of the bridge libvirt creates. When not set, libvirt picks one
        (V(virbr1), ...) and later runs keep it.
      - With V(bridge) (required), the existing host bridge; the module fails when it does not exist or is not a bridge.
      - At most 15 characters.
    type: str
  interface:
    description:
      - With V(macvtap) (required), the host interface the guests' macvtap devices are created on.
      - With V(nat) and V(route), the host interface traffic is forwarded to (optional; any interface when not set).
      - The interface must exist.
    type: str
  ipv4:
    description:
      - The network's IPv4 subnet, DHCP range and static DHCP hosts. Not used with V(bridge) and V(macvtap).
      - When not set, the network's IPv4 settings are left as they are.
    type: dict
    suboptions:
      address:
        description:
          - The host's (gateway) address on the network with the prefix length, for example V(10.10.0.1/24).
          - It must be a host address of the subnet, not its network or broadcast address.
        type: str
        required: true
      dhcp:
        description:
          - The DHCP address range. O(ipv4.dhcp.start) and O(ipv4.dhcp.end) must be inside the subnet and ordered, and the range
            must not include O(ipv4.address).
          - An empty dictionary (V({})) means no DHCP range (static hosts are still served).
          - When not set, the existing range is left as it is.
        type: dict
        suboptions:
          start:
            description: First address of the range.
            type: str
          end:
            description: Last address of the range.
            type: str
      hosts:
        description:
          - Static DHCP hosts. The list is complete; hosts the network has that are not listed are removed.
            When not set, the existing hosts are left as they are.
          - Each host needs O(ipv4.hosts[].mac) or O(ipv4.hosts[].name); MACs, names and addresses must be unique,
            and addresses inside the subnet.
          - Changes are applied live and persistently, without restarting the network.
        type: list
        elements: dict
        suboptions:
          mac:
            description: MAC address of the guest interface (quote it in YAML).
            type: str
          ip:
            description: Address the host gets.
            type: str
            required: true
          name:
            description: Host name handed out with the lease (and resolvable by the network's DNS).
            type: str
          id:
            description: DHCPv6 DUID; only for O(ipv6.hosts).
            type: str
  ipv6:
    description:
      - The network's IPv6 subnet, DHCPv6 range and static DHCPv6 hosts, in the same shape as O(ipv4).
      - libvirt identifies IPv6 DHCP hosts by O(ipv6.hosts[].name) or O(ipv6.hosts[].id) (a DHCPv6 DUID), not by MAC address;
        a O(ipv6.hosts[].mac) is refused.
      - DHCPv6 needs a prefix length of 64 or longer.
    type: dict
    suboptions:
      address:
        description: The host's address on the network with the prefix length, for example V(fd00:10::1/64).
        type: str
        required: true
      dhcp:
        description: The DHCPv6 range, as for O(ipv4.dhcp).
        type: dict
        suboptions:
          start:
            description: First address of the range.
            type: str
          end:
            description: Last address of the range.
            type: str
      hosts:
        description: Static DHCPv6 hosts, as for O(ipv4.hosts); each needs O(ipv6.hosts[].name) or O(ipv6.hosts[].id).
        type: list
        elements: dict
        suboptions:
          mac:
            description: Not supported for IPv6 by libvirt; setting it fails with a message. Present so that both families share one shape.
            type: str
          ip:
            description: Address the host gets.
            type: str
            required: true
          name:
            description: Host name (identifies the host).
            type: str
          id:
            description: DHCPv6 DUID of the host, hex pairs separated by colons (identifies the host).
            type: str
  domain:
    description: DNS domain of the network. Changing it needs a restart of the network.
    type: str
  dns_hosts:
    description:
      - Extra DNS host entries served by the network's DNS. The list is complete; entries the network has that are not listed are removed.
        When not set, the existing entries are left as they are.
      - Changes are applied live and persistently, without restarting the network.
    type: list
    elements: dict
    suboptions:
      ip:
        description: Address (IPv4 or IPv6); each address appears once.
        type: str
        required: true
      hostnames:
        description: Names that resolve to O(dns_hosts[].ip).
        type: list
        elements: str
        required: true
  mtu:
    description: MTU of the bridge libvirt creates (68 to 65535; at least 1280 with IPv6). Not used with V(bridge) and V(macvtap).
    type: int
  autostart:
    description: Start the network when libvirt starts. When not set, autostart is left as it is (off for a new network).
    type: bool
  force:
    description:
      - Allow a restart (to apply a change) while running guests use the network, and reconnect their interfaces afterwards.
      - Allow V(absent) and V(inactive) while running guests use the network; they lose their link (see RV(disconnected_guests)).
    type: bool
    default: false
extends_documentation_fragment:
  - kvmops.virt.connection
notes:
  - "Validation before any change: O(name) characters; CIDR syntax and address family; DHCP range inside the subnet, ordered and not
    including the gateway; host addresses inside the subnet and not the gateway; valid unicast MACs; no duplicate host MAC, name, id
    or address; valid host and domain names; the options O(mode) needs (O(bridge) for V(bridge), O(interface) for V(macvtap)) and
    refuses; the host bridge or interface exists (looked up through libvirt, so it also works for remote O(uri))."
  - A failed start after a change puts back what was there before and says so in the message.
  - Only the first IPv4 and the first IPv6 C(<ip>) element of a network are managed; further ones are kept as they are.
  - "Diff keys are option paths: C(mode), C(ipv4.address), C(ipv4.dhcp), C(ipv4.hosts[52:54:00:aa:bb:cc].ip) (IPv4 hosts by MAC,
    else name; IPv6 hosts by id, else name), C(dns_hosts[10.10.0.5].hostnames), C(state), C(autostart)."
  - Reconnecting guests after a forced restart unplugs and plugs their interfaces (PCI hot-plug); the guest OS sees its NIC go
    and come back and must configure it again (most do, with DHCP). A guest that does not release the NIC within 15 seconds is
    reported in RV(disconnected_guests).
seealso:
  - name: libvirt network XML format
    description: The XML this module writes.
    link: https://libvirt.org/formatnetwork.html
"""

EXAMPLES = r"""
- name: A NAT network with DHCP, static hosts and DNS entries
  kvmops.virt.virtio_network:
    name: lab
    mode: nat
    bridge: virbr-lab
    ipv4:
      address: 10.10.0.1/24
      dhcp:
        start: 10.10.0.100
        end: 10.10.0.199
      hosts:
        - mac: "52:54:00:10:00:05"
          ip: 10.10.0.5
          name: web1
    domain: lab.example
    dns_hosts:
      - ip: 10.10.0.5
        hostnames: [web1, www]
    autostart: true

- name: Add a DHCP host to the running network (applied live, guests stay connected)
  kvmops.virt.virtio_network:
    name: lab
    mode: nat
    ipv4:
      address: 10.10.0.1/24
      hosts:
        - mac: "52:54:00:10:00:05"
          ip: 10.10.0.5
          name: web1
        - mac: "52:54:00:10:00:06"
          ip: 10.10.0.6
          name: web2

- name: An isolated network with IPv4 and IPv6
  kvmops.virt.virtio_network:
    name: backend
    mode: isolated
    ipv4:
      address: 192.168.210.1/24
      dhcp: {start: 192.168.210.10, end: 192.168.210.50}
    ipv6:
      address: fd00:210::1/64
      dhcp: {start: "fd00:210::100", end: "fd00:210::1ff"}
      hosts:
        - name: db1
          ip: "fd00:210::5"

- name: Guests on an existing host bridge
  kvmops.virt.virtio_network:
    name: lan
    mode: bridge
    bridge: br0

- name: Guests on macvtap devices of a host interface
  kvmops.virt.virtio_network:
    name: direct
    mode: macvtap
    interface: eth1

- name: Move the DHCP range; restarts the network and reconnects running guests
  kvmops.virt.virtio_network:
    name: lab
    ipv4:
      address: 10.10.0.1/24
      dhcp: {start: 10.10.0.50, end: 10.10.0.99}
    force: true
  register: lab

- name: Show current leases
  ansible.builtin.debug:
    msg: "{{ lab.network.leases }}"

- name: Remove a network, even if running guests use it
  kvmops.virt.virtio_network:
    name: lab
    state: absent
    force: true
"""

RETURN = r"""
network:
  description: The network after the task (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    name:
      description: Network name.
      type: str
      sample: lab
    uuid:
      description: libvirt UUID (V(null) when absent, and for a new network in check mode).
      type: str
      sample: 1ca1ecca-2c73-4a57-aad9-97e7fdf02734
    state:
      description: V(active), V(inactive) or V(absent).
      type: str
      sample: active
    active:
      description: Whether the network is running.
      type: bool
    autostart:
      description: Whether the network starts with libvirt.
      type: bool
    persistent:
      description: Whether the network has a persistent definition.
      type: bool
    bridge:
      description: The bridge of the network (libvirt's or the host bridge); V(null) for V(macvtap).
      type: str
      sample: virbr1
    mode:
      description: The network's mode (one of the O(mode) choices).
      type: str
      sample: nat
    leases:
      description: Current DHCP leases (empty when the network is not running).
      type: list
      elements: dict
      contains:
        mac:
          description: MAC address of the client.
          type: str
        ip:
          description: Leased address.
          type: str
        hostname:
          description: Host name the client sent, or V(null).
          type: str
        family:
          description: V(ipv4) or V(ipv6).
          type: str
        prefix:
          description: Prefix length of the subnet.
          type: int
        expiry_time:
          description: When the lease expires (seconds since the epoch).
          type: int
      sample: [{mac: "52:54:00:10:00:05", ip: 10.10.0.5, hostname: web1, family: ipv4, prefix: 24, expiry_time: 1767225600}]
restart_required:
  description:
    - V(true) when the running network differs from the requested settings in ways that need a restart, and the restart was not
      done because running guests use the network and O(force) is not set. The persistent definition has the changes already.
  returned: always
  type: bool
pending_changes:
  description: Option paths waiting for a restart of the network (empty unless RV(restart_required)).
  returned: always
  type: list
  elements: str
  sample: [ipv4.dhcp]
reconnected_guests:
  description: Running guests whose interfaces were plugged into the network again after a forced restart.
  returned: always
  type: list
  elements: str
disconnected_guests:
  description:
    - Running guests that lost their link on this network, with O(force) and V(absent) or V(inactive), or when reconnecting them
      after a restart failed (a warning says why).
  returned: always
  type: list
  elements: str
actions:
  description: The steps taken (or, in check mode, that would be taken).
  returned: always
  type: list
  elements: str
  sample: ["update network 'lab' (live and persistent): add-last ip-dhcp-host"]
diff:
  description: Before and after values keyed by option path.
  returned: always
  type: dict
  sample: {before: {"ipv4.hosts[52:54:00:10:00:06]": null}, after: {"ipv4.hosts[52:54:00:10:00:06]": {mac: "52:54:00:10:00:06", ip: 10.10.0.6}}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmops.virt.plugins.module_utils._module import argument_spec, refuse_nul_arguments, run_module
from ansible_collections.kvmops.virt.plugins.module_utils._network import STATES, NetworkManager
from ansible_collections.kvmops.virt.plugins.module_utils._network_spec import MODES


def _ip_options():
    return dict(
        address=dict(type="str", required=True),
        dhcp=dict(type="dict", options=dict(start=dict(type="str"), end=dict(type="str"))),
        hosts=dict(
            type="list",
            elements="dict",
            options=dict(mac=dict(type="str"), ip=dict(type="str", required=True), name=dict(type="str"), id=dict(type="str")),
        ),
    )


ARGUMENT_SPEC = argument_spec(
    name=dict(type="str", required=True),
    state=dict(type="str", default="active", choices=list(STATES)),
    mode=dict(type="str", default="nat", choices=list(MODES)),
    bridge=dict(type="str"),
    interface=dict(type="str"),
    ipv4=dict(type="dict", options=_ip_options()),
    ipv6=dict(type="dict", options=_ip_options()),
    domain=dict(type="str"),
    dns_hosts=dict(
        type="list",
        elements="dict",
        options=dict(ip=dict(type="str", required=True), hostnames=dict(type="list", elements="str", required=True)),
    ),
    mtu=dict(type="int"),
    autostart=dict(type="bool"),
    force=dict(type="bool", default=False),
)


def main():
    refuse_nul_arguments()
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True), NetworkManager)


if __name__ == "__main__":
    main()
