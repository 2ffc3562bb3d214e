"""Run kvmops.virt's playbooks as AWX/AAP job templates do: through ansible-runner.

scripts/dist.sh runs this file with the execution environment's venv (its
python has ansible-core, ansible-runner and libvirt-python), after building
the release artifact:

    EE/bin/python tests/awx/awx_jobs.py --repo REPO --tarball ARTIFACT --image-dir TEST_IMAGE --work DIR

Each job gets a private data directory laid out as AWX lays it out:
project/ (the playbooks and collections/requirements.yml, which installs
kvmops.virt from the artifact as a project sync does, into
requirements_collections/), inventory/hosts, env/extravars, env/envvars,
env/settings, env/cmdline; ansible-runner writes artifacts/<ident>/ (job
events, stdout, status, rc, command). Jobs:

1. "Deploy guests" (deploy_guests.yml, a one-line wrapper importing
   kvmops.virt.deploy_guests) at verbosity 3 with --diff: a busybox test
   guest on an isolated network, with a planted VNC password and cloud-init
   user_data; then the same template as job type "Check" (changes nothing).
2. The credential type "libvirt URI" of docs/awx.md, injected as AWX injects
   it: kvmops.virt.check_host reads the URI from the extra variables, a
   module without `uri` reads LIBVIRT_DEFAULT_URI from the environment.
3. The credential type "libvirt SSH" of docs/awx.md: the key and known_hosts
   files and their environment variables, checked with ssh-keygen in the job.

The credential types are read from docs/awx.md itself and rendered with
AWX's rules (a sandboxed Jinja2 environment; `tower.filename` / `awx.filename`
name the files written under env/). Every job must end `successful`, and no
planted secret (passwords, user_data, the private key) may appear in any file
under artifacts/. Prints `ok: ...` / `FAIL: ...` lines (dist.sh counts them)
and removes every guest, network and pool of its prefix at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible_runner
import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

FAILED = []
NOT_HEX = "GHJKLMNPQRSTUVWXYZghjkmnpqrstuvwxyz"


def not_hex(length: int) -> str:
    """A random string of letters that are no hex digits."""
    return "".join(secrets.choice(NOT_HEX) for dummy in range(length))


def ok(msg):
    print(f"ok: {msg}", flush=True)


def fail(msg):
    FAILED.append(msg)
    print(f"FAIL: {msg}", flush=True)


def check(cond, good, bad):
    if cond:
        ok(good)
    else:
        fail(bad)
    return cond


# -- credential types, as docs/awx.md defines them and AWX injects them -------

def credential_types(doc: Path) -> dict:
    """The `# AWX credential type "NAME": input|injector configuration` yaml blocks of the page."""
    types: dict = {}
    for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S):
        head = re.match(r'# AWX credential type "([^"]+)": (input|injector) configuration', block)
        if head:
            key = "inputs" if head.group(2) == "input" else "injectors"
            types.setdefault(head.group(1), {})[key] = yaml.safe_load(block)
    return types


def inject(ctype: dict, inputs: dict, pdd: Path):
    """AWX's CredentialType.inject_credential: files under env/, then env and extra_vars."""
    fields = {f["id"] for f in ctype["inputs"]["fields"]}
    missing = [r for r in ctype["inputs"].get("required", []) if r not in inputs]
    unknown = sorted(set(inputs) - fields)
    if missing or unknown:
        raise ValueError(f"inputs: missing {missing}, unknown {unknown}")
    sandbox = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    namespace = dict(inputs)
    files = {}
    for key, template in ctype["injectors"].get("file", {}).items():
        fd, path = tempfile.mkstemp(prefix="awx_", dir=pdd / "env")
        with os.fdopen(fd, "w") as handle:
            handle.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, 0o600)
        files[key.partition(".")[2] or None] = path
    filename = files.get(None) if list(files) == [None] else files
    namespace["tower"] = namespace["awx"] = {"filename": filename}
    env = {k: sandbox.from_string(v).render(**namespace) for k, v in ctype["injectors"].get("env", {}).items()}
    extra = {k: sandbox.from_string(v).render(**namespace) for k, v in ctype["injectors"].get("extra_vars", {}).items()}
    return {"env": env, "extra_vars": extra, "files": files}


