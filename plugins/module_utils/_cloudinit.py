# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloud-init NoCloud seed: render the seed files (the ISO writer is :mod:`_iso9660`).

Pure Python (standard library only): it runs on the managed KVM host, which
may have neither PyYAML nor genisoimage/xorriso.

* :func:`render_seed` renders ``user-data``, ``meta-data`` and, when given,
  ``network-config``.
* :func:`_iso9660.build_iso` packs them into the ISO image (imported only when a
  seed is built, not on every run that compares one).
* :func:`seed_digest` is a one-way digest of the files, for change detection.

Everything is deterministic: the same input gives byte-identical files, ISO
and digest on every host, whatever Python packages the host has. That is why
YAML is written by the small emitter below rather than by PyYAML when it is
present: the output of PyYAML differs between versions (and from a JSON
fallback), and a digest that changes with the host's packages would report
changes that the user never made.

Seeds hold secrets (passwords, keys). Nothing here logs, writes to disk, or
puts a value into an error message; errors name the option and the path
inside it (``user_data.users[0].passwd``) only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from collections.abc import Mapping

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument

try:
    import yaml
except ImportError:  # pragma: no cover - the check is skipped without PyYAML
    yaml = None

USER_DATA = "user-data"
META_DATA = "meta-data"
NETWORK_CONFIG = "network-config"

# ---------------------------------------------------------------------------
# YAML (block style, sorted keys, quoting that is safe for YAML 1.1 and 1.2)
# ---------------------------------------------------------------------------

