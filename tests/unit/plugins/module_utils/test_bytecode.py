# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module_utils bytecode cache, exercised the way AnsiballZ uses it.

Every test builds a real zip file laid out like an AnsiballZ payload (the real
``_bytecode.py`` plus a small probe module) and imports from it in a fresh
Python process, so the zipimporter, the meta path finder and the files on disk
are all the real ones.
"""
from __future__ import annotations

import importlib.util
import json
import marshal
import os
import subprocess
import sys
import time
import zipfile

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils import _bytecode

PACKAGE_DIR = "ansible_collections/kvmops/virt/plugins/module_utils"
PROBE_SOURCE = b'''
VALUE = "compiled from the zip"


def fail():
    raise RuntimeError("probe failure")
'''

# Runs inside the child process: enable the cache, import the probe, report.
CHILD = r'''
import json, sys, traceback
sys.path.insert(0, sys.argv[1])
from ansible_collections.kvmops.virt.plugins.module_utils import _bytecode
directory = _bytecode.enable()
from ansible_collections.kvmops.virt.plugins.module_utils import _probe
try:
    _probe.fail()
except RuntimeError:
    frame_file = traceback.extract_tb(sys.exc_info()[2])[-1].filename
print(json.dumps({
    "directory": directory,
    "value": _probe.VALUE,
    "loader": type(_probe.__loader__).__name__,
    "traceback_file": frame_file,
    "finders": [type(f).__name__ for f in sys.meta_path],
}))
'''


def build_payload(path, probe_source=PROBE_SOURCE):
    """A zip laid out like AnsiballZ's module_utils payload."""
    with open(_bytecode.__file__, "rb") as source:
        bytecode_source = source.read()
    with zipfile.ZipFile(path, "w") as payload:
        for package in ("ansible_collections", "ansible_collections/kvmops", "ansible_collections/kvmops/virt",
                        "ansible_collections/kvmops/virt/plugins", PACKAGE_DIR):
            payload.writestr(package + "/__init__.py", b"")
        payload.writestr(PACKAGE_DIR + "/_bytecode.py", bytecode_source)
        payload.writestr(PACKAGE_DIR + "/_probe.py", probe_source)
    return str(path)


