# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_guest``'s ``tpm`` (an emulated TPM, swtpm) and ``boot_order`` (``<os><boot dev=.../>``).

Pure logic: :func:`validate_boot_options` checks the two options before
anything is read, :func:`boot_options_spec` turns them into plain data for
the :class:`_guest_spec.GuestSpec`, and :class:`BootBuilder` (a base of
:class:`_domain_builder.DomainBuilder`) plans them on the desired definition.
Neither can change on a running guest: both are written to the persistent
definition (``CONFIG``), so a running guest reports ``reboot_required``.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._guest_spec import TpmSpec
from ansible_collections.kvmops.virt.plugins.module_utils._xml import etree

BOOT_DEVICES = ("hd", "cdrom", "network")
TPM_MODELS = ("tpm-crb", "tpm-tis")
TPM_VERSIONS = ("2.0", "1.2")


def default_tpm_model(version):
    """The model a new TPM gets: CRB for TPM 2.0 (what virt-install picks), TIS for TPM 1.2 (the only one)."""
    return "tpm-tis" if version == "1.2" else "tpm-crb"


def validate_boot_options(params):
    """Refuse bad ``tpm`` and ``boot_order`` values (``InvalidArgument`` names the option)."""
    tpm = params.get("tpm")
    if tpm is not None:
        if tpm.get("state") == "absent" and (tpm.get("model") or tpm.get("version")):
            raise InvalidArgument("tpm.state", "absent removes the TPM; model and version cannot be set with it")
        if tpm.get("version") == "1.2" and tpm.get("model") == "tpm-crb":
            raise InvalidArgument("tpm.version", "TPM 1.2 is emulated with model tpm-tis only; tpm-crb is a TPM 2.0 "
                                  "interface (use version '2.0', or model tpm-tis)")
    order = params.get("boot_order")
    if order is None:
        return
    if not order:
        raise InvalidArgument("boot_order", "must name at least one boot device (%s)" % ", ".join(BOOT_DEVICES))
    for i, dev in enumerate(order):
        if dev in order[:i]:
            raise InvalidArgument("boot_order[%d]" % i, "'%s' is listed more than once" % dev)
    kernel = (params.get("boot") or {}).get("kernel")
    if kernel:
        raise InvalidArgument("boot_order", "cannot be combined with direct kernel boot (boot.kernel '%s'): QEMU starts that "
                              "kernel, so a boot order has no effect; drop one of the two" % kernel)


def boot_options_spec(params):
    """``(TpmSpec or None, boot order list or None)`` from the validated parameters."""
    tpm = params.get("tpm")
    spec = None
    if tpm is not None:
        spec = TpmSpec(tpm.get("state") != "absent", tpm.get("model"), tpm.get("version"))
    order = params.get("boot_order")
    return spec, (list(order) if order is not None else None)


def tpm_summary(tpm):
    return {"model": tpm.model, "version": tpm.version}


class BootBuilder:
    """The ``tpm`` and ``boot_order`` steps of the builder (uses ``spec``, ``actual``, ``domain``, ``new``, ``change()``)."""

    def _tpm(self):
        want = self.spec.tpm
        if want is None:
            return
        dom = self.domain
        existing = None if self.new else (list(self.actual.tpms) or [None])[0]
        if not want.present:
            if existing is not None:
                self.change("tpm", tpm_summary(existing), None)
                for node in list(dom.tpms):
                    dom.tpms.remove(node)
            return
        if existing is None:
            version = want.version or "2.0"
            model = want.model or default_tpm_model(version)
            node = etree.Element("tpm", model=model)
            etree.SubElement(node, "backend", type="emulator", version=version)
            dom.add_device(node)
            self.change("tpm", None, {"model": model, "version": version})
            return
        mine = list(dom.tpms)[0]
        version = want.version or existing.version or "2.0"
        model = want.model or existing.model
        if model is None or (version == "1.2" and model == "tpm-crb"):
            model = default_tpm_model(version)  # e.g. version 1.2 asked of a tpm-crb TPM
        if existing.backend_type != "emulator":
            self.change("tpm.backend", existing.backend_type, "emulator")
            backend = mine.find("./backend")
            if backend is not None:
                mine.node.remove(backend)
            etree.SubElement(mine.node, "backend", type="emulator", version=version)
        if model != existing.model:
            self.change("tpm.model", existing.model, model)
            mine.model = model
        if version != existing.version:
            self.change("tpm.version", existing.version, version)
            mine.version = version

    def _boot_order(self):
        order = self.spec.boot_order
        if order is None:
            return
        dom = self.domain
        if dom.kernel:
            raise InvalidArgument("boot_order", "the guest '%s' boots a kernel directly (boot.kernel '%s'), so a boot order "
                                  "has no effect; remove direct kernel boot with boot: {kernel: ''}" % (self.spec.name, dom.kernel))
        per_device = dom.device_boot_orders()
        if per_device:
            raise InvalidArgument("boot_order", "libvirt refuses <os><boot> together with per-device <boot order='N'/>, which "
                                  "the guest's %s carry; remove those (xml option) or drop boot_order"
                                  % ", ".join(sorted(set("<%s>" % n.tag for n in per_device))))
        actual = [] if self.new else self.actual.boot_devs
        if self.new or actual != order:
            self.change("boot_order", None if self.new else (actual or None), list(order))
            dom.boot_devs = order
