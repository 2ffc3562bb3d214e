# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kvmops.virt benchmark harness (run it through bench/run.sh).

Every workload runs its variants side by side in one run, repetition after
repetition (the order rotates each repetition), against the live
qemu:///system daemon. Each measured figure is kept per repetition; the
table shows the median and the spread (min-max), and the targets of issue 8
are evaluated from the medians. Results go to bench/results/kbench-*.json.

Every libvirt object gets the per-run prefix kbench-<pid>- and is removed in
a finally block, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import jinja2
import libvirt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
PLAYBOOKS = os.path.join(BENCH, "playbooks")
TEMPLATES = os.path.join(PLAYBOOKS, "templates")
URI = "qemu:///system"
MIB = 1024 * 1024
GIB = 1024 * MIB

# Targets of issue 8.
T_DEFINE_FACTOR = 1.2      # kvm_guest per guest <= 1.2 x (per-task floor + raw defineXML)
T_RERUN_FACTOR = 1.1       # idempotent re-run per guest <= 1.1 x per-task floor
T_MINIMAL_FACTOR = 1.1     # kvm_guest define and re-run <= 1.1 x the minimal libvirt-python module (issue 21)
T_ROLE_SPEEDUP = 2.0       # kvm_guests role >= 2x faster than the serial community.libvirt playbook
T_RSS_MIB = 80.0           # module peak RSS
T_RSS_FLAT_MIB = 4.0       # import peak RSS at the large size minus at the small size

WRAPPER = '''#!{python}
"""Runs the real interpreter as a child and records the child's peak RSS (ru_maxrss, KiB)."""
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv({python!r}, [{python!r}] + sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
module = next((os.path.basename(a) for a in sys.argv[1:] if "AnsiballZ_" in a), "?")
with open({log!r}, "a") as fh:
    fh.write(json.dumps({{"module": module.replace("AnsiballZ_", "").replace(".py", ""),
                         "maxrss_kib": usage.ru_maxrss}}) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
'''


class BenchError(Exception):
    pass


