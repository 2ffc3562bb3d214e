# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the cloud-init NoCloud seed builder (no mocks).

ISO images are checked by a small reader in this file and, when they are
installed, by isoinfo/isovfy (genisoimage), xorriso, blkid and a read-only
loop mount.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils import _cloudinit as ci
from ansible_collections.kvmops.virt.plugins.module_utils import _iso9660 as iso
from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument

SECRET = "not-a-real-secret-0815"
USER_DATA = {
    "hostname": "isotest",
    "password": SECRET,
    "chpasswd": {"expire": False},
    "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestingOnly imgtest"],
    "runcmd": [["sh", "-c", "echo 'a: b' # not a comment"], "touch /run/done"],
    "write_files": [{"path": "/etc/motd", "content": "hello\n  world\n", "permissions": "0644"}],
}
NETWORK_V2 = {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
NETWORK_V1 = {"version": 1, "config": [{"type": "physical", "name": "eth0", "subnets": [{"type": "dhcp"}]}]}
BIG = 3 * 1024 * 1024 + 123  # not a multiple of the sector size


def big_content():
    return random.Random(4711).randbytes(BIG)


# --------------------------------------------------------------------------
# A small independent ISO 9660 / Joliet reader
# --------------------------------------------------------------------------

def parse_iso(image):
    """Check the structure of ``image``; return {descriptor type: {volume_id, names, files}}."""
    assert len(image) % 2048 == 0

    def both16(off):
        little, big = struct.unpack_from("<H", image, off)[0], struct.unpack_from(">H", image, off + 2)[0]
        assert little == big, "both-endian 16-bit field at %d differs" % off
        return little

    def both32(off):
        little, big = struct.unpack_from("<I", image, off)[0], struct.unpack_from(">I", image, off + 4)[0]
        assert little == big, "both-endian 32-bit field at %d differs" % off
        return little

    def record(off):
        length = image[off]
        id_len = image[off + 32]
        assert length == 33 + id_len + (1 - id_len % 2)
        assert both16(off + 28) == 1
        return {"extent": both32(off + 2), "size": both32(off + 10), "flags": image[off + 25],
                "id": bytes(image[off + 33:off + 33 + id_len]), "date": bytes(image[off + 18:off + 25])}

    def directory(root):
        assert root["size"] % 2048 == 0
        entries = []
        pos, end = root["extent"] * 2048, (root["extent"] * 2048) + root["size"]
        while pos < end:
            if image[pos] == 0:
                pos = (pos // 2048 + 1) * 2048
                continue
            entry = record(pos)
            assert pos // 2048 == (pos + image[pos] - 1) // 2048, "directory record spans two sectors"
            entries.append(entry)
            pos += image[pos]
        return entries

    descriptors = {}
    sector = 16
    while True:
        vd = image[sector * 2048:(sector + 1) * 2048]
        assert vd[1:7] == b"CD001\x01"
        if vd[0] == 255:
            break
        descriptors[vd[0]] = sector
        sector += 1
    assert set(descriptors) == {1, 2}

    result = {}
    for vtype, sector in descriptors.items():
        base = sector * 2048
        joliet = vtype == 2
        encoding = "utf-16-be" if joliet else "ascii"
        assert image[base + 88:base + 120] == (b"%/E" if joliet else b"").ljust(32, b"\x00")
        assert both32(base + 80) * 2048 == len(image)
        assert (both16(base + 120), both16(base + 124), both16(base + 128)) == (1, 1, 2048)
        pt_size = both32(base + 132)
        l_table = struct.unpack_from("<I", image, base + 140)[0]
        m_table = struct.unpack_from(">I", image, base + 148)[0]
        root = record(base + 156)
        assert root["flags"] == 2 and root["id"] == b"\x00"
        assert image[base + 813:base + 830] == b"1970010100000000\x00"
        # one path table entry: the root, its own parent
        assert pt_size == 10
        assert struct.unpack_from("<BBIH", image, l_table * 2048) == (1, 0, root["extent"], 1)
        assert struct.unpack_from(">BBIH", image, m_table * 2048) == (1, 0, root["extent"], 1)
        entries = directory(root)
        assert [e["id"] for e in entries[:2]] == [b"\x00", b"\x01"]
        assert all(e["extent"] == root["extent"] and e["flags"] == 2 for e in entries[:2])
        files = entries[2:]
        ids = [e["id"] for e in files]
        assert ids == sorted(ids), "directory records are not sorted"
        assert all(e["date"] == bytes((70, 1, 1, 0, 0, 0, 0)) for e in entries)
        names = [e["id"].decode(encoding) for e in files]
        result[vtype] = {
            "volume_id": image[base + 40:base + 72].decode(encoding).rstrip(" "),
            "names": names,
            "files": {n: bytes(image[e["extent"] * 2048:e["extent"] * 2048 + e["size"]]) for n, e in zip(names, files)},
            "extents": {n: e["extent"] for n, e in zip(names, files)},
        }
    # both trees point at the same file data
    assert sorted(result[1]["extents"].values()) == sorted(result[2]["extents"].values())
    assert sorted(result[1]["files"].values()) == sorted(result[2]["files"].values())
    return result


# --------------------------------------------------------------------------
# YAML rendering
# --------------------------------------------------------------------------

def test_yaml_is_sorted_block_style():
    text = ci.to_yaml({"b": [1, {"y": None, "x": True}], "a": {"c": "d"}, "e": {}, "f": []}, "opt")
    # 'y' is a YAML 1.1 boolean: quoted, also as a key
    assert text == 'a:\n  c: d\nb:\n  - 1\n  - x: true\n    "y": null\ne: {}\nf: []\n'


@pytest.mark.parametrize("value", [
    "yes", "No", "ON", "off", "y", "N", "true", "False", "null", "Null", "~", "", " lead", "trail ", "two  spaces",
    "0755", "0o17", "0x1F", "1_000", "1:20", "12e3", ".5", ".inf", "-.inf", ".nan", "NaN", "inf", "2001-12-14", "=", "<<",
    "@at", "`tick", "!tag", "&anchor", "*alias", "|", ">", "%", "- item", "? key", "key: value", "a #comment", "#x",
    "[a]", "{a: b}", "a,b", "'q'", '"dq"', "tab\there", "a\nb", "a\n", "a\n\n", "\nlead", "  indented\nx", "x\n  y\n",
    "x\n \ny", "x \ny", "x\r\ny", "cr\r", "\x00nul", "del\x7f", "c1\x85x", "ls\u2028x", "ps\u2029x", "a\nls\u2028x", "a\nps\u2029x\n", "bom\ufeffx", "\ufffe",
    "emoji \U0001f600", "üñí", "---", "...", "--- x", "a\n---\nb\n", "a\n...\n", "ALL=(ALL) NOPASSWD:ALL",
    "ssh-ed25519 AAAA+/= user@host", "/etc/x", "#cloud-config\n", "x" * 5000, "a\\b", "\\", "\t", "\n", "\n\n",
])
def test_yaml_round_trip_strings(value):
    yaml = pytest.importorskip("yaml")
    data = {"v": value, "l": [value, {"k": value}], value[:900] if value else "empty": 1}
    text = ci.to_yaml(data, "opt")
    assert yaml.safe_load(text) == data


@pytest.mark.parametrize("value", [0, -1, 10 ** 30, 1.5, -0.25, 1e-05, 1e16, 1.0e300, float("inf"), float("-inf"), True, False, None])
def test_yaml_round_trip_scalars(value):
    yaml = pytest.importorskip("yaml")
    data = {"v": value, "l": [value]}
    assert yaml.safe_load(ci.to_yaml(data, "opt")) == data


def test_yaml_nan():
    yaml = pytest.importorskip("yaml")
    loaded = yaml.safe_load(ci.to_yaml({"v": float("nan")}, "opt"))
    assert loaded["v"] != loaded["v"]


def test_yaml_round_trip_generated():
    yaml = pytest.importorskip("yaml")
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4), max_leaves=20)

    @hypothesis.settings(max_examples=400, derandomize=True, deadline=None, database=None)
    @hypothesis.given(st.dictionaries(st.text(max_size=20), values, max_size=5))
    def check(data):
        text = ci.to_yaml(data, "opt")
        assert yaml.safe_load(text) == (data or {})
        assert ci.to_yaml(data, "opt") == text

    check()  # pylint: disable=no-value-for-parameter


