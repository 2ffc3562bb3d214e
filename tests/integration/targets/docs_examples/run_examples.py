# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the YAML examples of the user guide (docs/*.md, README.md).

Every fenced ```yaml block is an example. The line right before the fence
(blank lines aside) may hold a marker comment that says how to run it:

    <!-- example: run [setup="fixture ..."] [rename="name ..."] [sub="old => new"] [defaults="test-guest"] -->
    <!-- example: inventory [sub="old => new"] -->
    <!-- example: syntax reason="why it cannot run here" -->
    <!-- example: not-run reason="why it cannot run here" -->

A block without a marker must be a playbook or a task list, and is run.
"run" examples run for real against qemu:///system, each followed by the same
plays in check mode (which must not fail either); the examples of one page
run in page order, in one ansible-playbook call, and everything the page
created is removed afterwards. "inventory" examples are inventory plugin
files, read with ansible-inventory. "syntax" examples only get
ansible-playbook --syntax-check. The run prints how many examples ran and
every not-run reason, and fails on a block it could not classify.

What the runner changes in an example, always printed:
  * the variable ``prefix`` is the run's unique name prefix, and ``rename``
    puts it in front of the listed names (``lab`` -> ``<prefix>-lab``);
  * ``sub`` replaces text (a remote URI by a local one); ``{prefix}``,
    ``{tmp}`` and fixture values such as ``{loop_fs}`` are filled in;
  * every 192.168.x.0/24 and 10.10.x.0/24 subnet of a page is mapped to a
    free 192.168.x.0/24 subnet of this host;
  * ``defaults="test-guest"`` gives kvm_guest tasks ``virt_type: qemu`` and
    direct kernel boot of the test image (module_defaults), since the test
    machines have no usable KVM and no cloud image;
  * the inventory has localhost (local connection) in the group hypervisors.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

URI = "qemu:///system"
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*example:\s*([\w-]+)(.*?)-->\s*$")
ATTR = re.compile(r'([\w-]+)="([^"]*)"')
SUBNET = re.compile(r"\b(192\.168\.\d{1,3}|10\.10\.\d{1,3})\.(?=\d)")
KINDS = ("run", "inventory", "syntax", "not-run")


class Example(object):
    def __init__(self, page, line, text, kind, attrs):
        self.page = page
        self.line = line
        self.text = text
        self.kind = kind
        self.attrs = attrs  # name -> list of values

    @property
    def where(self):
        return "%s:%d" % (self.page, self.line)

    def attr(self, name, default=""):
        values = self.attrs.get(name)
        return values[-1] if values else default


def sh(cmd, check=True, quiet=False):
    """Run a shell command; returns its stdout."""
    proc = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (cmd, proc.returncode, proc.stdout, proc.stderr))
    if not quiet and proc.returncode != 0:
        print("  (cleanup) %s: %s" % (cmd, (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def virsh(args, check=True, quiet=False):
    return sh("virsh -q -c %s %s" % (URI, args), check=check, quiet=quiet)


# -- reading the pages -------------------------------------------------------

def parse_page(root, page):
    lines = open(os.path.join(root, page), encoding="utf-8").read().split("\n")
    examples, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            i += 1
        if lang == "yaml":
            j = start - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            kind, attrs = None, {}
            mm = MARKER.match(lines[j].strip()) if j >= 0 else None
            if mm:
                kind = mm.group(1)
                for key, value in ATTR.findall(mm.group(2)):
                    attrs.setdefault(key, []).append(value)
            examples.append(Example(page, start + 1, "\n".join(lines[start + 1:i]), kind, attrs))
        i += 1
    return examples


def shape(text):
    """'playbook', 'tasks' or None."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, list) or not data or not all(isinstance(x, dict) for x in data):
        return None
    if all(("hosts" in x and isinstance(x.get("tasks", []), list)) or "ansible.builtin.import_playbook" in x
           or "import_playbook" in x for x in data):
        return "playbook"
    if all("hosts" not in x and any("." in k or k in ("block", "include_tasks") for k in x) for x in data):
        return "tasks"
    return None


# -- the environment of one run ------------------------------------------------

class Run(object):
    def __init__(self, root, image_dir):
        self.root = root
        self.image_dir = image_dir
        self.prefix = "kdoc" + "%04x" % random.randrange(0x10000)
        self.tmp = tempfile.mkdtemp(prefix=self.prefix + "-")
        self.tokens = {"prefix": self.prefix, "tmp": self.tmp}
        self.extra_vars = {"prefix": self.prefix}
        self.module_defaults = {}
        self.loops = []
        # Subnets handed out but perhaps not in use yet (a page's networks exist
        # only once its playbook runs): never hand them out twice.
        self.reserved_subnets = set()
        self.inventory = os.path.join(self.tmp, "hosts.ini")
        with open(self.inventory, "w") as f:
            f.write("[hypervisors]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)

    # fixtures: what an example needs besides itself, named in its marker
    def fixture(self, name):
        p = self.prefix
        if name == "host-links":
            sh("ip link add %s-hbr type bridge && ip link add %s-va type veth peer name %s-vb" % (p, p, p))
            sh("for d in %s-hbr %s-va %s-vb; do ip link set $d up; done" % (p, p, p))
        elif name == "loop-devices":
            # the images live in the run's private mkdtemp directory, never at a predictable path
            sh("truncate -s 64M %s/fs.img %s/lvm.img" % (self.tmp, self.tmp))
            self.tokens["loop_fs"] = sh("losetup -f --show %s/fs.img" % self.tmp).strip()
            self.loops.append(self.tokens["loop_fs"])
            self.tokens["loop_lv"] = sh("losetup -f --show %s/lvm.img" % self.tmp).strip()
            self.loops.append(self.tokens["loop_lv"])
            sh("mkfs.ext4 -q %s" % self.tokens["loop_fs"])
            self.extra_vars["vg_name"] = "%s-vg" % p
        elif name == "source-images":
            # {tmp}/src: a page shows a readable path and substitutes it (sub="... => {tmp}/src")
            os.makedirs(os.path.join(self.tmp, "src"), exist_ok=True)
            for dest in ("base.qcow2", "plain-base.qcow2"):
                shutil.copy(os.path.join(self.image_dir, "base.qcow2"), os.path.join(self.tmp, "src", dest))
        elif name == "vols-pool":
            self.dir_pool("%s-vols" % p)
        elif name.startswith("isolated-net:"):
            self.isolated_network("%s-%s" % (p, name.split(":", 1)[1]))
        elif name.startswith("image-pool:"):
            pool = "%s-%s" % (p, name.split(":", 1)[1])
            path = self.dir_pool(pool)
            shutil.copy(os.path.join(self.image_dir, "base.qcow2"), os.path.join(path, "debian-12.qcow2"))
            virsh("pool-refresh %s" % pool)
            virsh("vol-create-as %s existing-volume.qcow2 16M --format qcow2" % pool)
        else:
            raise RuntimeError("unknown fixture %r" % name)

    def dir_pool(self, name):
        path = "/var/lib/libvirt/images/%s" % name
        virsh("pool-define-as %s dir --target %s" % (name, path))
        virsh("pool-build %s && virsh -q -c %s pool-start %s" % (name, URI, name))
        return path

    def isolated_network(self, name):
        third = self.free_subnets(1)[0]
        xml = os.path.join(self.tmp, name + ".xml")
        with open(xml, "w") as f:
            f.write("<network><name>%s</name><ip address='%s.1' prefix='24'><dhcp><range start='%s.100' end='%s.199'/>"
                    "</dhcp></ip></network>" % (name, third, third, third))
        virsh("net-define %s && virsh -q -c %s net-start %s" % (xml, URI, name))

    def test_guest_defaults(self):
        """kvm_guest defaults for guests that boot here: TCG and the test image's kernel."""
        boot = "/var/lib/libvirt/images/%s-boot" % self.prefix
        if not os.path.isdir(boot):
            os.makedirs(boot)
            for f in ("vmlinuz", "initrd.img"):
                shutil.copy(os.path.join(self.image_dir, f), boot)
        return {"kvmops.virt.kvm_guest": {
            "virt_type": "qemu",
            "boot": {"kernel": boot + "/vmlinuz", "initrd": boot + "/initrd.img", "cmdline": "console=ttyS0 quiet"}}}

    def free_subnets(self, count):
        used = sh("(ip -4 route; ip -4 addr; for n in $(virsh -q -c %s net-list --all --name); do "
                  "virsh -c %s net-dumpxml --inactive \"$n\"; done) 2>/dev/null" % (URI, URI), check=False)
        free = [t for t in range(240, 255) if ("192.168.%d." % t) not in used and t not in self.reserved_subnets]
        random.shuffle(free)
        if len(free) < count:
            raise RuntimeError("only %d free 192.168.240-254.0/24 subnets" % len(free))
        self.reserved_subnets.update(free[:count])
        return ["192.168.%d" % t for t in free[:count]]

    # cleanup: everything named with the prefix
    def cleanup(self):
        p = self.prefix
        for dom in virsh("list --all --name", check=False).split():
            if dom.startswith(p):
                virsh("destroy %s" % dom, check=False, quiet=True)
                virsh("undefine %s --nvram --snapshots-metadata" % dom, check=False)
        for net in virsh("net-list --all --name", check=False).split():
            if net.startswith(p):
                virsh("net-destroy %s" % net, check=False, quiet=True)
                virsh("net-undefine %s" % net, check=False)
        for pool in virsh("pool-list --all --name", check=False).split():
            if pool.startswith(p):
                virsh("pool-start %s" % pool, check=False, quiet=True)
                virsh("pool-refresh %s" % pool, check=False, quiet=True)
                for vol in virsh("vol-list %s" % pool, check=False).splitlines():
                    if vol.split():
                        virsh("vol-delete --pool %s %s" % (pool, vol.split()[0]), check=False)
                virsh("pool-destroy %s" % pool, check=False, quiet=True)
                virsh("pool-undefine %s" % pool, check=False)
        sh("vgremove -f %s-vg" % p, check=False, quiet=True)
        for loop in self.loops:
            sh("pvremove -ff -y %s" % loop, check=False, quiet=True)
            sh("losetup -d %s" % loop, check=False)
        self.loops = []
        sh("for d in %s-hbr %s-va; do ip link show $d >/dev/null 2>&1 && ip link del $d; done; true" % (p, p), check=False)
        for path in self.paths():
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)

    def leftovers(self):
        p = self.prefix
        left = [n for n in virsh("list --all --name", check=False).split() if n.startswith(p)]
        left += [n for n in virsh("net-list --all --name", check=False).split() if n.startswith(p)]
        left += [n for n in virsh("pool-list --all --name", check=False).split() if n.startswith(p)]
        return left + self.paths()

    def paths(self):
        return [path for pattern in ("/var/lib/libvirt/images/%s*", "/var/lib/libvirt/%s*", "/var/tmp/%s*")
                for path in glob.glob(pattern % self.prefix)]

    # -- preparing an example's text --
    def expand(self, value):
        return re.sub(r"\{(\w+)\}", lambda m: self.tokens.get(m.group(1), m.group(0)), value)

    def prepare(self, ex, subnets):
        text = ex.text
        for sub in ex.attrs.get("sub", []):
            old, new = [s.strip() for s in sub.split("=>", 1)]
            if old not in text:
                raise RuntimeError("%s: sub %r does not occur in the example" % (ex.where, old))
            text = text.replace(old, self.expand(new))
        for name in ex.attr("rename").split():
            text = re.sub(r"(?<![\w.-])%s(?![\w-])" % re.escape(name), "%s-%s" % (self.prefix, name), text)
        return SUBNET.sub(lambda m: subnets.get(m.group(1), m.group(1)) + ".", text)


# -- running -------------------------------------------------------------------

def ansible(args, run, env=None):
    cmd = args + ["-i", run.inventory, "-e", json.dumps(run.extra_vars)]
    print("$ " + " ".join(cmd[:2]) + " ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def plays_of(ex, text, run):
    data = yaml.safe_load(text)
    if shape(text) == "tasks":
        data = [{"hosts": "localhost", "gather_facts": False, "tasks": data}]
    plays = []
    for play in data:
        if "hosts" not in play:
            plays.append(play)
            continue
        play = dict(play)
        play["name"] = "%s: %s" % (ex.where, play.get("name", "(example)"))
        if ex.attr("defaults") == "test-guest":
            defaults = dict(play.get("module_defaults") or {})
            for module, values in run.test_guest_defaults().items():
                defaults[module] = dict(values, **(defaults.get(module) or {}))
            play["module_defaults"] = defaults
        plays.append(play)
    checks = []
    for play in plays:
        if "hosts" in play:
            check = copy.deepcopy(play)
            check["name"] = play["name"] + " [check mode]"
            check["check_mode"] = True
            checks.append(check)
    return plays + checks


def run_page(page, examples, run, report):
    runnable = [e for e in examples if e.kind == "run"]
    olds = []
    for ex in runnable:
        olds += [m.group(1) for m in SUBNET.finditer(ex.text)]
    olds = sorted(set(olds))
    subnets = dict(zip(olds, run.free_subnets(len(olds)))) if olds else {}
    for old, new in subnets.items():
        print("  %s: subnet %s.0/24 -> %s.0/24" % (page, old, new))
    try:
        for ex in runnable:
            for name in ex.attr("setup").split():
                print("  %s: fixture %s" % (ex.where, name))
                run.fixture(name)
        plays = []
        for ex in runnable:
            text = run.prepare(ex, subnets)
            if text != ex.text:
                print("  %s: runs as\n%s" % (ex.where, "\n".join("    | " + line for line in text.splitlines())))
            plays += plays_of(ex, text, run)
        playbook = os.path.join(run.tmp, page.replace("/", "_") + ".yml")
        with open(playbook, "w") as f:
            yaml.safe_dump(plays, f, sort_keys=False)
        rc, out = ansible(["ansible-playbook", playbook], run)
        print(out)
        if rc == 0:
            report["ran"] += [e.where for e in runnable]
        else:
            failed_play = re.findall(r"^PLAY \[(.*?)\]", out.split("fatal:")[0] if "fatal:" in out else out, re.M)
            report["failed"].append("%s (ansible-playbook exit %d; last play: %s)" % (
                page, rc, failed_play[-1] if failed_play else "none"))
    finally:
        run.cleanup()
        run.reserved_subnets.clear()  # the page's networks are gone


def run_other(ex, run, report):
    text = run.prepare(ex, {})
    path = os.path.join(run.tmp, "example.yml" if ex.kind == "syntax" else "example.libvirt_guests.yml")
    with open(path, "w") as f:
        f.write(text + "\n")
    if text != ex.text:
        print("  %s: runs as\n%s" % (ex.where, "\n".join("    | " + line for line in text.splitlines())))
    if ex.kind == "syntax":
        # Plays may target the groups of an inventory this run does not have.
        env = dict(os.environ, ANSIBLE_HOST_PATTERN_MISMATCH="warning")
        rc, out = ansible(["ansible-playbook", "--syntax-check", path], run, env=env)
    else:
        proc = subprocess.run(["ansible-inventory", "-i", path, "--list"], capture_output=True, text=True, check=False)
        rc, out = proc.returncode, proc.stdout + proc.stderr
        if rc == 0:
            inventory = json.loads(proc.stdout)
            if "_meta" not in inventory or "Failed to parse" in proc.stderr or "Skipping" in proc.stderr:
                rc = 1
    print(out)
    (report["ran"] if rc == 0 else report["failed"]).append(ex.where + ("" if rc == 0 else " (%s exit %d)" % (ex.kind, rc)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--image-dir", required=True)
    parser.add_argument("pages", nargs="*", help="only these pages (default: docs/*.md and README.md)")
    args = parser.parse_args()
    pages = args.pages or sorted(os.path.relpath(p, args.root) for p in glob.glob(os.path.join(args.root, "docs", "*.md")))
    if not args.pages:
        pages.append("README.md")

    report = {"ran": [], "failed": [], "not_run": [], "unmarked": []}
    by_page = {}
    for page in pages:
        for ex in parse_page(args.root, page):
            if ex.kind is None:
                ex.kind = "run" if shape(ex.text) else None
            if ex.kind not in KINDS:
                problem = "unknown marker %r" % ex.kind if ex.kind else "neither a playbook nor a task list, and no marker"
                report["unmarked"].append("%s: %s" % (ex.where, problem))
                continue
            if ex.kind in ("syntax", "not-run") and not ex.attr("reason"):
                report["unmarked"].append("%s: %s needs a reason" % (ex.where, ex.kind))
                continue
            by_page.setdefault(page, []).append(ex)

    run = Run(args.root, args.image_dir)
    print("prefix %s, pages %s" % (run.prefix, ", ".join(pages)))
    try:
        for page, examples in by_page.items():
            if any(e.kind == "run" for e in examples):
                run_page(page, examples, run, report)
            for ex in examples:
                if ex.kind in ("inventory", "syntax"):
                    run_other(ex, run, report)
                elif ex.kind == "not-run":
                    report["not_run"].append("%s: %s" % (ex.where, ex.attr("reason")))
    finally:
        run.cleanup()
        shutil.rmtree(run.tmp, ignore_errors=True)
    left = run.leftovers()

    counts = {}
    for examples in by_page.values():
        for ex in examples:
            counts[ex.kind] = counts.get(ex.kind, 0) + 1
    print("\n######## documentation examples")
    print("examples: %d run for real (and again in check mode), %d inventory files read, %d syntax-checked, %d not run"
          % (counts.get("run", 0), counts.get("inventory", 0), counts.get("syntax", 0), counts.get("not-run", 0)))
    syntax = [e for ex in by_page.values() for e in ex if e.kind == "syntax"]
    for ex in syntax:
        print("  syntax only: %s: %s" % (ex.where, ex.attr("reason")))
    for line in report["not_run"]:
        print("  not run: " + line)
    for line in report["unmarked"]:
        print("  UNMARKED: " + line)
    for line in report["failed"]:
        print("  FAILED: " + line)
    if left:
        print("  LEFT BEHIND: " + ", ".join(left))
    print("passed %d, failed %d" % (len(report["ran"]), len(report["failed"]) + len(report["unmarked"]) + (1 if left else 0)))
    return 1 if report["failed"] or report["unmarked"] or left else 0


if __name__ == "__main__":
    sys.exit(main())