def _terminate(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def summary(values):
    """Median and spread of a list of numbers."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals), "values": values}


def fmt_s(seconds):
    if seconds is None:
        return "-"
    if seconds < 1:
        return "%.1f ms" % (seconds * 1000)
    return "%.2f s" % seconds


class Bench:
    def __init__(self, args):
        self.args = args
        self.pid = os.getpid()
        self.prefix = "kbench-%d-" % self.pid
        self.stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.results_dir = os.path.join(BENCH, "results")
        self.log_dir = os.path.join(self.results_dir, "logs-%s" % self.stamp)
        os.makedirs(self.log_dir, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=self.prefix)
        self.data_dir = None
        self.python = sys.executable
        self.ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        self.runs = 0
        # kvmops.virt from this checkout; KBENCH_COLLECTIONS_PATH measures another copy (e.g. a git worktree).
        self.collections_path = os.environ.get("KBENCH_COLLECTIONS_PATH") or os.path.join(REPO, ".cache", "collections")
        self.conn = None
        self.pool = self.prefix + "pool"
        self.pool_dir = "/var/lib/libvirt/images/" + self.pool
        self.boot_dir = "/var/lib/libvirt/boot/" + self.prefix.rstrip("-")
        self.log_guest_dir = "/var/log/libvirt/qemu"
        self.network = self.prefix + "net"
        self.bridge = ("kb%d" % self.pid)[:15]
        self.subnet = None
        # KBENCH_BEFORE_COLLECTIONS_PATH: another copy of kvmops.virt (e.g. a git worktree of an
        # older commit under .../ansible_collections/kvmops/virt), measured as variant kvm_guest_before.
        self.before_collections_path = os.environ.get("KBENCH_BEFORE_COLLECTIONS_PATH")
        # Commits before the module_utils redesign kept a bytecode cache; give it this run's own directory.
        self.before_bytecode_cache = os.path.join(self.tmp, "before-bytecode")
        self.rss_log = os.path.join(self.tmp, "rss.jsonl")
        self.wrapper = os.path.join(self.tmp, "python-rss")
        with open(self.wrapper, "w", encoding="utf-8") as fh:
            fh.write(WRAPPER.format(python=self.python, log=self.rss_log))
        os.chmod(self.wrapper, 0o755)
        self.jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined)
        self.started = None
        self.figures = {}   # key -> list of values per repetition
        self.notes = []
        self.rss = {}       # module -> list of KiB

    # -- measurement helpers --------------------------------------------------
    def pick(self, variants):
        """The variants of a workload that --variants selects (all by default)."""
        chosen = [v for v in variants if not self.args.variants or v in self.args.variants]
        return chosen or variants

    def record(self, key, value):
        self.figures.setdefault(key, []).append(value)

    def playbook(self, name, extra, rss=False, env_extra=None):
        """Run one playbook; return the timer callback's data plus the process wall time."""
        self.runs += 1
        vars_file = os.path.join(self.tmp, "vars-%03d.json" % self.runs)
        timing = os.path.join(self.tmp, "timing-%03d.json" % self.runs)
        with open(vars_file, "w", encoding="utf-8") as fh:
            json.dump(extra, fh)
        # The module processes inherit this environment (local connection). Give
        # them what a managed node reached over SSH has: no PYTHONDONTWRITEBYTECODE
        # from a developer's shell.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            ANSIBLE_CONFIG=os.path.join(BENCH, "ansible.cfg"),
            ANSIBLE_CALLBACK_PLUGINS=os.path.join(BENCH, "callback_plugins"),
            ANSIBLE_COLLECTIONS_PATH=self.collections_path,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            KBENCH_TIMING_FILE=timing,
        )
        env.update(env_extra or {})
        interpreter = self.wrapper if rss else self.python
        cmd = [self.ansible_playbook, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + interpreter,
               "-e", "@" + vars_file, os.path.join(PLAYBOOKS, name)]
        log = os.path.join(self.log_dir, "%03d-%s.log" % (self.runs, name.replace(".yml", "")))
        start = time.monotonic()
        with open(log, "w", encoding="utf-8") as out:
            proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise BenchError("%s failed (exit %d); its output: %s" % (name, proc.returncode, log))
        with open(timing, encoding="utf-8") as fh:
            data = json.load(fh)
        data["wall"] = wall
        return data

    def read_rss(self):
        """Peak RSS entries recorded by the interpreter wrapper since the last call."""
        if not os.path.exists(self.rss_log):
            return []
        with open(self.rss_log, encoding="utf-8") as fh:
            entries = [json.loads(line) for line in fh if line.strip()]
        os.unlink(self.rss_log)
        for e in entries:
            self.rss.setdefault(e["module"], []).append(e["maxrss_kib"])
        return entries

    def log(self, msg):
        print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)

    # -- libvirt objects of the run -------------------------------------------
    def connect(self):
        if self.conn is None:
            self.conn = libvirt.open(URI)
        return self.conn

    def pick_subnet(self):
        used = set()
        for net in self.connect().listAllNetworks(0):
            xml = net.XMLDesc(0)
            used.update(part.split(".")[2] for part in xml.split("'") if part.startswith("10.253."))
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
        for third in range(10, 250):
            if str(third) not in used and ("10.253.%d." % third) not in routes:
                return "10.253.%d" % third
        raise BenchError("no free 10.253.X.0/24 subnet for the bench network")

    def setup_objects(self):
        conn = self.connect()
        os.makedirs(self.pool_dir, exist_ok=True)
        pool = conn.storagePoolDefineXML(
            "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (self.pool, self.pool_dir), 0)
        pool.create(0)
        if self.args.only & {2}:
            self.subnet = self.pick_subnet()
            net = conn.networkDefineXML(
                "<network><name>%s</name><bridge name='%s'/><ip address='%s.1' netmask='255.255.255.0'>"
                "<dhcp><range start='%s.100' end='%s.199'/></dhcp></ip></network>"
                % (self.network, self.bridge, self.subnet, self.subnet, self.subnet))
            net.create()
            os.makedirs(self.boot_dir, exist_ok=True)
            for name in ("vmlinuz", "initrd.img"):
                shutil.copyfile(os.path.join(self.args.image_dir, name), os.path.join(self.boot_dir, name))
                os.chmod(os.path.join(self.boot_dir, name), 0o644)

    def remove_guests(self):
        conn = self.connect()
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(self.prefix):
                continue
            if dom.isActive():
                dom.destroy()
            flags = getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0) | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", 0)
            dom.undefineFlags(flags)

    def remove_volumes(self, keep=()):
        try:
            pool = self.connect().storagePoolLookupByName(self.pool)
        except libvirt.libvirtError:
            return
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if vol.name() not in keep:
                vol.delete(0)

    def cleanup(self):
        errors = []
        steps = [
            self.remove_guests,
            self.remove_volumes,
            self._remove_pool,
            self._remove_network,
            lambda: shutil.rmtree(self.boot_dir, ignore_errors=True),
            lambda: shutil.rmtree(self.tmp, ignore_errors=True),
            lambda: self.data_dir and shutil.rmtree(self.data_dir, ignore_errors=True),
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(str(exc))
        for name in os.listdir(self.log_guest_dir) if os.path.isdir(self.log_guest_dir) else []:
            if name.startswith(self.prefix):
                os.unlink(os.path.join(self.log_guest_dir, name))
        if errors:
            print("cleanup problems: %s" % "; ".join(errors), file=sys.stderr)

    def _remove_pool(self):
        try:
            pool = self.connect().storagePoolLookupByName(self.pool)
        except libvirt.libvirtError:
            pool = None
        if pool is not None:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        shutil.rmtree(self.pool_dir, ignore_errors=True)

    def _remove_network(self):
        try:
            net = self.connect().networkLookupByName(self.network)
        except libvirt.libvirtError:
            return
        if net.isActive():
            net.destroy()
        net.undefine()

    # -- workload 1: define N guests, then re-run -----------------------------
    def w1(self):
        n = self.args.guests
        reps = self.args.reps
        memory_mib = 64
        names = ["%sw1-%03d" % (self.prefix, i) for i in range(n)]
        common = {"bench_guests": names, "bench_memory": "%dMiB" % memory_mib, "bench_memory_mib": memory_mib}
        role_vars = {
            "kvm_guests": [{"name": g} for g in names],
            "kvm_guests_defaults": {"state": "present", "virt_type": "qemu", "memory": "%dMiB" % memory_mib, "vcpus": 1},
        }
        template = self.jinja.get_template("w1_guest.xml.j2")
        variants = self.pick(["floor", "raw", "minimal", "kvm_guest", "kvm_guest_before", "role", "community"])
        if not self.before_collections_path:
            variants = [v for v in variants if v != "kvm_guest_before"]
        self.log("workload 1: define %d guests, then re-run; %d repetitions of %s" % (n, reps, ", ".join(variants)))
        for rep in range(reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for variant in order:
                if variant == "floor":
                    data = self.playbook("w1_floor.yml", common)
                    self.record("w1.floor.define", data["play"])
                    continue
                if variant == "raw":
                    xmls = [template.render(bench_guest=g, bench_memory_mib=memory_mib) for g in names]
                    start = time.monotonic()
                    conn = libvirt.open(URI)
                    for xml in xmls:
                        conn.defineXML(xml)
                    conn.close()
                    self.record("w1.raw.define", time.monotonic() - start)
                    start = time.monotonic()
                    conn = libvirt.open(URI)
                    for g in names:
                        conn.lookupByName(g).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                    conn.close()
                    self.record("w1.raw.rerun", time.monotonic() - start)
                else:
                    book = {"minimal": "w1_minimal.yml", "kvm_guest": "w1_kvm_guest.yml", "kvm_guest_before": "w1_kvm_guest.yml",
                            "role": "w1_role.yml", "community": "w1_community.yml"}[variant]
                    extra = dict(common, **role_vars) if variant == "role" else common
                    # kvm_guest from the other copy of the collection, as it ran there.
                    env_extra = None
                    if variant == "kvm_guest_before":
                        env_extra = {"ANSIBLE_COLLECTIONS_PATH": self.before_collections_path,
                                     "KVMOPS_VIRT_BYTECODE_CACHE": self.before_bytecode_cache}
                    first = self.playbook(book, extra, env_extra=env_extra)
                    second = self.playbook(book, extra, env_extra=env_extra)
                    self.record("w1.%s.define" % variant, first["play"])
                    self.record("w1.%s.rerun" % variant, second["play"])
                    self.record("w1.%s.define_changed" % variant, first["changed"])
                    self.record("w1.%s.rerun_changed" % variant, second["changed"])
                    defined = [d.name() for d in self.connect().listAllDomains(0) if d.name() in names]
                    if len(defined) != n:
                        raise BenchError("%s defined %d of %d guests" % (variant, len(defined), n))
                self.remove_guests()
            self.log("  repetition %d/%d done" % (rep + 1, reps))

    # -- workload 2: deploy booting guests up to their leases -----------------
    def w2(self):
        n = self.args.boot_guests
        reps = self.args.boot_reps
        base = os.path.join(self.args.image_dir, "base.qcow2")
        names = ["%sw2-%d" % (self.prefix, i) for i in range(n)]
        common = {
            "bench_guests": names, "bench_pool": self.pool, "bench_pool_dir": self.pool_dir, "bench_network": self.network,
            "bench_boot_dir": self.boot_dir, "bench_log_dir": self.log_guest_dir, "bench_base_image": base,
            "bench_base_name": "base.qcow2", "bench_memory_mib": 256, "bench_disk_mib": 96, "bench_wait_timeout": 600,
        }
        role_vars = {
            "kvm_guests_pool": self.pool,
            "kvm_guests_wait_timeout": 600,
            "kvm_guests": [{"name": g, "console_log": "%s/%s-console.log" % (self.log_guest_dir, g)} for g in names],
            "kvm_guests_defaults": {
                "virt_type": "qemu", "memory": "256MiB", "vcpus": 1, "base_image": base, "disk_size": "96MiB",
                "boot": {"kernel": self.boot_dir + "/vmlinuz", "initrd": self.boot_dir + "/initrd.img", "cmdline": "console=ttyS0 quiet"},
                "interfaces": [{"network": self.network}],
            },
        }
        variants = self.pick(["role", "community"])
        self.log("workload 2: deploy %d booting guests up to their leases; %d repetitions of %s" % (n, reps, ", ".join(variants)))
        for rep in range(reps):
            order = variants if rep % 2 == 0 else variants[::-1]
            for variant in order:
                if variant == "role":
                    data = self.playbook("w2_role.yml", dict(common, **role_vars))
                else:
                    data = self.playbook("w2_community.yml", common)
                self.record("w2.%s.deploy" % variant, data["play"])
                self.check_leases(names, variant)
                self.remove_guests()
                self.remove_volumes()
                self.clear_leases()
            self.log("  repetition %d/%d done" % (rep + 1, reps))

    def check_leases(self, names, variant):
        net = self.connect().networkLookupByName(self.network)
        macs = set()
        for g in names:
            xml = self.connect().lookupByName(g).XMLDesc(0)
            macs.update(part for part in xml.split("'") if part.count(":") == 5 and part.startswith("52:54:00"))
        leased = {lease["mac"] for lease in net.DHCPLeases(None, 0)}
        missing = sorted(macs - leased)
        if missing or len(macs) < len(names):
            raise BenchError("%s: guests without a lease (MACs %s)" % (variant, ", ".join(missing) or "unknown"))

    def clear_leases(self):
        """Restart the bench network so the next repetition starts from an empty lease table."""
        net = self.connect().networkLookupByName(self.network)
        net.destroy()
        net.create()

    # -- workload 3: host capabilities ----------------------------------------
    def w3(self):
        reps = self.args.reps
        self.log("workload 3: host_capabilities vs setup (gather_subset min); %d repetitions" % reps)
        for rep in range(reps):
            order = self.pick(["caps", "setup", "floor"])
            for variant in order[rep % len(order):] + order[:rep % len(order)]:
                data = self.playbook({"caps": "w3_caps.yml", "setup": "w3_setup.yml", "floor": "w1_floor.yml"}[variant],
                                     {"bench_guests": ["one"]})
                self.record("w3.%s.gather" % variant, data["play"])
        self.playbook("w3_caps.yml", {}, rss=True)
        self.read_rss()

    # -- workload 4: storage ----------------------------------------------------
    def w4(self):
        reps = self.args.reps
        pool = self.connect().storagePoolLookupByName(self.pool)
        base = self.prefix + "base10g.qcow2"
        base_bytes = self.args.base_gib * GIB
        pool.createXML("<volume><name>%s</name><capacity>%d</capacity><allocation>0</allocation>"
                       "<target><format type='qcow2'/></target></volume>" % (base, base_bytes), 0)
        base_path = os.path.join(self.pool_dir, base)
        self.log("workload 4: overlay on a %d GiB base (%d KiB on disk); %d repetitions"
                 % (self.args.base_gib, os.stat(base_path).st_blocks // 2, reps))
        overlay = self.prefix + "overlay.qcow2"
        for rep in range(reps):
            order = self.pick(["kvmops", "raw", "floor"])
            for variant in order[rep % len(order):] + order[:rep % len(order)]:
                if variant == "floor":
                    data = self.playbook("w1_floor.yml", {"bench_guests": ["one"]})
                    self.record("w4.floor.overlay", data["play"])
                elif variant == "kvmops":
                    data = self.playbook("w4_overlay.yml", {"bench_volume": overlay, "bench_pool": self.pool, "bench_base_volume": base})
                    self.record("w4.kvmops.overlay", data["play"])
                else:
                    start = time.monotonic()
                    conn = libvirt.open(URI)
                    conn.storagePoolLookupByName(self.pool).createXML(
                        "<volume><name>%s</name><capacity>%d</capacity><target><format type='qcow2'/></target>"
                        "<backingStore><path>%s</path><format type='qcow2'/></backingStore></volume>"
                        % (overlay, base_bytes, base_path), 0)
                    conn.close()
                    self.record("w4.raw.overlay", time.monotonic() - start)
                self.remove_volumes(keep=(base,))
        self.remove_volumes()

        sizes = [self.args.import_small_mib, self.args.import_large_mib]
        self.data_dir = tempfile.mkdtemp(prefix=self.prefix, dir="/var/tmp")
        free = shutil.disk_usage(self.data_dir).free
        need = (sum(sizes) + max(sizes)) * MIB * 1.2
        if free < need:
            raise BenchError("not enough free disk in /var/tmp for the import files: %d MiB free, %d MiB needed"
                             % (free // MIB, need // MIB))
        self.log("workload 4: import of %s MiB files, peak RSS of the module process; %d repetitions"
                 % (" and ".join(str(s) for s in sizes), reps))
        block = os.urandom(MIB)
        files = {}
        for size in sizes:
            path = os.path.join(self.data_dir, "import-%dmib.raw" % size)
            with open(path, "wb") as fh:
                for i in range(size):
                    fh.write(i.to_bytes(8, "little") + block[8:])
            files[size] = path
        volume = self.prefix + "import.raw"
        for rep in range(reps):
            for size in (sizes if rep % 2 == 0 else sizes[::-1]):
                data = self.playbook("w4_import.yml", {"bench_volume": volume, "bench_pool": self.pool, "bench_source": files[size]}, rss=True)
                entries = [e for e in self.read_rss() if e["module"] == "storage_volume"]
                self.record("w4.import.%dmib" % size, data["play"])
                self.record("w4.import_rss_kib.%dmib" % size, max(e["maxrss_kib"] for e in entries) if entries else None)
                vol = self.connect().storagePoolLookupByName(self.pool).storageVolLookupByName(volume)
                if vol.info()[1] != size * MIB:
                    raise BenchError("the imported volume holds %d bytes, not %d" % (vol.info()[1], size * MIB))
                self.remove_volumes()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir = None

    def rss_probe_guest(self):
        """Peak RSS of kvm_guest and of the trivial module, for a few guests (not timed)."""
        names = ["%srss-%d" % (self.prefix, i) for i in range(3)]
        common = {"bench_guests": names, "bench_memory": "64MiB", "bench_memory_mib": 64}
        self.playbook("w1_kvm_guest.yml", common, rss=True)
        self.playbook("w1_kvm_guest.yml", common, rss=True)
        self.playbook("w1_floor.yml", common, rss=True)
        self.read_rss()
        self.remove_guests()

    # -- results ----------------------------------------------------------------
    def evaluate(self):
        n = self.args.guests
        fig = {k: summary(v) for k, v in self.figures.items()}
        med = {k: (v["median"] if v else None) for k, v in fig.items()}
        targets = []

        def target(name, value, limit, unit, passed, detail):
            gap = None if passed or value is None or limit is None else value - limit
            targets.append({"target": name, "value": value, "limit": limit, "unit": unit,
                            "passed": passed, "gap": gap, "detail": detail})

        derived = {}
        if {"w1.floor.define", "w1.raw.define", "w1.kvm_guest.define"} <= med.keys():
            floor_task = med["w1.floor.define"] / n
            raw_guest = med["w1.raw.define"] / n
            per_guest = med["w1.kvm_guest.define"] / n
            rerun_guest = med["w1.kvm_guest.rerun"] / n
            derived.update(floor_per_task=floor_task, raw_define_per_guest=raw_guest, raw_rerun_per_guest=med["w1.raw.rerun"] / n,
                           kvm_guest_define_per_guest=per_guest, kvm_guest_rerun_per_guest=rerun_guest)
            limit = T_DEFINE_FACTOR * (floor_task + raw_guest)
            target("kvm_guest per-guest define <= 1.2 x (per-task floor + raw defineXML)", per_guest, limit, "s",
                   per_guest <= limit, "%.2fx of (floor + raw)" % (per_guest / (floor_task + raw_guest)))
            limit = T_RERUN_FACTOR * floor_task
            target("kvm_guest idempotent re-run per guest <= 1.1 x per-task floor", rerun_guest, limit, "s",
                   rerun_guest <= limit, "%.2fx of the floor" % (rerun_guest / floor_task))
            if "w1.community.define" in med:
                cd, cr = med["w1.community.define"], med["w1.community.rerun"]
                kd, kr = med["w1.kvm_guest.define"], med["w1.kvm_guest.rerun"]
                target("kvm_guest define at least as fast as community.libvirt virt define", kd, cd, "s", kd <= cd,
                       "%.2fx of community.libvirt" % (kd / cd))
                target("kvm_guest re-run at least as fast as community.libvirt virt define", kr, cr, "s", kr <= cr,
                       "%.2fx of community.libvirt" % (kr / cr))
            if "w1.minimal.define" in med:
                derived.update(minimal_define_per_guest=med["w1.minimal.define"] / n,
                               minimal_rerun_per_guest=med["w1.minimal.rerun"] / n)
                md, mr = med["w1.minimal.define"], med["w1.minimal.rerun"]
                kd, kr = med["w1.kvm_guest.define"], med["w1.kvm_guest.rerun"]
                target("kvm_guest define <= 1.1 x the minimal libvirt module", kd, T_MINIMAL_FACTOR * md, "s",
                       kd <= T_MINIMAL_FACTOR * md, "%.2fx of the minimal module" % (kd / md))
                target("kvm_guest re-run <= 1.1 x the minimal libvirt module", kr, T_MINIMAL_FACTOR * mr, "s",
                       kr <= T_MINIMAL_FACTOR * mr, "%.2fx of the minimal module" % (kr / mr))
            if "w1.kvm_guest_before.define" in med:
                derived.update(before_define_per_guest=med["w1.kvm_guest_before.define"] / n,
                               before_rerun_per_guest=med["w1.kvm_guest_before.rerun"] / n)
            if "w1.role.define" in med:
                physical = floor_task + n * raw_guest
                derived.update(role_define_per_guest=med["w1.role.define"] / n, role_rerun_per_guest=med["w1.role.rerun"] / n,
                               physical_floor=physical, role_vs_physical_floor=med["w1.role.define"] / physical)
        if {"w2.role.deploy", "w2.community.deploy"} <= med.keys():
            role, comm = med["w2.role.deploy"], med["w2.community.deploy"]
            target("kvm_guests role >= 2x faster than the serial community.libvirt playbook (workload 2)", comm / role,
                   T_ROLE_SPEEDUP, "x", comm / role >= T_ROLE_SPEEDUP, "role %s, community.libvirt %s" % (fmt_s(role), fmt_s(comm)))
        peaks = {m: max(v) / 1024.0 for m, v in self.rss.items() if m != "ping"}
        if peaks:
            worst = max(peaks, key=peaks.get)
            target("module peak RSS <= 80 MiB", peaks[worst], T_RSS_MIB, "MiB", peaks[worst] <= T_RSS_MIB,
                   ", ".join("%s %.1f MiB" % (m, v) for m, v in sorted(peaks.items())))
        small = med.get("w4.import_rss_kib.%dmib" % self.args.import_small_mib)
        large = med.get("w4.import_rss_kib.%dmib" % self.args.import_large_mib)
        if small and large:
            growth = (large - small) / 1024.0
            target("import peak RSS flat in file size (%d MiB vs %d MiB, growth <= %.0f MiB)"
                   % (self.args.import_large_mib, self.args.import_small_mib, T_RSS_FLAT_MIB),
                   growth, T_RSS_FLAT_MIB, "MiB", growth <= T_RSS_FLAT_MIB,
                   "%.1f MiB at %d MiB, %.1f MiB at %d MiB"
                   % (small / 1024.0, self.args.import_small_mib, large / 1024.0, self.args.import_large_mib))
        return fig, derived, targets

    def report(self, error=None):
        finished = datetime.datetime.now(datetime.timezone.utc).isoformat()
        fig, derived, targets = self.evaluate()
        n, nb = self.args.guests, self.args.boot_guests
        rows = []
        labels = [
            ("w1.floor.define", "1 define", "per-task floor: ansible.builtin.ping x N", n),
            ("w1.raw.define", "1 define", "raw libvirt-python defineXML x N", n),
            ("w1.minimal.define", "1 define", "minimal libvirt-python module (bench only)", n),
            ("w1.kvm_guest.define", "1 define", "kvmops.virt.kvm_guest loop", n),
            ("w1.kvm_guest_before.define", "1 define", "kvm_guest loop, the before copy", n),
            ("w1.role.define", "1 define", "kvmops.virt.kvm_guests role", n),
            ("w1.community.define", "1 define", "community.libvirt virt define loop", n),
            ("w1.raw.rerun", "1 re-run", "raw lookupByName + XMLDesc x N", n),
            ("w1.minimal.rerun", "1 re-run", "minimal libvirt-python module (bench only)", n),
            ("w1.kvm_guest.rerun", "1 re-run", "kvmops.virt.kvm_guest loop", n),
            ("w1.kvm_guest_before.rerun", "1 re-run", "kvm_guest loop, the before copy", n),
            ("w1.role.rerun", "1 re-run", "kvmops.virt.kvm_guests role", n),
            ("w1.community.rerun", "1 re-run", "community.libvirt virt define loop", n),
            ("w2.role.deploy", "2 deploy", "kvmops.virt.kvm_guests role", nb),
            ("w2.community.deploy", "2 deploy", "community.libvirt, serial wait", nb),
            ("w3.caps.gather", "3 facts", "kvmops.virt.host_capabilities", None),
            ("w3.setup.gather", "3 facts", "ansible.builtin.setup (min)", None),
            ("w3.floor.gather", "3 facts", "one-task floor: ansible.builtin.ping", None),
            ("w4.kvmops.overlay", "4 overlay", "kvmops.virt.storage_volume", None),
            ("w4.raw.overlay", "4 overlay", "raw libvirt createXML", None),
            ("w4.floor.overlay", "4 overlay", "one-task floor: ansible.builtin.ping", None),
        ]
        for size in (self.args.import_small_mib, self.args.import_large_mib):
            labels.append(("w4.import.%dmib" % size, "4 import", "storage_volume source, %d MiB" % size, None))
        for key, workload, variant, per in labels:
            s = fig.get(key)
            if not s:
                continue
            changed = fig.get(key + "_changed")
            rows.append({
                "key": key, "workload": workload, "variant": variant, "median": s["median"], "min": s["min"], "max": s["max"],
                "reps": s["n"], "per_guest": s["median"] / per if per else None,
                "changed": changed["median"] if changed else None,
            })
        lines = ["", "kvmops.virt benchmark, %s (one machine's figures; medians of the repetitions, spread min-max)" % self.stamp]
        lines.append("%-10s %-42s %10s %22s %11s %4s %8s" % ("workload", "variant", "median", "spread (min-max)", "per guest", "reps", "changed"))
        for r in rows:
            lines.append("%-10s %-42s %10s %22s %11s %4d %8s" % (
                r["workload"], r["variant"], fmt_s(r["median"]), "%s - %s" % (fmt_s(r["min"]), fmt_s(r["max"])),
                fmt_s(r["per_guest"]) if r["per_guest"] is not None else "", r["reps"],
                "" if r["changed"] is None else "%d" % r["changed"]))
        if self.rss:
            lines.append("")
            lines.append("peak RSS of the module process (MiB): " + ", ".join(
                "%s %.1f" % (m, max(v) / 1024.0) for m, v in sorted(self.rss.items())))
            for size in (self.args.import_small_mib, self.args.import_large_mib):
                s = fig.get("w4.import_rss_kib.%dmib" % size)
                if s:
                    lines.append("  storage_volume import of %d MiB: median %.1f MiB (%.1f - %.1f)"
                                 % (size, s["median"] / 1024.0, s["min"] / 1024.0, s["max"] / 1024.0))
        if derived:
            lines.append("")
            lines.append("derived (from the medians):")
            for key in ("floor_per_task", "raw_define_per_guest", "raw_rerun_per_guest", "minimal_define_per_guest",
                        "minimal_rerun_per_guest", "kvm_guest_define_per_guest", "kvm_guest_rerun_per_guest",
                        "before_define_per_guest", "before_rerun_per_guest", "role_define_per_guest", "role_rerun_per_guest"):
                if key in derived:
                    lines.append("  %-28s %s" % (key, fmt_s(derived[key])))
            if "minimal_rerun_per_guest" in derived:
                floor_task = derived["floor_per_task"]
                lines.append("  minimal libvirt module vs the per-task floor (no pass mark): define %.2fx of (floor + raw), re-run %.2fx of the floor"
                             % (derived["minimal_define_per_guest"] / (floor_task + derived["raw_define_per_guest"]),
                                derived["minimal_rerun_per_guest"] / floor_task))
                lines.append("  kvm_guest over the minimal libvirt module, per guest: define %+.1f ms, re-run %+.1f ms"
                             % (1000 * (derived["kvm_guest_define_per_guest"] - derived["minimal_define_per_guest"]),
                                1000 * (derived["kvm_guest_rerun_per_guest"] - derived["minimal_rerun_per_guest"])))
            if "before_rerun_per_guest" in derived:
                lines.append("  kvm_guest here minus the before copy, per guest: define %+.1f ms, re-run %+.1f ms"
                             % (1000 * (derived["kvm_guest_define_per_guest"] - derived["before_define_per_guest"]),
                                1000 * (derived["kvm_guest_rerun_per_guest"] - derived["before_rerun_per_guest"])))
            if "physical_floor" in derived:
                lines.append("  role converge of %d guests vs the physical floor (one task + %d x raw defineXML = %s): %.1fx (no pass mark)"
                             % (n, n, fmt_s(derived["physical_floor"]), derived["role_vs_physical_floor"]))
        lines.append("")
        lines.append("targets:")
        for t in targets:
            if t["passed"]:
                verdict = "PASS"
            elif t["unit"] == "x":
                verdict = "MISS (gap: %.2fx short of %.1fx)" % (t["limit"] - t["value"], t["limit"])
            elif t["unit"] == "s":
                verdict = "MISS (gap: %s over %s)" % (fmt_s(t["gap"]), fmt_s(t["limit"]))
            else:
                verdict = "MISS (gap: %.1f %s over %.1f)" % (t["gap"], t["unit"], t["limit"])
            lines.append("  %-4s %s: %s" % ("ok" if t["passed"] else "--", t["target"], verdict))
            lines.append("       %s" % t["detail"])
        if error:
            lines.append("")
            lines.append("INCOMPLETE RUN: %s" % error)
        text = "\n".join(lines)
        print(text)
        result = {
            "schema": "kvmops.virt/bench/1",
            "stamp": self.stamp,
            "started": self.started,
            "finished": finished,
            "error": error,
            "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "libvirt": libvirt.getVersion(), "platform": platform.platform()},
            "versions": self.versions(),
            "settings": {"collections_path": self.collections_path, "variants": sorted(self.args.variants),
                         "reps": self.args.reps, "boot_reps": self.args.boot_reps, "guests": n, "boot_guests": nb,
                         "workloads": sorted(self.args.only), "quick": self.args.quick, "base_gib": self.args.base_gib,
                         "import_mib": [self.args.import_small_mib, self.args.import_large_mib]},
            "figures": fig,
            "rows": rows,
            "rss_kib": self.rss,
            "derived": derived,
            "targets": targets,
            "logs": self.log_dir,
        }
        path = os.path.join(self.results_dir, "kbench-%s.json" % self.stamp)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        print("\nresults: %s" % path)
        return path

    def versions(self):
        out = {}
        try:
            from importlib.metadata import version  # pylint: disable=import-outside-toplevel
            for pkg in ("ansible", "ansible-core", "libvirt-python", "lxml"):
                out[pkg] = version(pkg)
        except Exception:  # pylint: disable=broad-except
            pass
        manifest = os.path.join(os.path.dirname(libvirt.__file__), "ansible_collections", "community", "libvirt", "MANIFEST.json")
        if os.path.exists(manifest):
            with open(manifest, encoding="utf-8") as fh:
                out["community.libvirt"] = json.load(fh)["collection_info"]["version"]
        galaxy = os.path.join(REPO, "galaxy.yml")
        with open(galaxy, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("version:"):
                    out["kvmops.virt"] = line.split(":", 1)[1].strip()
        return out

    def run(self):
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.setup_objects()
        for w in sorted(self.args.only):
            getattr(self, "w%d" % w)()
        if self.args.only & {1, 4}:
            self.rss_probe_guest()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--reps", type=int, help="repetitions of workloads 1, 3 and 4 (default 3; --quick 1)")
    p.add_argument("--boot-reps", type=int, help="repetitions of workload 2 (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, 5 guests, 2 booting guests, 16/64 MiB imports")
    p.add_argument("--only", default="1,2,3,4", help="comma-separated workloads to run (default 1,2,3,4)")
    p.add_argument("--guests", type=int, help="N of workload 1 (default 50; --quick 5)")
    p.add_argument("--boot-guests", type=int, help="N of workload 2 (default 4; --quick 2)")
    p.add_argument("--variants", default="", help="comma-separated variant names to run, e.g. kvm_guest,floor,raw (default all)")
    p.add_argument("--base-gib", type=int, default=10, help="size of the overlay's base volume in GiB (default 10, thin)")
    p.add_argument("--import-mib", default=None, help="small,large import sizes in MiB (default 256,1024; --quick 16,64)")
    p.add_argument("--image-dir", default=os.environ.get("KVMOPS_TEST_IMAGE_DIR", os.path.join(REPO, ".cache", "test-image")))
    args = p.parse_args(argv)
    args.variants = {v.strip() for v in args.variants.split(",") if v.strip()}
    try:
        args.only = {int(w) for w in args.only.split(",") if w.strip()}
    except ValueError:
        p.error("--only takes workload numbers, e.g. 1,3")
    if not args.only or not args.only <= {1, 2, 3, 4}:
        p.error("--only takes workload numbers from 1 to 4")
    q = args.quick
    args.reps = args.reps or (1 if q else 3)
    args.boot_reps = args.boot_reps or (1 if q else 3)
    args.guests = args.guests or (5 if q else 50)
    args.boot_guests = args.boot_guests or (2 if q else 4)
    small, large = (args.import_mib or ("16,64" if q else "256,1024")).split(",")
    args.import_small_mib, args.import_large_mib = int(small), int(large)
    if min(args.reps, args.boot_reps, args.guests, args.boot_guests, args.import_small_mib) < 1 or args.import_large_mib <= args.import_small_mib:
        p.error("repetitions, guest counts and import sizes must be positive, and the second import size the larger")
    if 2 in args.only and not os.path.exists(os.path.join(args.image_dir, "base.qcow2")):
        p.error("workload 2 needs the test image in %s (tests/integration/image/build.sh)" % args.image_dir)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    # Lookups of objects that may be gone already are expected to fail; the bench reports its own errors.
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    bench = Bench(args)
    bench.log("kvmops.virt benchmark: object prefix %s, logs in %s" % (bench.prefix, bench.log_dir))
    error, rc = None, 0
    try:
        bench.run()
    except BenchError as exc:
        error, rc = "benchmark failed: %s" % exc, 1
    except KeyboardInterrupt:
        error, rc = "benchmark interrupted", 130
    finally:
        bench.cleanup()
    if error:
        print(error, file=sys.stderr)
    if bench.figures or rc == 0:
        bench.report(error)
    return rc


if __name__ == "__main__":
    sys.exit(main())