@pytest.mark.parametrize("data, where", [
    ({"a": b"bytes"}, "opt.a"),
    ({"a": [1, {"b": {1, 2}}]}, "opt.a[1].b"),
    ({"a": {1: "x"}}, "opt.a"),
    ({"a": "lone \ud800 surrogate"}, "opt.a"),
    ({"k" * 1001: 1}, "opt"),
])
def test_yaml_rejects(data, where):
    with pytest.raises(InvalidArgument) as exc:
        ci.to_yaml(data, "opt")
    assert exc.value.option == where


# --------------------------------------------------------------------------
# render_seed
# --------------------------------------------------------------------------

def test_render_defaults():
    files = ci.render_seed()
    assert list(files) == ["meta-data", "user-data"]
    assert files["user-data"] == b"#cloud-config\n{}\n"
    meta = files["meta-data"].decode()
    assert meta.startswith("instance-id: iid-") and len(meta.splitlines()) == 1
    assert ci.render_seed() == files


def test_render_full():
    yaml = pytest.importorskip("yaml")
    files = ci.render_seed(USER_DATA, {"public-keys": ["k1"]}, NETWORK_V2, hostname="isotest")
    assert list(files) == ["meta-data", "user-data", "network-config"]
    assert files["user-data"].startswith(b"#cloud-config\n")
    assert yaml.safe_load(files["user-data"]) == USER_DATA
    assert yaml.safe_load(files["network-config"]) == NETWORK_V2
    meta = yaml.safe_load(files["meta-data"])
    assert meta["local-hostname"] == "isotest" and meta["public-keys"] == ["k1"]
    assert meta["instance-id"].startswith("iid-") and len(meta["instance-id"]) == 20
    # the instance id does not leak the secret and is reproducible
    assert SECRET not in meta["instance-id"]
    assert ci.render_seed(USER_DATA, {"public-keys": ["k1"]}, NETWORK_V2, hostname="isotest") == files