# -- private data directories and jobs -----------------------------------------

class Job:
    """One private data directory and its project, inventory and env/ files."""

    def __init__(self, work: Path, name: str, job_id: int, args):
        self.pdd = work / name
        self.args = args
        for sub in ("project/collections", "inventory", "env"):
            (self.pdd / sub).mkdir(parents=True)
        self.collections = self.pdd / "requirements_collections"
        self.envvars = {
            # As AWX sets them for a job: the project sync's collections, then the EE's paths.
            "ANSIBLE_COLLECTIONS_PATH": f"{self.collections}:~/.ansible/collections:/usr/share/ansible/collections",
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
            "ANSIBLE_FORCE_COLOR": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            "ANSIBLE_NOCOLOR": "True",
            "JOB_ID": str(job_id),
        }
        self.extravars: dict = {}
        # The job templates of docs/awx.md: one-line wrappers of the collection's playbooks.
        for playbook in ("check_host", "deploy_guests"):
            (self.pdd / "project" / f"{playbook}.yml").write_text(
                f"---\n- name: {playbook} of kvmops.virt\n  ansible.builtin.import_playbook: kvmops.virt.{playbook}\n")
        (self.pdd / "project/collections/requirements.yml").write_text(yaml.safe_dump(
            {"collections": [{"name": str(args.tarball), "type": "file"}]}))
        (self.pdd / "inventory/hosts").write_text(
            f"[hypervisors]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")

    def sync(self):
        """The project update: ansible-galaxy installs collections/requirements.yml (offline: a file)."""
        galaxy = Path(sys.executable).parent / "ansible-galaxy"
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.collections))
        out = subprocess.run([str(galaxy), "collection", "install", "--offline", "-r", "collections/requirements.yml",
                              "-p", str(self.collections)], cwd=self.pdd / "project", env=env,
                             capture_output=True, text=True, check=False)
        manifest = self.collections / "ansible_collections/kvmops/virt/MANIFEST.json"
        return out.returncode == 0 and manifest.exists(), out.stdout + out.stderr

    def run(self, playbook: str, ident: str, cmdline: str):
        (self.pdd / "env/extravars").write_text(json.dumps(self.extravars))
        (self.pdd / "env/envvars").write_text(json.dumps(self.envvars))
        (self.pdd / "env/settings").write_text(yaml.safe_dump(
            {"job_timeout": 900, "suppress_ansible_output": True, "idle_timeout": 600}))
        (self.pdd / "env/cmdline").write_text(cmdline)
        return ansible_runner.run(private_data_dir=str(self.pdd), playbook=playbook, ident=ident, quiet=True)

    def artifacts(self, ident: str) -> Path:
        return self.pdd / "artifacts" / ident


def scan(root: Path, planted: dict) -> tuple[int, list]:
    """Files under root and the (file, secret name) pairs where a planted secret appears."""
    found, count = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        count += 1
        data = path.read_bytes()
        found += [(str(path.relative_to(root)), name) for name, value in planted.items() if value.encode() in data]
    return count, found


def check_job(job: Job, runner, ident: str, label: str, planted: dict):
    art = job.artifacts(ident)
    status = (art / "status").read_text().strip() if (art / "status").exists() else runner.status
    if not check(runner.status == "successful" and status == "successful" and runner.rc == 0,
                 f"{label}: status successful, rc 0",
                 f"{label}: status {runner.status} (artifacts: {status}), rc {runner.rc}; stdout tail:\n"
                 + "\n".join(runner.stdout.read().splitlines()[-40:])):
        return None
    events = list(runner.events)
    if not check(len(events) > 5 and (art / "stdout").stat().st_size > 0,
                 f"{label}: {len(events)} job events and stdout in artifacts/",
                 f"{label}: {len(events)} job events, stdout empty or missing"):
        return None
    if planted:
        n_files, leaks = scan(art, planted)
        check(not leaks, f"{label}: no planted secret ({', '.join(planted)}) in {n_files} files of artifacts/",
              f"{label}: planted secrets in artifacts/: {leaks[:10]}")
    return events