def run_child(payload, cache=None, **env_changes):
    """Run CHILD against ``payload``; return its report."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", _bytecode.ENV_SETTING)}
    if cache is not None:
        env[_bytecode.ENV_SETTING] = str(cache)
    env.update(env_changes)
    proc = subprocess.run([sys.executable, "-c", CHILD, payload], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def entries(cache):
    return sorted(name for name in os.listdir(cache) if name.endswith(_bytecode.ENTRY_SUFFIX))


def write_entry(cache, source, code):
    path = os.path.join(str(cache), _bytecode.entry_name(source))
    with open(path, "wb") as entry:
        entry.write(importlib.util.MAGIC_NUMBER + marshal.dumps(code))
    return path


@pytest.fixture
def payload(tmp_path):
    return build_payload(tmp_path / "ansible_modlib.zip")


def test_first_import_compiles_and_stores_the_entry(payload, tmp_path):
    cache = tmp_path / "cache"
    report = run_child(payload, cache)
    assert report["directory"] == str(cache)
    assert report["value"] == "compiled from the zip"
    assert report["loader"] == "CachingZipLoader"
    assert entries(cache) == [_bytecode.entry_name(PROBE_SOURCE)]
    assert oct(os.stat(cache).st_mode & 0o777) == "0o700"


def test_a_stored_entry_is_what_the_next_process_runs(payload, tmp_path):
    cache = tmp_path / "cache"
    run_child(payload, cache)
    # Replace the entry with other code: if the child runs it, the cache was read.
    write_entry(cache, PROBE_SOURCE, compile('VALUE = "read from the cache"\ndef fail():\n    raise RuntimeError()\n',
                                             "elsewhere.py", "exec"))
    assert run_child(payload, cache)["value"] == "read from the cache"


def test_changed_source_gets_a_new_entry(payload, tmp_path):
    cache = tmp_path / "cache"
    run_child(payload, cache)
    changed = PROBE_SOURCE.replace(b"compiled from the zip", b"version two")
    other = build_payload(tmp_path / "other.zip", changed)
    assert run_child(other, cache)["value"] == "version two"
    assert entries(cache) == sorted([_bytecode.entry_name(PROBE_SOURCE), _bytecode.entry_name(changed)])


def test_tracebacks_name_this_runs_file(payload, tmp_path):
    cache = tmp_path / "cache"
    run_child(payload, cache)
    second = build_payload(tmp_path / "second.zip")
    report = run_child(second, cache)
    assert report["traceback_file"] == os.path.join(second, PACKAGE_DIR, "_probe.py")


@pytest.mark.parametrize("content", [b"", b"not bytecode", importlib.util.MAGIC_NUMBER + b"\x00truncated",
                                     importlib.util.MAGIC_NUMBER + marshal.dumps(("not", "code"))],
                         ids=["empty", "no-magic", "truncated", "not-a-code-object"])
def test_a_corrupt_entry_is_recompiled_and_replaced(payload, tmp_path, content):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    path = os.path.join(str(cache), _bytecode.entry_name(PROBE_SOURCE))
    with open(path, "wb") as entry:
        entry.write(content)
    assert run_child(payload, cache)["value"] == "compiled from the zip"
    with open(path, "rb") as entry:
        assert entry.read().startswith(importlib.util.MAGIC_NUMBER)
    assert run_child(payload, cache)["value"] == "compiled from the zip"


@pytest.mark.parametrize("setting", ["off", "OFF", "no", "0", ""])
def test_it_can_be_turned_off(payload, tmp_path, setting):
    report = run_child(payload, **{_bytecode.ENV_SETTING: setting})
    assert report["directory"] is None
    assert report["loader"] == "zipimporter"
    assert "ZipBytecodeFinder" not in report["finders"]


def test_a_directory_others_can_write_is_not_used(payload, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    report = run_child(payload, cache)
    assert report["directory"] is None
    assert report["loader"] == "zipimporter"
    assert entries(cache) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
def test_a_directory_of_another_user_is_not_used(payload, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    report = run_child(payload, cache)
    assert report["directory"] is None
    assert entries(cache) == []


def test_a_symlinked_directory_is_not_used(payload, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert run_child(payload, link)["directory"] is None
    assert entries(real) == []


def test_dont_write_bytecode_reads_but_never_writes(payload, tmp_path):
    cache = tmp_path / "cache"
    report = run_child(payload, cache, PYTHONDONTWRITEBYTECODE="1")
    assert report["value"] == "compiled from the zip"
    assert not cache.exists() or entries(cache) == []
    cache.mkdir(mode=0o700, exist_ok=True)
    write_entry(cache, PROBE_SOURCE, compile('VALUE = "read"\ndef fail():\n    raise RuntimeError()\n', "x.py", "exec"))
    assert run_child(payload, cache, PYTHONDONTWRITEBYTECODE="1")["value"] == "read"


def test_a_directory_that_cannot_be_created_turns_it_off(payload, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    report = run_child(payload, blocker / "cache")
    assert report["directory"] is None
    assert report["value"] == "compiled from the zip"


def test_imports_from_a_directory_are_left_to_python(tmp_path):
    # This test process imports module_utils from the checkout, not from a zip.
    before = list(sys.meta_path)
    assert _bytecode.enable({_bytecode.ENV_SETTING: str(tmp_path / "cache")}) is None
    assert sys.meta_path == before
    assert not (tmp_path / "cache").exists()


def test_old_entries_are_pruned_when_a_new_one_is_written(payload, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    stale = write_entry(cache, b"# old collection version\n", compile("", "old.py", "exec"))
    recent = write_entry(cache, b"# recent\n", compile("", "recent.py", "exec"))
    unrelated = cache / "notes.txt"
    unrelated.write_text("not ours")
    month_ago = time.time() - _bytecode.MAX_AGE_SECONDS - 60
    os.utime(stale, (month_ago, month_ago))
    os.utime(unrelated, (month_ago, month_ago))
    run_child(payload, cache)
    assert not os.path.exists(stale)
    assert os.path.exists(recent)
    assert unrelated.exists()
    assert _bytecode.entry_name(PROBE_SOURCE) in entries(cache)


def test_the_default_directory_is_the_effective_users_not_home(monkeypatch):
    import pwd

    monkeypatch.setenv("HOME", "/nonexistent/other-user")
    expected = os.path.join(pwd.getpwuid(os.geteuid()).pw_dir, ".cache", "kvmops.virt", "bytecode")
    assert _bytecode.default_directory() == expected
    assert _bytecode.configured_directory({}) == expected


def _code_objects(code):
    yield code
    for constant in code.co_consts:
        if isinstance(constant, type(code)):
            yield from _code_objects(constant)


@pytest.mark.parametrize("private_helper", [True, False], ids=["_imp._fix_co_filename", "code.replace"])
def test_every_nested_code_object_gets_the_new_filename(monkeypatch, private_helper):
    if not private_helper:
        monkeypatch.setattr(_bytecode, "_imp", object())  # an interpreter without the private helper
    code = compile("class A:\n    def f(self):\n        return lambda: 1\n", "first-run.py", "exec")
    fixed = _bytecode._with_filename(code, "this-run.py")
    names = {c.co_filename for c in _code_objects(fixed)}
    assert names == {"this-run.py"}
    assert len(list(_code_objects(fixed))) == 4


def _module_files():
    modules_dir = os.path.join(os.path.dirname(os.path.dirname(_bytecode.__file__)), "modules")
    return sorted(os.path.join(modules_dir, n) for n in os.listdir(modules_dir) if n.endswith(".py") and n != "__init__.py")


@pytest.mark.parametrize("path", _module_files(), ids=os.path.basename)
def test_every_module_enables_the_cache_before_its_other_module_utils(path):
    import ast

    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    enable_line = None
    for node in tree.body:
        if isinstance(node, ast.Expr) and ast.unparse(node) == "_bytecode.enable()":
            enable_line = node.lineno
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(_bytecode.PACKAGE):
            if [a.name for a in node.names] == ["_bytecode"] and node.module == _bytecode.PACKAGE:
                continue
            assert enable_line is not None, "%s imports %s before _bytecode.enable()" % (os.path.basename(path), node.module)
    assert enable_line is not None
