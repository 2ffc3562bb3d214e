# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets never reach any output, and the seed ISO that holds them is private.

``test_secret_options_round_trip`` plants the known SECRETS in every secret
option (graphics password, cloud-init user data with a password, an SSH key
and a token), through the kvm_guest module and the kvm_guests role, with
-vvv --diff: check, apply, check, apply, then a change of every secret.
``test_no_secret_in_any_output`` runs last and scans everything the suite
and the integration stage wrote.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

import relhelpers as rh
from conftest import (DISRUPTIVE, LOG_DIR, OUTPUT_DIR, REPO, SECRETS, URI, ansible_playbook, libvirt)

RECAP = re.compile(r"^localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
SEED_SUFFIX = "-cidata.iso"

PLAYBOOK = """---
- name: Every secret option, through the module and the role
  hosts: localhost
  gather_facts: false
  vars_files:
    - {vars_file}
  tasks:
    - name: A guest with every secret option (module)
      kvmops.virt.kvm_guest:
        name: "{{{{ p }}}}mod"
        state: present
        virt_type: qemu
        memory: 128
        disks:
          - {{pool: "{{{{ pool }}}}", volume: "{{{{ p }}}}mod-root.qcow2", size: 16MiB}}
        graphics: {{type: spice, listen: 127.0.0.1, password: "{{{{ s.graphics_password }}}}{{{{ suffix }}}}"}}
        cloud_init:
          pool: "{{{{ pool }}}}"
          user_data:
            users:
              - name: kvmops
                lock_passwd: false
                plain_text_passwd: "{{{{ s.user_password }}}}{{{{ suffix }}}}"
                ssh_authorized_keys: ["{{{{ s.ssh_key }}}}{{{{ suffix }}}}"]
            write_files:
              - {{path: /etc/kvmops-token, permissions: "0600", content: "{{{{ s.user_data_token }}}}{{{{ suffix }}}}"}}
          meta_data: {{local-hostname: secret-guest}}
      register: secret_module_result

    - name: Show what the module returned
      ansible.builtin.debug:
        var: secret_module_result

    - name: The same through the kvm_guests role (user data as text)
      ansible.builtin.include_role:
        name: kvmops.virt.kvm_guests
      vars:
        kvm_guests_pool: "{{{{ pool }}}}"
        kvm_guests_wait_for_ip: false
        kvm_guests_add_hosts: false
        kvm_guests:
          - name: "{{{{ p }}}}role"
            state: present
            virt_type: qemu
            memory: 128
            disks: [{{pool: "{{{{ pool }}}}", volume: "{{{{ p }}}}role-root.qcow2", size: 16MiB}}]
            graphics: {{type: vnc, listen: 127.0.0.1, password: "{{{{ s.vnc_password[:8 - suffix | length] }}}}{{{{ suffix }}}}"}}
            cloud_init:
              user_data: |
                #cloud-config
                password: {{{{ s.user_password }}}}{{{{ suffix }}}}
                chpasswd: {{expire: false}}
                ssh_authorized_keys:
                  - {{{{ s.ssh_key }}}}{{{{ suffix }}}}
                runcmd:
                  - echo {{{{ s.user_data_token }}}}{{{{ suffix }}}} > /run/kvmops-token
"""


@pytest.fixture(scope="module")
def secret_setup():
    """A dir pool for the guests' disks and seeds, and a vars file with the secrets (outside the scanned output)."""
    prefix = "krel%d-sec-" % (os.getpid() % 100000)
    pool_name = prefix + "pool"
    tmp = tempfile.mkdtemp(prefix="kvmops-rel-secrets-")
    # the pool lives in a private directory too (never a predictable path under /var/tmp as root)
    pool_root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(pool_root, 0o755)
    pool_dir = os.path.join(pool_root, "pool")
    conn = rh.connect()
    try:
        rh.dir_pool(pool_name, pool_dir)
        pool = conn.storagePoolLookupByName(pool_name)

        def write_vars(suffix):
            path = os.path.join(tmp, "vars%s.json" % suffix)
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"p": prefix, "pool": pool_name, "s": SECRETS, "suffix": suffix}, handle)
            return path

        playbook = os.path.join(tmp, "secrets.yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            handle.write(PLAYBOOK.format(vars_file='"{{ kvmops_secret_vars }}"'))
        yield {"prefix": prefix, "pool": pool, "pool_dir": pool_dir, "playbook": playbook, "vars": write_vars}
    finally:
        conn.close()
        rh.cleanup(prefix, [pool_dir, pool_root, tmp])


def _recap(run):
    match = RECAP.search(run.output)
    assert match, run.output[-2000:]
    ok, changed, unreachable, failed = (int(n) for n in match.groups())
    assert (unreachable, failed) == (0, 0), "the secrets playbook failed, see %s" % run.log
    return changed


def test_secret_options_round_trip(secret_setup, report):
    s = secret_setup

    def play(suffix, check, label):
        return ansible_playbook(s["playbook"], extra_vars={"kvmops_secret_vars": s["vars"](suffix)}, check=check,
                                label=label)

    assert _recap(play("", True, "secrets-check")) > 0
    assert _recap(play("", False, "secrets-apply")) > 0
    assert _recap(play("", True, "secrets-check-again")) == 0
    assert _recap(play("", False, "secrets-apply-again")) == 0
    changed = play("Z", False, "secrets-change-every-secret")
    assert _recap(changed) > 0
    # The diff says that the secrets changed, without showing them.
    assert "******** (changed)" in changed.output
    report.add("inputs_tried", 5)

    conn = libvirt.open(URI)
    try:
        for guest in ("mod", "role"):
            vol = s["pool"].storageVolLookupByName(s["prefix"] + guest + SEED_SUFFIX)
            path = vol.path()
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert not mode & stat.S_IROTH, "seed %s is world-readable (%o)" % (path, mode)
            assert not mode & (stat.S_IRWXG | stat.S_IRWXO), "seed %s is readable by others (%o)" % (path, mode)
            # The volume's own definition asks for the same (a pool refresh or a rebuild keeps it).
            assert "<mode>0600</mode>" in vol.XMLDesc(0)
            with open(path, "rb") as handle:
                content = handle.read()
            # The seed really holds the (changed) secrets: the scan looks for something that was there.
            assert (SECRETS["user_password"] + "Z").encode() in content
            assert (SECRETS["ssh_key"] + "Z").encode() in content
            dom = conn.lookupByName(s["prefix"] + guest)
            secure_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_INACTIVE)
            expected = SECRETS["graphics_password"] + "Z" if guest == "mod" else SECRETS["vnc_password"][:7] + "Z"
            assert "passwd='%s'" % expected in secure_xml
    finally:
        conn.close()


