# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The ``uri`` option, requirements and attributes shared by every kvmops.virt module.

    A module that says more about an attribute (``platform``) declares it itself,
    which replaces the entry here.
    """

    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor to manage, local or remote,
        for example V(qemu:///system), V(qemu+ssh://root@host/system) or V(test:///default).
      - When not set, the environment variable E(LIBVIRT_DEFAULT_URI) is used,
        and without it V(qemu:///system).
    type: str
requirements:
  - libvirt-python
  - lxml
attributes:
  check_mode:
    support: full
    description: Check mode runs the same comparison as a real run and skips only the changes, so it reports the same C(changed) and C(diff).
  diff_mode:
    support: full
    description: The diff is a before/after dictionary keyed by option path, never whole XML, and never contains secrets.
  action_group:
    support: full
    membership:
      - kvmops.virt.libvirt
    description: Use C(group/kvmops.virt.libvirt) in C(module_defaults) to set O(uri) once for every module.
  platform:
    description: Runs on the managed host; libvirt may be local or remote (O(uri)).
    platforms: posix
    support: full
"""
