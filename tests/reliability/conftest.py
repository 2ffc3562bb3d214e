# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared parts of the reliability suite.

The suite drives the collection the way users do (the ``ansible`` and
``ansible-playbook`` CLIs, with ``-vvv --diff``) against the live libvirt
daemon. Every CLI run's output is kept under ``tests/output/reliability/logs``
so that the secrets scan can read all of it. Tests add to the report counters
with the ``report`` fixture; the totals are printed at the end of the run.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import stat
import subprocess
import sys
import tempfile

import pytest

try:
    import libvirt
except ImportError:  # pragma: no cover - the suite needs the binding
    libvirt = None

from lxml import etree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URI = "qemu:///system"
OUTPUT_DIR = os.path.join(REPO, "tests", "output", "reliability")
LOG_DIR = os.path.join(OUTPUT_DIR, "logs")
# One prefix per run: every object a test creates starts with it.
RUN_PREFIX = "krel%d-" % (os.getpid() % 100000)
DISRUPTIVE = os.environ.get("KVMOPS_TEST_DISRUPTIVE") == "1"
TEST_IMAGE_DIR = os.environ.get("KVMOPS_TEST_IMAGE_DIR") or os.path.join(REPO, ".cache", "test-image")

# Known secrets planted in every secret option (shared with the integration
# targets, which read the same file); the scan counts them in all output.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "secrets.json"), encoding="utf-8") as _handle:
    SECRETS = {k: v for k, v in json.load(_handle).items() if not k.startswith("_")}

REPORT_KEYS = ("inputs_tried", "faults_injected", "concurrent_runs", "secrets_found", "bytes_lost",
               "checksums_verified")

_run_counter = itertools.count(1)


def _ansible_env():
    env = dict(os.environ)
    # This checkout (linked there by the suite) and the controller's own Python on the "managed" localhost.
    env["ANSIBLE_COLLECTIONS_PATH"] = os.path.join(REPO, ".cache", "collections")
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    env.pop("ANSIBLE_KEEP_REMOTE_FILES", None)
    env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_HOST_KEY_CHECKING": "0",
                "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
                "ANSIBLE_RETRY_FILES_ENABLED": "0", "LIBVIRT_DEFAULT_URI": URI})
    return env


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


@dataclasses.dataclass
class Run:
    """One CLI run: its exit code, its whole output, the parsed results and its log file."""

    rc: int
    output: str
    results: list
    log: str

    @property
    def result(self):
        """The last task result (for a one-module ad-hoc run, its only one)."""
        return self.results[-1] if self.results else {}

    @property
    def has_traceback(self):
        return "Traceback (most recent call last)" in self.output or "module_stderr" in self.output


_RESULT_START = re.compile(r"^\S+ \| [A-Z]+!?(?: \| rc=\d+)? => ", re.M)
_PLAY_RESULT_START = re.compile(r"^(?:fatal|ok|changed|failed|skipping): \[[^\]]+\](?: \(item=.*?\))?(?:: [A-Z]+!)? => ", re.M)


def parse_results(output):
    """Every JSON result the default callback printed (ad-hoc and playbook form)."""
    decoder = json.JSONDecoder()
    results = []
    for pattern in (_RESULT_START, _PLAY_RESULT_START):
        for match in pattern.finditer(output):
            try:
                obj, _end = decoder.raw_decode(output, match.end())
            except ValueError:
                continue
            if isinstance(obj, dict):
                results.append(obj)
    return results


def mask_secrets(text):
    for key, value in SECRETS.items():
        text = text.replace(value, "<secret %s>" % key)
    return text


def _run(argv, label, timeout, env_extra=None):
    os.makedirs(LOG_DIR, exist_ok=True)
    env = _ansible_env()
    env.update(env_extra or {})
    proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False)
    safe_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80]
    log = os.path.join(LOG_DIR, "%04d-%s.log" % (next(_run_counter), safe_label))
    with open(log, "w", encoding="utf-8") as handle:
        # The command line is the suite's own input, not Ansible's output: a secret
        # passed in it is masked in this echo (what Ansible printed is kept as it is).
        handle.write("$ %s\n" % mask_secrets(" ".join(argv)))
        handle.write(proc.stdout)
    return Run(proc.returncode, proc.stdout, parse_results(proc.stdout), log)