# ---------------------------------------------------------------- the scan

def derived_secrets():
    """The secrets as the suite and the roles alter them before use: the changed
    values (``+ "Z"``) and the kvm_guests role's VNC password cut to 8 characters."""
    derived = {}
    for key, value in SECRETS.items():
        derived[key] = value
        derived[key + "+Z"] = value + "Z"
    derived["vnc_password[:7]+Z"] = SECRETS["vnc_password"][:7] + "Z"
    derived["vnc_password[:8]"] = SECRETS["vnc_password"][:8]
    return derived


def needles():
    """Each secret, and each derived one, raw, JSON-escaped and base64-encoded (at every alignment)."""
    found = {}
    for key, value in derived_secrets().items():
        raw = value.encode()
        forms = {raw, json.dumps(value)[1:-1].encode()}
        for pad in range(3):
            encoded = base64.b64encode(b"\0" * pad + raw)
            forms.add(encoded[4:-4])  # the groups that hold only the secret's bytes
        found[key] = sorted(forms)
    return found


def scan_files():
    """Every file the suite and the other stages left: logs, result JSON, Ansible's temporary files."""
    files = set()
    files.update(glob.glob(os.path.join(LOG_DIR, "*")))
    files.update(glob.glob(os.path.join(OUTPUT_DIR, "*.json")))
    files.update(glob.glob(os.path.join(REPO, "tests", "output", "logs", "*.log")))
    files.update(glob.glob(os.path.join(REPO, "tests", "output", "**", "*.json"), recursive=True))
    files.update(glob.glob(os.path.join(REPO, "tests", "output", "**", "*.xml"), recursive=True))
    for tmp in (os.path.expanduser("~/.ansible/tmp"),) + HOST_LOG_DIRS:
        for root, _dirs, names in os.walk(tmp):
            files.update(os.path.join(root, name) for name in names)
    files.update(f for f in HOST_LOG_FILES if os.path.isfile(f))
    journal = journal_dump()
    if journal:
        files.add(journal)
    return sorted(f for f in files if os.path.isfile(f) and not f.endswith((".gz", ".xz")))