def test_render_network_v1_and_wrapped():
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(ci.render_seed(network_config=NETWORK_V1)["network-config"]) == NETWORK_V1
    wrapped = {"network": NETWORK_V2}
    assert yaml.safe_load(ci.render_seed(network_config=wrapped)["network-config"]) == wrapped
    assert ci.render_seed(network_config="version: 2\n")["network-config"] == b"version: 2\n"


@pytest.mark.parametrize("text", ["#cloud-config\nhostname: a\n", "#!/bin/sh\necho hi\n", "#include\nhttp://example.invalid/x\n",
                                  "no header at all: passed through\n", "", "ünïcode\n"])
def test_render_user_data_string_is_kept(text):
    assert ci.render_seed(text)["user-data"] == text.encode("utf-8")


def test_render_instance_id_and_hostname_precedence():
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load(ci.render_seed(meta_data={"instance-id": "fixed", "local-hostname": "given"}, hostname="other")["meta-data"])
    assert meta == {"instance-id": "fixed", "local-hostname": "given"}
    # derived instance id follows every file's content
    iids = {yaml.safe_load(ci.render_seed(*args, hostname=host)["meta-data"])["instance-id"]
            for args, host in [((), "a"), ((), "b"), (({"x": 1},), "a"), ((None, {"k": 1}), "a"), ((None, None, NETWORK_V2), "a")]}
    assert len(iids) == 5
    # a fixed instance id is kept when content changes
    for user_data in ({"x": 1}, {"x": 2}):
        assert yaml.safe_load(ci.render_seed(user_data, {"instance-id": "fixed"})["meta-data"])["instance-id"] == "fixed"


@pytest.mark.parametrize("kwargs, option", [
    ({"user_data": 5}, "user_data"),
    ({"user_data": ["x"]}, "user_data"),
    ({"user_data": {"password": b"\xffsecret"}}, "user_data.password"),
    ({"meta_data": "instance-id: x"}, "meta_data"),
    ({"meta_data": {"instance-id": ""}}, "meta_data"),
    ({"network_config": {"ethernets": {}}}, "network_config"),
    ({"network_config": {"version": 3}}, "network_config"),
    ({"network_config": {"version": True}}, "network_config"),
    ({"network_config": ["version: 2"]}, "network_config"),
    ({"hostname": "bad_name"}, "hostname"),
    ({"hostname": "-x"}, "hostname"),
    ({"hostname": ""}, "hostname"),
    ({"hostname": "a" * 64}, "hostname"),
])
def test_render_rejects(kwargs, option):
    with pytest.raises(InvalidArgument) as exc:
        ci.render_seed(**kwargs)
    assert exc.value.option == option
    assert "secret" not in exc.value.msg


def test_errors_never_show_values():
    with pytest.raises(InvalidArgument) as exc:
        ci.render_seed({"users": [{"name": "a", "passwd": SECRET.encode()}]})
    assert exc.value.option == "user_data.users[0].passwd"
    assert SECRET not in str(exc.value) and SECRET not in repr(exc.value.result())