def ansible_module(module, args, check=False, label=None, timeout=600):
    """Run ``kvmops.virt.<module>`` (or a FQCN) ad hoc on localhost with -vvv --diff."""
    name = module if "." in module else "kvmops.virt." + module
    argv = [_bin("ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", name,
            "-a", json.dumps(args), "-vvv", "--diff"]
    if check:
        argv.append("--check")
    return _run(argv, label or module, timeout)


def ansible_playbook(playbook, extra_vars=None, check=False, label=None, timeout=1200, env_extra=None):
    """Run a playbook file (path or YAML text) on localhost with -vvv --diff."""
    path = playbook
    if "\n" in playbook:
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="kvmops-rel-", dir=OUTPUT_DIR,
                                             delete=False)
        with handle:
            handle.write(playbook)
        path = handle.name
    argv = [_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", path, "-vvv", "--diff"]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    return _run(argv, label or os.path.basename(path), timeout, env_extra)


# ---------------------------------------------------------------- snapshots

_VOLATILE_POOL = ("capacity", "allocation", "available")


def _strip(xml, xpaths):
    root = etree.fromstring(xml.encode())
    for xpath in xpaths:
        for node in root.xpath(xpath):
            node.getparent().remove(node)
    return etree.tostring(root, encoding="unicode")


def _gone_ok(func, target, obj):
    """Record one object; one that another test run removes meanwhile is left out."""
    try:
        func(target, obj)
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK,
                                      libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL):
            raise


def _domain_entry(domains, dom):
    domains[dom.name()] = {
        "xml": dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else dom.XMLDesc(0),
        "active": bool(dom.isActive()), "persistent": bool(dom.isPersistent()),
        "autostart": bool(dom.autostart()) if dom.isPersistent() else False}


def _network_entry(networks, net):
    networks[net.name()] = {
        "xml": net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE) if net.isPersistent() else net.XMLDesc(0),
        "active": bool(net.isActive()), "autostart": bool(net.autostart())}


def _pool_entry(state, pool):
    state["pools"][pool.name()] = {
        "xml": _strip(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE), ["/pool/" + v for v in _VOLATILE_POOL]),
        "active": bool(pool.isActive()), "autostart": bool(pool.autostart())}
    if pool.isActive():
        for vol in pool.listAllVolumes():
            _gone_ok(_volume_entry, state["volumes"], (pool, vol))


def _volume_entry(volumes, pool_vol):
    pool, vol = pool_vol
    volumes["%s/%s" % (pool.name(), vol.name())] = _strip(
        vol.XMLDesc(0), ["/volume/allocation", "/volume/physical", "/volume/target/timestamps"])


def snapshot(uri=URI):
    """Every libvirt object with its XML and state, for before/after comparison.

    Sizes that change on their own (free space in a pool, a running guest's
    allocation) are left out; everything else is compared exactly.
    """
    conn = libvirt.open(uri)
    try:
        state = {"domains": {}, "networks": {}, "pools": {}, "volumes": {}, "bridges": {}, "files": {}}
        for dom in conn.listAllDomains():
            _gone_ok(_domain_entry, state["domains"], dom)
        for net in conn.listAllNetworks():
            _gone_ok(_network_entry, state["networks"], net)
        for pool in conn.listAllStoragePools():
            _gone_ok(_pool_entry, state, pool)
        owners = {}
        for net in conn.listAllNetworks():
            try:
                match = re.search(r"<bridge name='([^']+)'", net.XMLDesc(0))
                if match:
                    owners[match.group(1)] = net.name()
            except libvirt.libvirtError:
                continue
        # a bridge libvirt made for a network is named after that network, so that
        # another test run's network bridges are left out like its networks
        state["bridges"] = dict(("%s/%s" % (owners[b], b) if b in owners else b, kind) for b, kind in host_bridges().items())
        dirs = set(WATCHED_DIRS)
        for entry in state["pools"].values():
            match = re.search(r"<target>\s*<path>([^<]+)</path>", entry["xml"])
            if match:
                dirs.add(match.group(1))
        state["files"] = file_tree(sorted(dirs))
        return state
    finally:
        conn.close()


# Directories whose entries every snapshot records besides the pools' own.
WATCHED_DIRS = ("/var/lib/libvirt/images", "/var/lib/libvirt/qemu/nvram", "/etc/libvirt/qemu", "/etc/libvirt/qemu/networks",
                "/etc/libvirt/storage")


