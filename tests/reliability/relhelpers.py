# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the fault, concurrency and data-loss tests: the libvirt daemon,
test directories, guests that boot the test image, checksums and cleanup.

Run as a script, ``python relhelpers.py restart`` restarts libvirtd (a
playbook task uses it to restart the daemon between two tasks).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import libvirt

URI = "qemu:///system"
PIDFILE = "/run/libvirtd.pid"
# Where QEMU may read files (the test image's kernel) and where test pools live.
IMAGES = "/var/lib/libvirt/images"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_IMAGE_DIR = os.environ.get("KVMOPS_TEST_IMAGE_DIR") or os.path.join(REPO, ".cache", "test-image")


def _quiet():
    libvirt.registerErrorHandler(lambda ctx, err: None, None)


# ---------------------------------------------------------------- the daemon

def libvirtd_pid():
    """The running libvirtd's PID, or None."""
    try:
        with open(PIDFILE, encoding="ascii") as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def daemon_answers():
    _quiet()
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError:
        return False
    try:
        conn.getLibVersion()
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def stop_libvirtd(timeout=60):
    """SIGTERM the daemon (by the PID in its pid file) and wait until it has exited."""
    pid = libvirtd_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    raise RuntimeError("libvirtd (pid %d) did not exit within %ds of SIGTERM" % (pid, timeout))


def start_libvirtd(timeout=60):
    """Start ``libvirtd -d`` unless it runs, and wait until its socket answers."""
    if libvirtd_pid() is None:
        subprocess.run(["libvirtd", "-d"], check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            return
        time.sleep(0.2)
    raise RuntimeError("libvirtd does not answer on %s within %ds of starting it" % (URI, timeout))


def restart_libvirtd():
    stop_libvirtd()
    start_libvirtd()


# ---------------------------------------------------------------- files

def write_random(path, size):
    """A file of ``size`` random bytes; returns its sha256."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = os.urandom(size)
    with open(path, "wb") as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest()


def sha256(path):
    """The file's sha256, or None when it does not exist."""
    if not os.path.exists(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Checksums:
    """The sha256 of files that must survive; :meth:`verify` counts what was lost."""

    def __init__(self, report):
        self.report = report
        self.expected = {}

    def keep(self, *paths):
        for path in paths:
            self.expected[path] = sha256(path)
            assert self.expected[path] is not None, "%s does not exist" % path

    def forget(self, path):
        """``path`` was asked to be deleted: it no longer has to survive."""
        self.expected.pop(path, None)

    def verify(self):
        """Compare every kept file with its checksum; returns the paths lost or changed."""
        lost = []
        for path, digest in sorted(self.expected.items()):
            self.report.add("checksums_verified")
            if sha256(path) != digest:
                lost.append(path)
                self.report.add("bytes_lost", os.path.getsize(path) if os.path.exists(path) else 1)
        return lost


# ---------------------------------------------------------------- libvirt objects

def connect():
    _quiet()
    return libvirt.open(URI)


def dir_pool(name, path):
    """Define and start a dir pool on ``path`` (created), straight through libvirt."""
    os.makedirs(path, exist_ok=True)
    conn = connect()
    try:
        pool = conn.storagePoolDefineXML(
            "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path), 0)
        pool.create(0)
    finally:
        conn.close()


def cleanup(prefix, paths=()):
    """Remove every guest, network and pool whose name starts with ``prefix`` (and
    the volumes of those pools), then the given paths. Never fails."""
    if libvirtd_pid() is None:
        start_libvirtd()
    conn = connect()
    try:
        for dom in conn.listAllDomains():
            if dom.name().startswith(prefix):
                if dom.isActive():
                    _try(dom.destroy)
                _try(lambda d=dom: d.undefineFlags(getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 4)))
        for net in conn.listAllNetworks():
            if net.name().startswith(prefix):
                if net.isActive():
                    _try(net.destroy)
                _try(net.undefine)
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                if pool.isActive():
                    _try(lambda p=pool: p.refresh(0))
                    for vol in _try(pool.listAllVolumes) or []:
                        _try(lambda v=vol: v.delete(0))
                    _try(pool.destroy)
                _try(pool.undefine)
    finally:
        conn.close()
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _try(func):
    try:
        return func()
    except libvirt.libvirtError:
        return None


def boot_files(directory):
    """Copy the test image's kernel and initramfs where QEMU may read them."""
    os.makedirs(directory, exist_ok=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(os.path.join(TEST_IMAGE_DIR, name), os.path.join(directory, name))
        os.chmod(os.path.join(directory, name), 0o644)
    return {"kernel": os.path.join(directory, "vmlinuz"), "initrd": os.path.join(directory, "initrd.img"),
            "cmdline": "console=ttyS0 quiet"}


def qemu_pid(name):
    try:
        with open("/run/libvirt/qemu/%s.pid" % name, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))


_SUPPORTED = re.compile(r"Supported parameters include:[^\n]*", re.S)


def names_option(messages, option):
    """Whether ``messages`` name ``option`` itself: as a whole option path
    (``interfaces[0].mac``, not ``mac`` inside ``macvtap`` or ``name`` inside
    ``hostname``), outside ansible-core's "Supported parameters include: ..."
    list, which names every option of the module."""
    text = _SUPPORTED.sub("", messages)
    pattern = r"(?<![A-Za-z0-9_.\[\]])" + re.escape(option) + r"(?![A-Za-z0-9_\[])"
    return re.search(pattern, text) is not None


def module_pid(module, ancestor_text):
    """The PID of the running ``AnsiballZ_<module>`` process one of whose ancestors' command
    lines holds ``ancestor_text`` (the suite's own run), or None."""
    def cmdline(pid):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            return ""

    def parent(pid):
        try:
            with open("/proc/%s/stat" % pid, encoding="ascii") as handle:
                return int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    for entry in os.listdir("/proc"):
        line = cmdline(entry) if entry.isdigit() else ""
        # the Python process itself, not the shell that started it
        if "AnsiballZ_%s" % module not in line or not os.path.basename(line.split(" ")[0]).startswith("python"):
            continue
        pid = int(entry)
        up = parent(pid)
        while up > 1:
            if ancestor_text in cmdline(up):
                return pid
            up = parent(up)
    return None


def file_head(path, length):
    """The first ``length`` bytes of ``path`` (b"" when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(length)
    except OSError:
        return b""


if __name__ == "__main__":
    if sys.argv[1:] == ["restart"]:
        restart_libvirtd()
        print("libvirtd restarted, pid %s" % libvirtd_pid())
    else:
        sys.exit("usage: relhelpers.py restart")