# The host's own logs: libvirt's (daemon and per-guest QEMU logs) and syslog.
HOST_LOG_DIRS = ("/var/log/libvirt",)
HOST_LOG_FILES = ("/var/log/syslog", "/var/log/messages", "/var/log/daemon.log", "/var/log/user.log")


def journal_dump():
    """The systemd journal as text in a file under the suite's output, when there is a journal."""
    if not shutil.which("journalctl"):
        return None
    path = os.path.join(OUTPUT_DIR, "journal.txt")
    try:
        with open(path, "wb") as handle:
            subprocess.run(["journalctl", "--no-pager", "-o", "cat"], stdout=handle, stderr=subprocess.DEVNULL,
                           timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path


def scan(files):
    """``[(file, secret key, form)]`` for every secret found."""
    hits = []
    forms = needles()
    for path in files:
        with open(path, "rb") as handle:
            data = handle.read()
        for key, variants in forms.items():
            for form in variants:
                if form in data:
                    hits.append((path, key, form.decode(errors="replace")))
    return hits


def test_scan_finds_a_planted_secret(tmp_path):
    """The scan can fail: a secret in any of its forms is counted."""
    for key, value in SECRETS.items():
        for text in (value, json.dumps({"v": value}), base64.b64encode(b"xy" + value.encode()).decode()):
            leak = tmp_path / "leak.log"
            leak.write_text("before %s after\n" % text)
            found = [hit[1] for hit in scan([str(leak)])]
            assert key in found, "the scan missed %s in one of its forms" % key
    # a derived secret: the kvm_guests role cuts a VNC password to 8 characters
    leak = tmp_path / "derived.log"
    leak.write_text("passwd=%s\n" % (SECRETS["vnc_password"][:7] + "Z"))
    assert "vnc_password[:7]+Z" in [hit[1] for hit in scan([str(leak)])]
    assert set(HOST_LOG_DIRS) <= {"/var/log/libvirt"} and "/var/log/syslog" in HOST_LOG_FILES
    clean = tmp_path / "clean.log"
    clean.write_text("graphics.password: ******** (changed)\n")
    assert scan([str(clean)]) == []


@pytest.mark.last
def test_no_secret_in_any_output(report):
    integration_log = os.path.join(REPO, "tests", "output", "logs", "integration.log")
    if DISRUPTIVE:
        # The full suite runs the integration stage (with -vvv --diff) before this one.
        assert os.path.isfile(integration_log), "integration.log is missing: the integration stage did not run"
    files = scan_files()
    hits = scan(files)
    report.add("secrets_found", len(hits))
    scanned = {"files": len(files), "bytes": sum(os.path.getsize(f) for f in files),
               "integration_log_bytes": os.path.getsize(integration_log) if os.path.isfile(integration_log) else None,
               "secrets_found": len(hits), "hits": [list(h) for h in hits]}
    with open(os.path.join(OUTPUT_DIR, "secret-scan.json"), "w", encoding="utf-8") as handle:
        # The hits name the file, the secret's key and its form, never the value itself.
        json.dump(dict(scanned, hits=[[h[0], h[1]] for h in hits]), handle, indent=2)
    print("secret scan: %(files)d files, %(bytes)d bytes (integration.log: %(integration_log_bytes)s bytes)" % scanned)
    if hits:  # named by file and key only: a failure message must not spread the secret
        pytest.fail("secrets found in: %s" % sorted({(h[0], h[1]) for h in hits}), pytrace=False)