def ok_results(events, task: str):
    return [e["event_data"]["res"] for e in events
            if e.get("event") == "runner_on_ok" and e.get("event_data", {}).get("task") == task]


def virsh(*argv):
    return subprocess.run(["virsh", "-q", "-c", "qemu:///system", *argv], capture_output=True, text=True, check=False)


def free_subnet() -> str:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for third in secrets.SystemRandom().sample(range(100, 200), 100):
        net = ipaddress.ip_network(f"192.168.{third}.0/24")
        if f" 192.168.{third}." not in used and not any(
                ipaddress.ip_address(a) in net for a in re.findall(r"inet (\S+)/", used)):
            return f"192.168.{third}"
    raise RuntimeError("no free 192.168.1xx.0/24")


def play(collections: Path, playbook: str, extra: dict):
    """A helper playbook (tests/awx/*.yml, not a job) with the EE's ansible-playbook and the synced collection."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", json.dumps(extra | {"ansible_python_interpreter": sys.executable}), str(Path(__file__).parent / playbook)]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


# -- the jobs -------------------------------------------------------------------

def deploy_job(args, work: Path, prefix: str):
    job = Job(work, "deploy", 1, args)
    synced, log = job.sync()
    if not check(synced, "project sync: collections/requirements.yml installed kvmops.virt from the artifact",
                 f"project sync failed:\n{log}"):
        return
    # VNC passwords are at most 8 characters; letters that are no hex digits do not turn up
    # in the UUIDs and digests of the job events by chance.
    planted = {"vnc password": not_hex(8), "user_data": "userdata-" + not_hex(16)}
    subnet = free_subnet()
    setup = play(job.collections, "setup.yml", {"prefix": prefix, "subnet": subnet})
    if not check(setup.returncode == 0, f"{prefix}-net (isolated, {subnet}.0/24) and {prefix}-pool made",
                 f"setup.yml failed:\n{setup.stdout[-3000:]}"):
        return
    guest = f"{prefix}-web1"
    image = args.image_dir
    job.extravars = {
        "kvmops_hosts": "hypervisors",
        "kvm_guests_pool": f"{prefix}-pool",
        "kvm_guests_wait_timeout": 240,
        "kvm_guests_defaults": {
            "virt_type": "qemu", "memory": "256MiB", "vcpus": 1, "base_image": f"{image}/base.qcow2",
            "disk_size": "96MiB",
            "boot": {"kernel": f"{image}/vmlinuz", "initrd": f"{image}/initrd.img", "cmdline": "console=ttyS0 quiet"},
        },
        "kvm_guests": [{
            "name": guest,
            "interfaces": [{"network": f"{prefix}-net"}],
            "graphics": {"type": "vnc", "password": planted["vnc password"]},
            "cloud_init": {
                "meta_data": {"local-hostname": guest},
                "user_data": {"write_files": [{"path": "/etc/kvmops-token", "content": planted["user_data"]}]},
            },
        }],
    }
    # Job template "Deploy guests": verbosity 3 (Debug) and Show Changes.
    runner = job.run("deploy_guests.yml", "1", "-vvv --diff")
    events = check_job(job, runner, ident="1", label="job 'Deploy guests' (-vvv --diff)", planted=planted)
    if events is not None:
        stdout = (job.artifacts("1") / "stdout").read_text()
        installed = f"{job.collections}/ansible_collections/kvmops/virt/plugins/modules/kvm_guests.py"
        check(f"Using module file {installed}" in stdout and str(args.repo) + "/plugins" not in stdout,
              "the job ran kvm_guests from the synced collection (requirements_collections/), nothing from the checkout",
              "the job did not use the synced collection's kvm_guests")
        defined = ok_results(events, "Define and start the guests")
        check(defined and defined[0].get("changed") is True and runner.stats["changed"].get("localhost", 0) >= 1,
              "job events hold the kvm_guests result: changed",
              f"no changed kvm_guests result in the job events: {defined}")
        state = virsh("domstate", guest).stdout.strip()
        xml = virsh("dumpxml", "--security-info", guest).stdout
        check(state == "running" and f"passwd='{planted['vnc password']}'" in xml,
              f"{guest} runs with the planted VNC password (virsh dumpxml --security-info)",
              f"{guest}: state {state!r}, VNC password set: {planted['vnc password'] in xml}")
        seeds = [line.split()[-1] for line in virsh("domblklist", "--details", guest).stdout.splitlines()
                 if line.split()[:2] == ["file", "cdrom"]]
        check(any(planted["user_data"].encode() in Path(s).read_bytes() for s in seeds if Path(s).exists()),
              "the guest's cloud-init seed holds the planted user_data",
              f"the planted user_data is not in the seed(s) {seeds}")
    # The same template as job type Check: nothing to change, nothing leaked.
    runner = job.run("deploy_guests.yml", "2", "-vvv --diff --check")
    if check_job(job, runner, ident="2", label="job 'Deploy guests' as job type Check", planted=planted) is not None:
        check(runner.stats["changed"].get("localhost", 0) == 0, "job type Check: changed=0 after the deploy",
              f"job type Check reports changes: {runner.stats['changed']}")
    # The scan finds a secret where one is (env/extravars holds them all).
    where = scan(job.pdd / "env", planted)[1]
    check({name for dummy, name in where} == set(planted), "the scan finds every planted secret in env/extravars",
          f"the scan does not find the planted secrets in env/: {where}")


def uri_credential_job(args, work: Path, ctypes: dict):
    job = Job(work, "uri-credential", 2, args)
    synced, log = job.sync()
    if not synced:
        fail(f"project sync failed:\n{log}")
        return
    injected = inject(ctypes["libvirt URI"], {"uri": "test:///default"}, job.pdd)
    env, extra = injected["env"], injected["extra_vars"]
    job.envvars |= env
    job.extravars = {"kvmops_hosts": "hypervisors", "kvm_host_allow_emulation": True} | extra
    (job.pdd / "project/uri_credential.yml").write_text(yaml.safe_dump([
        {"name": "The shipped check_host: kvm_host_uri from the credential's extra variables",
         "ansible.builtin.import_playbook": "kvmops.virt.check_host"},
        {"name": "A module without uri: LIBVIRT_DEFAULT_URI from the credential's environment",
         "hosts": "hypervisors", "gather_facts": False, "tasks": [
             {"name": "Gather the facts", "kvmops.virt.host_capabilities": {"allow_emulation": True},
              "register": "by_env"},
             {"name": "Check the URI", "ansible.builtin.assert": {
                 "that": ["by_env.ansible_facts.kvm_host.libvirt.uri == 'test:///default'"]}}]}], sort_keys=False))
    runner = job.run("uri_credential.yml", "1", "-v")
    events = check_job(job, runner, "1", "credential type 'libvirt URI'", {})
    if events is not None:
        verdict = json.dumps(ok_results(events, "Show the verdict"))
        check("at test:///default" in verdict and env.get("LIBVIRT_DEFAULT_URI") == "test:///default",
              "credential type 'libvirt URI': check_host used the injected extra variable, host_capabilities "
              "the injected LIBVIRT_DEFAULT_URI (test:///default)",
              f"credential type 'libvirt URI': the verdict does not name test:///default: {verdict[:500]}")


def ssh_credential_job(args, work: Path, ctypes: dict):
    job = Job(work, "ssh-credential", 3, args)
    synced, log = job.sync()
    if not synced:
        fail(f"project sync failed:\n{log}")
        return
    keys = Path(tempfile.mkdtemp(dir=work))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "awx-test", "-f", str(keys / "id")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True)
    # AWX stores a multi-line secret without its final newline; the injector adds it back.
    private = (keys / "id").read_text().rstrip("\n")
    public = (keys / "id.pub").read_text().split()[1]
    known = "kvm1.example.com " + " ".join((keys / "host.pub").read_text().split()[:2])
    injected = inject(ctypes["libvirt SSH"], {"ssh_key": private, "known_hosts": known}, job.pdd)
    env, files = injected["env"], injected["files"]
    shutil.rmtree(keys)
    job.envvars |= env
    (job.pdd / "project/ssh_credential.yml").write_text(yaml.safe_dump([
        {"name": "The files of the libvirt SSH credential", "hosts": "hypervisors", "gather_facts": False,
         "vars": {"keyfile": "{{ lookup('ansible.builtin.env', 'KVMOPS_LIBVIRT_KEYFILE') }}",
                  "known_hosts": "{{ lookup('ansible.builtin.env', 'KVMOPS_LIBVIRT_KNOWN_HOSTS') }}"},
         "tasks": [
             {"name": "ssh reads the key (as libvirt's ssh transport passes it with -i)",
              "ansible.builtin.command": {"argv": ["ssh-keygen", "-y", "-f", "{{ keyfile }}"]},
              "register": "pub", "changed_when": False, "no_log": True},
             {"name": "ssh finds the hypervisor's host key in known_hosts",
              "ansible.builtin.command": {"argv": ["ssh-keygen", "-F", "kvm1.example.com", "-f", "{{ known_hosts }}"]},
              "changed_when": False},
             {"name": "Read the key file's mode", "ansible.builtin.stat": {"path": "{{ keyfile }}"}, "register": "key"},
             {"name": "Check them", "ansible.builtin.assert": {"that": [
                 f"'{public}' in pub.stdout", "key.stat.mode == '0600'", "keyfile.startswith((playbook_dir | dirname) ~ '/env/')"]}},
         ]}], sort_keys=False))
    runner = job.run("ssh_credential.yml", "1", "-vvv")
    if check_job(job, runner, "1", "credential type 'libvirt SSH'", {"private key": private.splitlines()[1]}) is not None:
        check(set(files) == {"key", "known_hosts"} and all(Path(p).parent == job.pdd / "env" for p in files.values()),
              "credential type 'libvirt SSH': key and known_hosts written under env/ (0600), their paths in "
              "KVMOPS_LIBVIRT_KEYFILE / KVMOPS_LIBVIRT_KNOWN_HOSTS; ssh-keygen reads both in the job",
              f"credential type 'libvirt SSH': files {files}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--tarball", type=Path, required=True)
    parser.add_argument("--image-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    # As in the EE: its own ansible-playbook first on PATH (ansible-runner looks it up there).
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    prefix = "kvmops-awx-" + secrets.token_hex(3)
    ctypes = credential_types(args.repo / "docs/awx.md")
    check(set(ctypes) >= {"libvirt URI", "libvirt SSH"} and all(len(t) == 2 for t in ctypes.values()),
          f"docs/awx.md defines the credential types {sorted(ctypes)} (inputs and injectors)",
          f"docs/awx.md: credential types found: {ctypes}")
    try:
        deploy_job(args, args.work, prefix)
        uri_credential_job(args, args.work, ctypes)
        ssh_credential_job(args, args.work, ctypes)
    finally:
        collections = args.work / "deploy/requirements_collections"
        cleanup = play(collections, "cleanup.yml", {"prefix": prefix}) if collections.exists() else None
        left = [line for cmd in (["list", "--all", "--name"], ["net-list", "--all", "--name"], ["pool-list", "--all", "--name"])
                for line in virsh(*cmd).stdout.split() if line.startswith(prefix)]
        check(not left, f"cleanup: nothing named {prefix}-* is left",
              f"cleanup left {left}: {cleanup.stdout[-2000:] if cleanup else ''}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
