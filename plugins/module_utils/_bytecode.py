# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bytecode cache for this collection's module_utils inside AnsiballZ.

AnsiballZ ships module_utils as Python sources in a zip file, and Python
compiles a source imported from a zip on every import: it never caches that
bytecode. For ``kvm_guest`` that is about 75 ms of every task, more than the
libvirt work. ``enable()`` keeps the compiled code on the managed node instead:

* only modules of this collection's ``module_utils`` that come from a zip file
  are affected; imports from a directory (tests, a development checkout) keep
  Python's own ``__pycache__``;
* an entry is named by the SHA-256 of the source and the interpreter's magic
  number, so a changed collection or another Python never reads stale code;
* the directory is ``~/.cache/kvmops.virt/bytecode`` of the effective user (from
  the password database, not ``$HOME``, which ``become`` may leave pointing at
  another user). It is created with mode 0700 and used only while it is owned
  by that user and writable by nobody else;
* ``KVMOPS_VIRT_BYTECODE_CACHE`` names another directory, or turns the cache
  off with ``off``. With ``PYTHONDONTWRITEBYTECODE`` set, entries are read but
  never written;
* any problem with the cache (unreadable, corrupt, disk full) falls back to
  compiling, as Python would without it. It never fails a task.
"""

from __future__ import annotations

import _imp
import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import stat
import sys
import tempfile
import time
import types
import zipimport

PACKAGE = "ansible_collections.kvmops.virt.plugins.module_utils"
ENV_SETTING = "KVMOPS_VIRT_BYTECODE_CACHE"
OFF_VALUES = ("off", "no", "false", "0", "none")
# Entries written longer ago than this are removed when a new entry is written,
# so that upgrades of the collection do not pile up old bytecode (reading an
# entry does not renew it: a pruned entry in use is compiled again once).
MAX_AGE_SECONDS = 30 * 24 * 3600
ENTRY_SUFFIX = ".kvmops-pyc"


def default_directory():
    """The cache directory of the effective user."""
    import pwd

    home = pwd.getpwuid(os.geteuid()).pw_dir
    return os.path.join(home, ".cache", "kvmops.virt", "bytecode")


def configured_directory(environ=None):
    """The directory from ``KVMOPS_VIRT_BYTECODE_CACHE``, the default, or ``None`` (off)."""
    environ = os.environ if environ is None else environ
    setting = environ.get(ENV_SETTING)
    if setting is None:
        return default_directory()
    setting = setting.strip()
    if not setting or setting.lower() in OFF_VALUES:
        return None
    return setting


def is_private_directory(directory):
    """True when ``directory`` is a real directory of the effective user that only it can write."""
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def prepare_directory(directory, create):
    """Return ``directory`` when the cache may use it, creating it (0700) if asked; else ``None``."""
    if create and not os.path.lexists(directory):
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError:
            return None
    return directory if is_private_directory(directory) else None


def entry_name(source):
    """The file name of the cache entry for ``source`` (bytes) on this interpreter."""
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER + b"\0" + source).hexdigest()
    return digest + ENTRY_SUFFIX


class BytecodeCache:
    """Reads and writes compiled code objects in one private directory."""

    def __init__(self, directory, writable):
        self.directory = directory
        self.writable = writable

    def code_for(self, source, filename):
        """The code object for ``source``, from the cache or freshly compiled (and then stored)."""
        path = os.path.join(self.directory, entry_name(source))
        code = self._read(path)
        if code is None:
            code = compile(source, filename, "exec", dont_inherit=True)
            if self.writable:
                self._write(path, code)
        elif code.co_filename != filename:
            # The entry was compiled under another task's temporary path; point
            # tracebacks at this run's file, as importlib does for .pyc files.
            code = _with_filename(code, filename)
        return code

    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as entry:
                data = entry.read()
        except OSError:
            return None
        magic = importlib.util.MAGIC_NUMBER
        if not data.startswith(magic):
            return None
        try:
            code = marshal.loads(data[len(magic):])
        except (EOFError, ValueError, TypeError):
            return None
        return code if isinstance(code, types.CodeType) else None

    def _write(self, path, code):
        try:
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        except OSError:
            return
        try:
            with os.fdopen(handle, "wb") as entry:
                entry.write(importlib.util.MAGIC_NUMBER + marshal.dumps(code))
            os.replace(temporary, path)
        except OSError:
            _remove(temporary)
            return
        self.prune(keep=path)

    def prune(self, keep=None, now=None):
        """Remove entries (and stray temporary files) older than ``MAX_AGE_SECONDS``."""
        now = time.time() if now is None else now
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            if path == keep or not name.endswith((ENTRY_SUFFIX, ".tmp")):
                continue
            try:
                if now - os.lstat(path).st_mtime > MAX_AGE_SECONDS:
                    os.unlink(path)
            except OSError:
                continue


def _with_filename(code, filename):
    """``code`` and its nested code objects with ``co_filename`` set to ``filename``."""
    fix = getattr(_imp, "_fix_co_filename", None)
    if fix is not None:  # what importlib uses for .pyc files; 500 times faster than rebuilding
        fix(code, filename)
        return code
    if not hasattr(code, "replace"):  # Python < 3.8: tracebacks keep the first run's path
        return code
    constants = tuple(
        _with_filename(constant, filename) if isinstance(constant, type(code)) else constant
        for constant in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=constants)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class CachingZipLoader:
    """Wraps the zipimporter of one module so that its code comes from the cache."""

    def __init__(self, zip_loader, cache):
        self.zip_loader = zip_loader
        self.cache = cache

    def create_module(self, spec):  # pylint: disable=unused-argument
        return None  # the default module object

    def exec_module(self, module):
        spec = module.__spec__
        try:
            source = self.zip_loader.get_data(spec.origin)
        except OSError:  # no source in the archive (only bytecode): what zipimport itself does
            code = self.zip_loader.get_code(spec.name)
        else:
            code = self.cache.code_for(source, spec.origin)
        exec(code, module.__dict__)  # pylint: disable=exec-used

    def is_package(self, fullname):
        return self.zip_loader.is_package(fullname)

    def get_source(self, fullname):
        return self.zip_loader.get_source(fullname)


class ZipBytecodeFinder:
    """A meta path finder for ``PACKAGE`` submodules that puts ``CachingZipLoader`` on zip imports."""

    def __init__(self, cache):
        self.cache = cache

    def find_spec(self, fullname, path=None, target=None):  # pylint: disable=unused-argument
        if not fullname.startswith(PACKAGE + ".") or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            zip_loader = _zip_loader(entry)
            if zip_loader is None:
                continue
            # zipimporter.find_spec would compile the source just to name the
            # file, so look the module up in the archive's listing instead.
            try:
                if zip_loader.is_package(fullname):
                    return None
            except zipimport.ZipImportError:
                continue
            origin = os.path.join(zip_loader.archive, zip_loader.prefix, leaf + ".py")
            spec = importlib.machinery.ModuleSpec(fullname, CachingZipLoader(zip_loader, self.cache), origin=origin)
            spec.has_location = True
            return spec
        return None


def _zip_loader(entry):
    """The zipimporter for a ``__path__`` entry inside a zip file, or ``None``."""
    loader = sys.path_importer_cache.get(entry)
    if isinstance(loader, zipimport.zipimporter):
        return loader
    if loader is not None:
        return None
    try:
        return zipimport.zipimporter(entry)
    except zipimport.ZipImportError:
        return None


def loaded_from_zip():
    """True when this collection's module_utils are being imported from a zip file (AnsiballZ)."""
    return isinstance(getattr(__spec__, "loader", None), (zipimport.zipimporter, CachingZipLoader))


def enable(environ=None):
    """Install the cache for this process (once); return the directory in use, or ``None``.

    Outside AnsiballZ (module_utils imported from a directory) it does nothing.
    """
    if not loaded_from_zip():
        return None
    for finder in sys.meta_path:
        if isinstance(finder, ZipBytecodeFinder):
            return finder.cache.directory
    directory = configured_directory(environ)
    if directory is None:
        return None
    writable = not sys.dont_write_bytecode
    directory = prepare_directory(directory, create=writable)
    if directory is None:
        return None
    sys.meta_path.insert(0, ZipBytecodeFinder(BytecodeCache(directory, writable)))
    return directory