# Plain (unquoted) scalars: only words that no YAML 1.1 or 1.2 resolver turns
# into anything but a string: a letter, '_' or '/' first (never a digit, sign,
# '.' or indicator), then a small set of characters, single spaces between words.
_PLAIN_RE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+=-]*(?: [A-Za-z0-9_./@+=-]+)*\Z")
# Words that YAML 1.1 reads as booleans or null (PyYAML, which cloud-init uses).
_RESERVED_WORDS = frozenset(("y", "n", "yes", "no", "true", "false", "on", "off", "null"))
# Characters that must be escaped inside a double-quoted scalar, beyond what
# json.dumps escapes: DEL and C1 controls, line/paragraph separators (line
# breaks in YAML 1.1), the byte order mark and the non-characters U+FFFE/U+FFFF.
_DQ_ESCAPE_RE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# Characters a literal block scalar (``|``) may hold as they are.
_LITERAL_BAD_RE = re.compile("[^\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# YAML limits implicit keys to 1024 characters.
_MAX_KEY_LENGTH = 1000


def _plain_ok(text):
    return bool(_PLAIN_RE.match(text)) and text.lower() not in _RESERVED_WORDS


def _double_quoted(text):
    return _DQ_ESCAPE_RE.sub(lambda m: "\\u%04x" % ord(m.group()), json.dumps(text, ensure_ascii=False))


def _check_text(text, where):
    if _SURROGATE_RE.search(text):
        raise InvalidArgument(where, "contains a lone surrogate code point; text must be valid Unicode")
    return text


def _scalar(value, where):
    """One-line representation of a scalar, or ``None`` for a non-scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(float(value))
        if "." not in text:  # 1e-05: YAML 1.1 (PyYAML) needs a '.' to read a float
            text = text.replace("e", ".0e", 1)
        return text
    if isinstance(value, str):
        text = _check_text(str(value), where)
        return text if _plain_ok(text) else _double_quoted(text)
    return None


def _literal_block(text, indent):
    """Lines of a literal block scalar (``|``) for ``text``, or ``None`` if it is unsuitable."""
    if "\n" not in text or _LITERAL_BAD_RE.search(text):
        return None
    body = text.rstrip("\n")
    trailing = len(text) - len(body)
    lines = body.split("\n")
    if not lines[0] or lines[0][0] in " \t":
        return None  # the first line sets the indentation: it must start with text
    if any(line and not line.strip() for line in lines):
        return None  # whitespace-only lines are ambiguous in block scalars
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    pad = " " * indent
    out = [pad + line if line else "" for line in lines]
    out.extend([""] * max(trailing - 1, 0))
    return "|" + chomp, out


def _entry(prefix, value, indent, where):
    """Lines for ``prefix`` (``key:`` or ``-``) followed by ``value``."""
    if isinstance(value, Mapping) and value:
        return [prefix] + _mapping_lines(value, indent + 2, where)
    if isinstance(value, (list, tuple)) and value:
        return [prefix] + _sequence_lines(value, indent + 2, where)
    if isinstance(value, Mapping):
        return [prefix + " {}"]
    if isinstance(value, (list, tuple)):
        return [prefix + " []"]
    if isinstance(value, str):
        block = _literal_block(_check_text(str(value), where), indent + 2)
        if block is not None:
            return [prefix + " " + block[0]] + block[1]
    scalar = _scalar(value, where)
    if scalar is None:
        raise InvalidArgument(where, "unsupported value of type %s; use dicts, lists, strings, numbers, booleans or null" % type(value).__name__)
    return [prefix + " " + scalar]


def _mapping_lines(mapping, indent, where):
    for key in mapping:
        if not isinstance(key, str):
            raise InvalidArgument(where, "mapping keys must be strings, got a key of type %s" % type(key).__name__)
    pad = " " * indent
    lines = []
    for key in sorted(mapping):
        text = _scalar(key, where)
        if len(text) > _MAX_KEY_LENGTH:
            raise InvalidArgument(where, "mapping keys must be at most %d characters long once quoted" % _MAX_KEY_LENGTH)
        lines.extend(_entry(pad + text + ":", mapping[key], indent, "%s.%s" % (where, key)))
    return lines


def _sequence_lines(sequence, indent, where):
    pad = " " * indent
    lines = []
    for index, item in enumerate(sequence):
        item_where = "%s[%d]" % (where, index)
        if isinstance(item, Mapping) and item:
            sub = _mapping_lines(item, indent + 2, item_where)
        elif isinstance(item, (list, tuple)) and item:
            sub = _sequence_lines(item, indent + 2, item_where)
        else:
            lines.extend(_entry(pad + "-", item, indent, item_where))
            continue
        sub[0] = pad + "- " + sub[0][indent + 2:]
        lines.extend(sub)
    return lines


def to_yaml(data, option):
    """Render a mapping as a YAML document (text ending in a newline).

    Keys are sorted; strings are plain only when no YAML 1.1/1.2 reader can
    take them for anything else, multi-line strings become literal blocks,
    everything else is double-quoted. ``option`` names the input in errors.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgument(option, "must be a dict, got %s" % type(data).__name__)
    if not data:
        return "{}\n"
    return "\n".join(_mapping_lines(data, 0, option)) + "\n"


# ---------------------------------------------------------------------------
# Seed files
# ---------------------------------------------------------------------------

_HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")


def _encode(text, option):
    return _check_text(text, option).encode("utf-8")


def _check_cloud_config(text):
    """A ``#cloud-config`` text must be YAML, or cloud-init ignores all of it at boot.

    Checked when PyYAML is there (it is wherever Ansible runs). The message gives
    the position only: user data holds secrets, and YAML errors quote the line.
    """
    if yaml is None or not text.startswith("#cloud-config"):
        return
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        raise InvalidArgument("user_data", "starts with #cloud-config but is not valid YAML%s" % where)


def _render_user_data(user_data):
    if user_data is None:
        return b"#cloud-config\n{}\n"
    if isinstance(user_data, str):
        # used as is: #cloud-config, #!script, #include, MIME multipart, ...
        _check_cloud_config(user_data)
        return _encode(str(user_data), "user_data")
    if isinstance(user_data, Mapping):
        return _encode("#cloud-config\n" + to_yaml(user_data, "user_data"), "user_data")
    raise InvalidArgument("user_data", "must be a dict (cloud-config) or a string, got %s" % type(user_data).__name__)


def _render_network_config(network_config):
    if isinstance(network_config, str):
        return _encode(str(network_config), "network_config")
    if not isinstance(network_config, Mapping):
        raise InvalidArgument("network_config", "must be a dict or a string, got %s" % type(network_config).__name__)
    inner = network_config
    if set(network_config) == {"network"} and isinstance(network_config["network"], Mapping):
        inner = network_config["network"]  # cloud-init also accepts a top-level 'network' key
    version = inner.get("version")
    if isinstance(version, bool) or version not in (1, 2):
        raise InvalidArgument("network_config", "version must be 1 or 2 (cloud-init network config format)")
    return _encode(to_yaml(network_config, "network_config"), "network_config")


def render_seed(user_data=None, meta_data=None, network_config=None, hostname=None):
    """Render the files of a NoCloud seed; returns ``{file name: bytes}``.

    ``user_data``: a dict is written as ``#cloud-config`` YAML; a string is
    used as is (cloud-config, a ``#!`` script, ``#include``, MIME multipart);
    ``None`` gives an empty cloud-config.
    ``meta_data``: a dict, written as YAML. ``local-hostname`` defaults to
    ``hostname``; ``instance-id`` defaults to ``iid-`` and 16 hex digits of
    the digest of all seed files, so it changes (and cloud-init runs its
    per-instance modules again) whenever the seed content changes. Give an
    ``instance-id`` to keep it fixed.
    ``network_config``: a dict (``version`` 1 or 2, optionally under a
    top-level ``network`` key) written as YAML, or a string used as is;
    ``network-config`` is only written when given.
    """
    files = {USER_DATA: _render_user_data(user_data)}
    if network_config is not None:
        files[NETWORK_CONFIG] = _render_network_config(network_config)

    if meta_data is None:
        meta_data = {}
    if not isinstance(meta_data, Mapping):
        raise InvalidArgument("meta_data", "must be a dict, got %s" % type(meta_data).__name__)
    meta = dict(meta_data)
    if hostname is not None:
        if not isinstance(hostname, str) or not _HOSTNAME_RE.match(hostname):
            raise InvalidArgument("hostname", "must be a host name of letters, digits and '-' (dot-separated labels of at most 63 characters)")
        meta.setdefault("local-hostname", hostname)
    if "instance-id" in meta:
        iid = meta["instance-id"]
        if not isinstance(iid, str) or not iid.strip():
            raise InvalidArgument("meta_data", "instance-id must be a non-empty string")
    else:
        basis = dict(files)
        basis[META_DATA] = _encode(to_yaml(meta, "meta_data"), "meta_data")
        meta["instance-id"] = "iid-" + seed_digest(basis)[:16]
    files[META_DATA] = _encode(to_yaml(meta, "meta_data"), "meta_data")
    return {name: files[name] for name in (META_DATA, USER_DATA, NETWORK_CONFIG) if name in files}


# ---------------------------------------------------------------------------
# Digest
# ---------------------------------------------------------------------------

_DIGEST_SALT = b"kvmops.virt cloud-init seed digest v1"
_DIGEST_ITERATIONS = 100000


def check_files(files):
    """``files`` must map file names (str) to contents (bytes); the ISO writer checks the same."""
    if not isinstance(files, Mapping):
        raise InvalidArgument("files", "must be a dict of file name to bytes, got %s" % type(files).__name__)
    for name, content in files.items():
        if not isinstance(name, str):
            raise InvalidArgument("files", "file names must be strings, got %s" % type(name).__name__)
        if not isinstance(content, (bytes, bytearray)):
            raise InvalidArgument("files", "content of '%s' must be bytes, got %s" % (name, type(content).__name__))


def seed_digest(files):
    """One-way digest (64 hex digits) of the file names and contents.

    Independent of the dict's order. It is stored where others can read it
    (domain metadata), so it is not a bare SHA-256 of content that holds
    passwords: the SHA-256 of the framed names and contents is stretched with
    PBKDF2-HMAC-SHA256 (fixed salt, 100000 iterations) to make guessing a
    weak secret from the digest costly. A fixed salt cannot make a weak
    password safe; prefer hashed passwords in user-data.
    """
    check_files(files)
    inner = hashlib.sha256()
    for name in sorted(files):
        encoded = _encode(name, "files")
        content = bytes(files[name])
        inner.update(b"%d:%s\x00%d:" % (len(encoded), encoded, len(content)))
        inner.update(content)
    return hashlib.pbkdf2_hmac("sha256", inner.digest(), _DIGEST_SALT, _DIGEST_ITERATIONS).hex()