def test_render_without_pyyaml_is_identical():
    """The same bytes whether PyYAML is importable or not, in a fresh interpreter."""
    code = (
        "import sys; sys.modules['yaml'] = None\n"
        "from ansible_collections.kvmops.virt.plugins.module_utils import _cloudinit as ci\n"
        "from ansible_collections.kvmops.virt.plugins.module_utils import _iso9660 as iso\n"
        "f = ci.render_seed({'a': [1, 'x\\ny'], 'b': 'yes'}, {'k': 'v'}, {'version': 2}, 'h')\n"
        "sys.stdout.buffer.write(iso.build_iso(f))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.PIPE).stdout
    files = ci.render_seed({"b": "yes", "a": [1, "x\ny"]}, {"k": "v"}, {"version": 2}, "h")
    assert out == iso.build_iso(files)


# --------------------------------------------------------------------------
# seed_digest
# --------------------------------------------------------------------------

def test_digest():
    files = ci.render_seed(USER_DATA, hostname="isotest")
    digest = ci.seed_digest(files)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert ci.seed_digest(dict(reversed(list(files.items())))) == digest
    assert ci.seed_digest(ci.render_seed(USER_DATA, hostname="isotest")) == digest
    changed = dict(files, **{"user-data": files["user-data"] + b"\n"})
    assert ci.seed_digest(changed) != digest
    renamed = {("x-" + k): v for k, v in files.items()}
    assert ci.seed_digest(renamed) != digest
    # names and contents are framed: moving a byte from one to the other changes the digest
    assert ci.seed_digest({"ab": b"c"}) != ci.seed_digest({"a": b"bc"})
    assert ci.seed_digest({"a": b"", "b": b"x"}) != ci.seed_digest({"a": b"x", "b": b""})
    # not a plain hash of the content
    assert digest != hashlib.sha256(files["user-data"]).hexdigest()
    assert SECRET not in digest


def test_digest_golden():
    """Changing the digest makes every managed guest report a change: do it on purpose only."""
    assert ci.seed_digest({"user-data": b"#cloud-config\n{}\n"}) == GOLDEN_DIGEST


GOLDEN_DIGEST = "f09f5a955eadd50fb38cd76ae2622cec36fe5d3508cc78b40ed672f7b853a074"
GOLDEN_ISO_SHA256 = "eba96184f8d22f544cd9fc68389f61a9644ee098f6dcd76992339291f024949f"


# --------------------------------------------------------------------------
# build_iso: structure, determinism
# --------------------------------------------------------------------------

def seed_files():
    return ci.render_seed(USER_DATA, {"instance-id": "iid-isotest"}, NETWORK_V2, hostname="isotest")


def test_iso_structure():
    files = seed_files()
    image = iso.build_iso(files)
    parsed = parse_iso(image)
    assert parsed[1]["volume_id"] == "cidata" and parsed[2]["volume_id"] == "cidata"
    assert parsed[2]["names"] == ["meta-data", "network-config", "user-data"]
    assert parsed[2]["files"] == files
    assert parsed[1]["names"] == ["META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1"]
    assert image[:16 * 2048] == b"\x00" * (16 * 2048)


def test_iso_deterministic():
    files = seed_files()
    image = iso.build_iso(files)
    assert iso.build_iso(seed_files()) == image
    assert iso.build_iso(dict(reversed(list(files.items())))) == image
    assert hashlib.sha256(image).hexdigest() == GOLDEN_ISO_SHA256
    assert iso.build_iso(dict(files, **{"user-data": files["user-data"] + b"#"})) != image


def test_iso_large_empty_and_many_files():
    files = {"big.bin": big_content(), "empty": b"", "user-data": b"#cloud-config\n{}\n"}
    files.update({"file-with-a-long-name-number-%02d" % i: b"%d\n" % i for i in range(60)})  # root directory > 1 sector
    image = iso.build_iso(files)
    parsed = parse_iso(image)
    assert parsed[2]["files"] == files
    assert len(parsed[1]["names"]) == len(set(parsed[1]["names"])) == len(files)


def test_iso_primary_names_are_unique():
    parsed = parse_iso(iso.build_iso({"user-data": b"1", "user-datb": b"2", "USER_DAT": b"3", ".hidden": b"4"}))
    assert len(set(parsed[1]["names"])) == 4
    assert all(len(n.split(".")[0]) <= 8 for n in parsed[1]["names"])


def test_iso_volume_id_case_is_kept():
    assert parse_iso(iso.build_iso({"a": b"x"}, volume_id="CIDATA"))[2]["volume_id"] == "CIDATA"


@pytest.mark.parametrize("files, volume_id, option", [
    ({"a/b": b""}, "cidata", "files"),
    ({"a:b": b""}, "cidata", "files"),
    ({"a;1": b""}, "cidata", "files"),
    ({"": b""}, "cidata", "files"),
    ({"..": b""}, "cidata", "files"),
    ({"trailing.": b""}, "cidata", "files"),
    ({"x" * 65: b""}, "cidata", "files"),
    ({"emoji\U0001f600": b""}, "cidata", "files"),
    ({"a": "text"}, "cidata", "files"),
    ({1: b""}, "cidata", "files"),
    (["a"], "cidata", "files"),
    ({"a": b""}, "", "volume_id"),
    ({"a": b""}, "x" * 17, "volume_id"),
    ({"a": b""}, "ci data", "volume_id"),
])
def test_iso_rejects(files, volume_id, option):
    with pytest.raises(InvalidArgument) as exc:
        iso.build_iso(files, volume_id=volume_id)
    assert exc.value.option == option


# --------------------------------------------------------------------------
# build_iso checked by external tools
# --------------------------------------------------------------------------

def need(tool):
    path = shutil.which(tool) or next((p for p in ("/usr/sbin/" + tool, "/sbin/" + tool) if os.path.exists(p)), None)
    if not path:
        pytest.skip("%s is not installed" % tool)
    return path


def run(*args, **kwargs):
    return subprocess.run(list(args), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs).stdout


@pytest.fixture(name="iso")
def fixture_iso(tmp_path):
    files = seed_files()
    files["big.bin"] = big_content()
    files["empty"] = b""
    path = tmp_path / "seed.iso"
    path.write_bytes(iso.build_iso(files))
    return path, files


def test_isoinfo(iso):
    isoinfo = need("isoinfo")
    path, files = iso
    info = run(isoinfo, "-d", "-i", str(path)).decode()
    assert "Volume id: cidata\n" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Logical block size is: 2048" in info
    assert "Volume size is: %d\n" % (path.stat().st_size // 2048) in info
    listing = run(isoinfo, "-J", "-l", "-i", str(path)).decode()
    names = [line.split()[-1] for line in listing.splitlines() if line.startswith("-")]
    assert sorted(names) == sorted(files)
    primary = run(isoinfo, "-l", "-i", str(path)).decode()
    assert "USER_DAT.;1" in primary and "META_DAT.;1" in primary
    for name, content in files.items():
        assert run(isoinfo, "-J", "-x", "/" + name, "-i", str(path)) == content, name


def test_isovfy(iso):
    isovfy = need("isovfy")
    out = run(isovfy, str(iso[0])).decode()
    assert "No errors found" in out


def test_xorriso_extract(iso, tmp_path):
    xorriso = need("xorriso")
    path, files = iso
    out = tmp_path / "out"
    result = subprocess.run([xorriso, "-abort_on", "FAILURE", "-return_with", "SORRY", "32", "-osirrox", "on",
                             "-indev", str(path), "-extract", "/", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert "Volume id    : 'cidata'" in result.stderr.decode()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_blkid_label(iso):
    blkid = need("blkid")
    path = str(iso[0])
    assert run(blkid, "-c", "/dev/null", "-o", "value", "-s", "LABEL", path).decode().strip() == "cidata"
    assert run(blkid, "-c", "/dev/null", "-o", "value", "-s", "TYPE", path).decode().strip() == "iso9660"
    assert run(blkid, "-p", "-o", "value", "-s", "LABEL", path).decode().strip() == "cidata"


def test_loop_mount(iso, tmp_path):
    mount = need("mount")
    umount = need("umount")
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    path, files = iso
    target = tmp_path / "mnt"
    target.mkdir()
    result = subprocess.run([mount, "-o", "loop,ro", "-t", "iso9660", str(path), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        with open("/proc/filesystems", encoding="ascii") as handle:
            kernel_has_iso9660 = "iso9660" in handle.read()
        if not kernel_has_iso9660 and b"unknown filesystem type" in result.stderr:
            pytest.skip("this kernel has no iso9660 support (not in /proc/filesystems); the guest boot test mounts the seed instead")
        pytest.fail("mount failed: %s" % result.stderr.decode())
    try:
        assert sorted(os.listdir(target)) == sorted(files)
        for name, content in files.items():
            assert (target / name).read_bytes() == content, name
    finally:
        subprocess.run([umount, str(target)], check=True)


def test_cloud_config_text_that_is_not_yaml_is_refused_without_quoting_it():
    with pytest.raises(InvalidArgument) as e:
        ci.render_seed(user_data="#cloud-config\npassword: KvmopsUnitSecret\nusers: [unclosed\n")
    assert e.value.option == "user_data"
    assert "not valid YAML (line " in e.value.msg
    assert "KvmopsUnitSecret" not in e.value.msg
    # Other kinds of user data are not YAML and stay as they are.
    assert ci.render_seed(user_data="#!/bin/sh\necho [unclosed\n")["user-data"] == b"#!/bin/sh\necho [unclosed\n"
