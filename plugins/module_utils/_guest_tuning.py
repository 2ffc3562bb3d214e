# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_guest``'s tuning options, validated and checked against the host.

:func:`validate` turns ``cpu_pinning``, ``emulator_cpuset``, ``numa``,
``hugepages``, ``hostdevs`` and ``filesystems`` into the plain values of
:class:`_guest_spec.GuestSpec` (CPU sets as sorted tuples, sizes in KiB/MiB)
before anything is read; :func:`check_host` checks them against the host
(its CPUs and NUMA nodes, huge page sizes, the host devices through the node
device API, the shared directories) before anything changes, in check mode too.
"""

from __future__ import annotations

import os

from ansible_collections.kvmops.virt.plugins.module_utils._client import is_local_uri
from ansible_collections.kvmops.virt.plugins.module_utils._domain_tuning import (
    NUMA_MODES, UUID_RE, format_cpuset, hostdev_key, parse_cpuset, parse_pci_address, parse_usb_id,
)
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._size import parse_memory_mib, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils._xml import parse_xml

# QEMU's limit on a virtiofs mount tag
MAX_TAG_BYTES = 36

TUNING_OPTIONS = ("cpu_pinning", "emulator_cpuset", "numa", "hugepages", "hostdevs", "filesystems")


def tuning_options():
    """The argument spec of the tuning options (part of ``_guest_args.guest_options``)."""
    return dict(
        cpu_pinning=dict(type="list", elements="dict", options=dict(
            vcpu=dict(type="int", required=True),
            cpuset=dict(type="str", required=True),
        )),
        emulator_cpuset=dict(type="str"),
        numa=dict(type="dict", options=dict(
            cells=dict(type="list", elements="dict", options=dict(
                cpus=dict(type="str", required=True),
                memory=dict(type="raw", required=True),
                nodeset=dict(type="str"),
                mode=dict(type="str", choices=list(NUMA_MODES)),
            )),
            nodeset=dict(type="str"),
            mode=dict(type="str", choices=list(NUMA_MODES)),
        )),
        hugepages=dict(type="str"),
        hostdevs=dict(type="list", elements="dict", options=dict(
            address=dict(type="str"),
            vendor=dict(type="str"),
            product=dict(type="str"),
            uuid=dict(type="str"),
            managed=dict(type="bool", default=True),
            model=dict(type="str", choices=["vfio-pci", "vfio-ccw", "vfio-ap"]),
        ), mutually_exclusive=[("address", "vendor", "uuid"), ("address", "product", "uuid")],
            required_one_of=[("address", "vendor", "uuid")], required_together=[("vendor", "product")]),
        filesystems=dict(type="list", elements="dict", options=dict(
            source=dict(type="path", required=True),
            target=dict(type="str", required=True),
        )),
    )


# ---------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------
def validate(params):
    """The tuning options of ``params`` as plain values (``{}`` when none is given)."""
    out = {}
    vcpus = params.get("max_vcpus") or params.get("vcpus")
    if params.get("cpu_pinning") is not None:
        pins = {}
        index = out["cpu_pinning_index"] = {}
        for i, pin in enumerate(params["cpu_pinning"]):
            option = "cpu_pinning[%d]" % i
            if pin["vcpu"] < 0:
                raise InvalidArgument(option + ".vcpu", "must not be negative, got %d" % pin["vcpu"])
            if vcpus and pin["vcpu"] >= vcpus:
                raise InvalidArgument(option + ".vcpu", "vCPU %d does not exist: the guest has %d vCPUs (0 to %d)"
                                      % (pin["vcpu"], vcpus, vcpus - 1))
            if pin["vcpu"] in pins:
                raise InvalidArgument(option + ".vcpu", "vCPU %d is pinned twice" % pin["vcpu"])
            pins[pin["vcpu"]] = parse_cpuset(pin["cpuset"], option + ".cpuset")
            index[pin["vcpu"]] = i
        out["cpu_pinning"] = pins
    if params.get("emulator_cpuset") is not None:
        text = params["emulator_cpuset"].strip()
        out["emulator_cpuset"] = parse_cpuset(text, "emulator_cpuset") if text else ()
    if params.get("numa") is not None:
        out["numa"] = _validate_numa(params["numa"])
    if params.get("hugepages") is not None:
        out["hugepages"] = _validate_hugepages(params["hugepages"])
    if params.get("hostdevs") is not None:
        out["hostdevs"] = _validate_hostdevs(params["hostdevs"])
    if params.get("filesystems") is not None:
        out["filesystems"] = _validate_filesystems(params["filesystems"])
    return out


def _validate_numa(numa):
    cells = []
    for i, cell in enumerate(numa.get("cells") or []):
        option = "numa.cells[%d]" % i
        memory = parse_memory_mib(cell["memory"], option + ".memory")
        nodeset = parse_cpuset(cell.get("nodeset"), option + ".nodeset")
        if cell.get("mode") and nodeset is None:
            raise InvalidArgument(option + ".mode", "applies only with nodeset")
        cells.append({"cpus": parse_cpuset(cell["cpus"], option + ".cpus"), "memory": memory,
                      "nodeset": nodeset, "mode": cell.get("mode") if nodeset else None})
    nodeset = parse_cpuset(numa.get("nodeset"), "numa.nodeset") if numa.get("nodeset") else None
    if numa.get("mode") and nodeset is None:
        raise InvalidArgument("numa.mode", "applies only with numa.nodeset")
    return {"cells": cells, "nodeset": nodeset, "mode": numa.get("mode") if nodeset else None}


def _validate_hugepages(value):
    text = value.strip()
    if text == "":
        return ""
    if text == "default":
        return 0
    size = parse_size(text, "hugepages", default_unit="KiB")
    if size % 1024 or size // 1024 <= 4:
        raise InvalidArgument("hugepages", "'%s' is not a huge page size such as 2MiB or 1GiB" % value)
    return size // 1024


def _validate_hostdevs(hostdevs):
    out = []
    seen = set()
    for i, dev in enumerate(hostdevs):
        option = "hostdevs[%d]" % i
        if dev.get("address") is not None:
            item = {"type": "pci", "address": parse_pci_address(dev["address"], option + ".address"), "managed": dev["managed"]}
        elif dev.get("vendor") is not None:
            item = {"type": "usb", "vendor": parse_usb_id(dev["vendor"], option + ".vendor"),
                    "product": parse_usb_id(dev["product"], option + ".product"), "managed": dev["managed"]}
        else:
            if not UUID_RE.match(dev["uuid"].strip()):
                raise InvalidArgument(option + ".uuid", "'%s' is not a UUID such as 8f4c9e6a-52d1-4a36-9c1e-2f6f7f0b1a11" % dev["uuid"])
            item = {"type": "mdev", "uuid": dev["uuid"].strip().lower(), "model": dev.get("model") or "vfio-pci"}
        if dev.get("model") and item["type"] != "mdev":
            raise InvalidArgument(option + ".model", "applies only to mediated devices (uuid)")
        key = hostdev_key(item)
        if key in seen:
            raise InvalidArgument(option, "the host device %s is listed twice" % key)
        seen.add(key)
        out.append(item)
    return out


def _validate_filesystems(filesystems):
    out = []
    tags = set()
    for i, fs in enumerate(filesystems):
        option = "filesystems[%d]" % i
        source = fs["source"]
        if not source.startswith("/"):
            raise InvalidArgument(option + ".source", "must be an absolute path on the host, got '%s'" % source)
        tag = fs["target"]
        if not tag or len(tag.encode("utf-8")) > MAX_TAG_BYTES or any(ord(c) < 33 for c in tag):
            raise InvalidArgument(option + ".target", "a mount tag must be 1 to %d bytes without spaces or control "
                                  "characters, got '%s'" % (MAX_TAG_BYTES, tag))
        if tag in tags:
            raise InvalidArgument(option + ".target", "the mount tag '%s' is used twice" % tag)
        tags.add(tag)
        out.append({"source": os.path.normpath(source), "target": tag})
    return out


# ---------------------------------------------------------------------------
# the host
# ---------------------------------------------------------------------------
def check_host(client, tuning):
    """Check the values of :func:`validate` against the host; raise before anything changes."""
    if not tuning:
        return
    if "cpu_pinning" in tuning or "emulator_cpuset" in tuning:
        count = tuning["host_cpus"] = client.host_cpu_count()
        for vcpu, cpus in sorted(tuning.get("cpu_pinning", {}).items()):
            _check_cpus("cpu_pinning[%d].cpuset" % tuning["cpu_pinning_index"][vcpu], cpus, count)
        if tuning.get("emulator_cpuset"):
            _check_cpus("emulator_cpuset", tuning["emulator_cpuset"], count)
    if tuning.get("numa") or tuning.get("hugepages"):
        caps = parse_xml(client.capabilities_xml(), "capabilities")
        if tuning.get("numa"):
            _check_nodes(caps, tuning["numa"])
        if tuning.get("hugepages"):
            sizes = sorted(set(int(p.get("size")) for p in caps.findall("./host/topology/cells/cell/pages")
                               if (p.get("size") or "").isdigit() and int(p.get("size")) > 4))
            if tuning["hugepages"] not in sizes:
                raise InvalidArgument("hugepages", "the host has no %d KiB huge pages; it offers %s"
                                      % (tuning["hugepages"], ", ".join("%d KiB" % s for s in sizes) or "none"))
    for i, dev in enumerate(tuning.get("hostdevs") or []):
        if not _host_has_device(client, dev):
            raise InvalidArgument("hostdevs[%d]" % i, "the host has no device %s (looked up through libvirt's host device list "
                                  "on uri '%s'); virsh nodedev-list lists its devices" % (hostdev_key(dev), client.uri))
    if is_local_uri(client.uri):
        for i, fs in enumerate(tuning.get("filesystems") or []):
            if not os.path.isdir(fs["source"]):
                raise InvalidArgument("filesystems[%d].source" % i, "'%s' is not a directory on the host" % fs["source"])


def _check_cpus(option, cpus, count):
    missing = [cpu for cpu in cpus if cpu >= count]
    if missing:
        raise InvalidArgument(option, "host CPU %s does not exist: the host has %d CPUs (%s)"
                              % (format_cpuset(missing), count, format_cpuset(range(count))))


def _check_nodes(caps, numa):
    nodes = set(int(c.get("id")) for c in caps.findall("./host/topology/cells/cell") if (c.get("id") or "").isdigit())
    nodes = nodes or {0}
    checks = [("numa.nodeset", numa.get("nodeset"))]
    checks += [("numa.cells[%d].nodeset" % i, c.get("nodeset")) for i, c in enumerate(numa["cells"])]
    for option, nodeset in checks:
        missing = [n for n in nodeset or () if n not in nodes]
        if missing:
            raise InvalidArgument(option, "host NUMA node %s does not exist: the host has the nodes %s"
                                  % (format_cpuset(missing), format_cpuset(sorted(nodes))))


def _host_has_device(client, dev):
    if dev["type"] == "pci":
        return client.node_device_xml("pci_" + dev["address"].replace(":", "_").replace(".", "_")) is not None
    if dev["type"] == "usb":
        for xml in client.node_device_xmls("VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV"):
            cap = parse_xml(xml, "host device").find("./capability[@type='usb_device']")
            if cap is None:
                continue
            ids = [_id(cap.find(tag)) for tag in ("vendor", "product")]
            if ids == [dev["vendor"], dev["product"]]:
                return True
        return False
    for xml in client.node_device_xmls("VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV"):
        node = parse_xml(xml, "host device")
        uuid = (node.findtext("./capability[@type='mdev']/uuid") or "").lower()
        if uuid == dev["uuid"] or dev["uuid"].replace("-", "_") in (node.findtext("./name") or ""):
            return True
    return False


def _id(node):
    try:
        return "0x%04x" % int(node.get("id"), 16)
    except (AttributeError, TypeError, ValueError):
        return None


def apply_to_spec(spec, tuning):
    """Copy the validated values into ``spec``."""
    for key in TUNING_OPTIONS + ("host_cpus",):
        if key in tuning:
            setattr(spec, key, tuning[key])
