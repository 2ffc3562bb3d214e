# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark only: the least an Ansible module built on libvirt-python does per guest.

It imports libvirt and lxml, opens the connection, looks the guest up and then
either defines it from the XML it is given or reads and parses its definition
(no comparison, no validation, no diff). Its time per task, next to
ansible.builtin.ping's, is what any libvirt module pays over Ansible's
per-task floor before doing any work of its own.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kbench_libvirt_minimal
short_description: Benchmark only, the minimal libvirt-python module
description: Define a guest from O(xml) unless it exists; otherwise read and parse its XML.
options:
  name:
    description: Guest name.
    type: str
    required: true
  xml:
    description: Domain XML to define when the guest is missing.
    type: str
    required: true
author: kvmops.virt contributors
"""

import libvirt
from lxml import etree

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type="str", required=True), xml=dict(type="str", required=True)))
    conn = libvirt.open("qemu:///system")
    try:
        try:
            domain = conn.lookupByName(module.params["name"])
        except libvirt.libvirtError:
            domain = None
        if domain is None:
            conn.defineXML(module.params["xml"])
        else:
            etree.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    finally:
        conn.close()
    module.exit_json(changed=domain is None)


if __name__ == "__main__":
    main()