def host_bridges():
    """``{name: "bridge"}`` of the host's Linux bridges (a module that made or removed one changed the host)."""
    found = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return found
    for name in names:
        if os.path.isdir(os.path.join("/sys/class/net", name, "bridge")):
            found[name] = "bridge"
    return found


def file_tree(dirs):
    """``{path: (kind, size)}`` of each directory and its direct entries (no contents: sizes tell a
    truncated or rewritten file; the no-data-lost tests compare checksums)."""
    tree = {}
    for top in dirs:
        if not os.path.isdir(top) or os.path.islink(top):
            if os.path.lexists(top):
                tree[top] = ("other", None)
            continue
        tree[top] = ("dir", None)
        try:
            names = os.listdir(top)
        except OSError:
            continue
        for name in names:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
            tree[path] = (kind, st.st_size if kind == "file" else None)
    return tree


# Outside the full suite (which runs alone), other test runs may share the
# daemon: their objects all start with "k" and their own prefix (krel<pid>-,
# kvmt-, ...). Such objects, other than this run's, are left out of the
# comparison then; everything else (default network, users' objects) counts.
SHARED_DAEMON = os.environ.get("KVMOPS_RELIABILITY_SHARED_DAEMON", "0" if DISRUPTIVE else "1") == "1"


def foreign_test_object(name):
    """Whether ``name`` (``pool/volume`` for a volume) belongs to another test run."""
    return any(part.startswith("k") and not part.startswith(RUN_PREFIX) for part in name.split("/"))


def snapshot_diff(before, after, ignore_foreign=None):
    """Human-readable differences between two snapshots ([] when equal).

    ``ignore_foreign`` (default: on outside the full suite) leaves out other
    test runs' objects, see :data:`SHARED_DAEMON`.
    """
    if ignore_foreign is None:
        ignore_foreign = SHARED_DAEMON
    lines = []
    for kind in before:
        for name in sorted(set(before[kind]) | set(after[kind])):
            if ignore_foreign and foreign_test_object(name):
                continue
            if name not in after[kind]:
                lines.append("%s %s: removed" % (kind, name))
            elif name not in before[kind]:
                lines.append("%s %s: created" % (kind, name))
            elif before[kind][name] != after[kind][name]:
                lines.append("%s %s: changed" % (kind, name))
    return lines


# ---------------------------------------------------------------- report

def _report_path():
    return os.path.join(OUTPUT_DIR, "report-%d.json" % os.getpid())


class Report:
    """Counters for the closing summary, kept in a file so that they survive a crashed test."""

    def __init__(self):
        self.counts = {key: 0 for key in REPORT_KEYS}

    def add(self, key, amount=1):
        if key not in self.counts:
            raise KeyError("unknown report key %r" % key)
        self.counts[key] += amount
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        with open(_report_path(), "w", encoding="utf-8") as handle:
            json.dump(self.counts, handle)


_REPORT = Report()


@pytest.fixture
def report():
    return _REPORT


@pytest.fixture
def uri():
    return URI


_prefix_counter = itertools.count(1)


@pytest.fixture
def prefix():
    """A name prefix unique to this run and test: ``krel<pid>-<n>-``."""
    return "%s%d-" % (RUN_PREFIX, next(_prefix_counter))


def pytest_sessionstart(session):
    del session
    os.makedirs(LOG_DIR, exist_ok=True)
    if os.path.isdir(LOG_DIR):
        for name in os.listdir(LOG_DIR):
            os.remove(os.path.join(LOG_DIR, name))


def pytest_collection_modifyitems(config, items):
    del config
    skip = pytest.mark.skip(reason="disruptive: set KVMOPS_TEST_DISRUPTIVE=1 (the full suite does)")
    for item in items:
        if "disruptive" in item.keywords and not DISRUPTIVE:
            item.add_marker(skip)
    items.sort(key=lambda item: 1 if "last" in item.keywords else 0)


def pytest_terminal_summary(terminalreporter):
    counts = _REPORT.counts
    terminalreporter.write_sep("=", "reliability summary")
    terminalreporter.write_line(
        "inputs tried: {inputs_tried}, faults injected: {faults_injected}, concurrent runs: {concurrent_runs}, "
        "secrets found: {secrets_found}, bytes lost: {bytes_lost} (checksums verified: {checksums_verified})".format(**counts))
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(OUTPUT_DIR, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(counts, handle, indent=2)
