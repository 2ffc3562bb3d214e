# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host with 500 guests (issue 16), on libvirt's test driver: a node document
(test:///<file>) with 500 defined guests, each with a disk volume and a MAC.

Times what grows with the number of guests: ``remove_storage`` (its guards
read every other guest's live and persistent definition and every pool) and
MAC generation for a new guest (it avoids every MAC of the host). The figures
are printed and written to tests/output/reliability/scale.json; nothing is
asserted about time, only that both succeed and stay correct.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from conftest import OUTPUT_DIR, ansible_module

GUESTS = 500
NS = "https://github.com/kvmops/kvmops.virt/guest/1"


def _node(path, n):
    vols = []
    doms = []
    for i in range(n):
        name = "scale%03d" % i
        vols.append("<volume type='file'><name>%s.qcow2</name><capacity unit='MiB'>16</capacity>"
                    "<target><path>/kvmops-scale/%s.qcow2</path><format type='qcow2'/></target></volume>" % (name, name))
        meta = ""
        if i == 0:  # the guest that is removed: its volume is recorded as created by the collection
            meta = ("<metadata><kvmops:guest xmlns:kvmops='%s'><kvmops:created-volumes><kvmops:volume pool='scale' "
                    "name='%s.qcow2' path='/kvmops-scale/%s.qcow2'/></kvmops:created-volumes></kvmops:guest></metadata>" % (NS, name, name))
        doms.append("<domain type='test'><name>%s</name>%s<memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>"
                    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/kvmops-scale/%s.qcow2'/>"
                    "<target dev='vda' bus='virtio'/></disk>"
                    "<interface type='network'><mac address='52:54:00:%02x:%02x:%02x'/><source network='scalenet'/></interface>"
                    "</devices></domain>" % (name, meta, name, (i >> 16) & 255, (i >> 8) & 255, i & 255))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("<node><network><name>scalenet</name><bridge name='virbr77'/>"
                     "<ip address='10.77.0.1' prefix='16'/></network>"
                     "<pool type='dir'><name>scale</name><target><path>/kvmops-scale</path></target>%s</pool>%s</node>"
                     % ("".join(vols), "".join(doms)))


def test_500_guests_remove_storage_and_mac_generation(report):
    tmp = tempfile.mkdtemp(prefix="kvmops-rel-scale-")
    node = os.path.join(tmp, "node.xml")
    _node(node, GUESTS)
    uri = "test://" + node
    figures = {"guests": GUESTS}
    try:
        start = time.monotonic()
        run = ansible_module("kvm_guest", {"uri": uri, "name": "scale-new", "state": "present", "memory": 64,
                                           "interfaces": [{"network": "scalenet"}] * 4}, label="scale-macs")
        figures["new_guest_4_macs_s"] = round(time.monotonic() - start, 2)
        assert run.rc == 0 and not run.has_traceback, run.log
        macs = [nic["mac"] for nic in run.result["guest"]["interfaces"]]
        assert len(set(macs)) == 4
        assert not set(macs) & {"52:54:00:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255) for i in range(GUESTS)}
        start = time.monotonic()
        run = ansible_module("kvm_guest", {"uri": uri, "name": "scale000", "state": "absent", "remove_storage": True},
                             label="scale-remove-storage")
        figures["remove_storage_s"] = round(time.monotonic() - start, 2)
        assert run.rc == 0 and not run.has_traceback, run.log
        assert "delete volume 'scale000.qcow2' from storage pool 'scale'" in run.result["actions"], run.result
        # baseline: one module run that reads nothing of the other guests
        start = time.monotonic()
        run = ansible_module("kvm_guest", {"uri": uri, "name": "scale-none", "state": "absent"}, label="scale-baseline")
        figures["baseline_run_s"] = round(time.monotonic() - start, 2)
        assert run.rc == 0, run.log
    finally:
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(OUTPUT_DIR, "scale.json"), "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
        print("scale: %s" % json.dumps(figures))
        os.remove(node)
        os.rmdir(tmp)
