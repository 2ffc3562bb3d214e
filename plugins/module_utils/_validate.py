# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the values every resource shares: object names, MAC
addresses, host names and host interface names.

Each check raises ``InvalidArgument`` naming the option, and returns the
normalized value. No connection, no XML: a pure function of its input.
"""

from __future__ import annotations

import re

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument

# Characters refused in names: XML metacharacters, quotes and control
# characters. The XML model would escape them, but such names break shell
# scripts, virsh and users' tooling, and are never intended.
_BAD_NAME_CHARS = "<>&'\""

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$", re.IGNORECASE)
_IFNAME_RE = re.compile(r"^[^/:\s]{1,15}$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def check_name(name, option="name", what="pool"):
    """A plain object name: refuse empty names, ``/``, ``.``/``..``, NUL or
    control characters, and XML metacharacters and quotes."""
    if name is None or name == "":
        raise InvalidArgument(option, "a %s name must not be empty" % what)
    if name in (".", ".."):
        raise InvalidArgument(option, "'%s' is not a valid %s name" % (name, what))
    if "/" in name:
        raise InvalidArgument(option, "%s name '%s' must be a plain name without '/'" % (what, name))
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(option, "%s name %r must not contain NUL or control characters" % (what, name))
    bad = sorted(set(c for c in name if c in _BAD_NAME_CHARS))
    if bad:
        raise InvalidArgument(
            option, "%s name %r contains characters that are not allowed: %s (XML metacharacters and quotes are refused)" % (what, name, " ".join(bad))
        )
    return name


def check_network_name(name, option="name"):
    """A network name libvirt, dnsmasq and the host's file names all accept:
    a plain name (:func:`check_name`) without white space either."""
    if name is not None and name.strip() != name or any(c.isspace() for c in name or ""):
        raise InvalidArgument(option, "network name %r must not contain white space; use letters, digits, '-', '_' and '.'" % name)
    return check_name(name, option, what="network")


def normalize_mac(value, option="mac"):
    """``52-54-00-AA-BB-CC`` -> ``52:54:00:aa:bb:cc``; malformed, multicast and all-zero MACs raise."""
    text = str(value).strip()
    if not _MAC_RE.match(text):
        hint = ""
        if text.isdigit():
            hint = "; quote MAC addresses in YAML: an unquoted 52:54:00:11:22:33 is read as a number"
        raise InvalidArgument(option, "'%s' is not a valid MAC address (expected six hex pairs such as 52:54:00:12:34:56)%s" % (text, hint))
    mac = text.replace("-", ":").lower()
    if int(mac[:2], 16) & 1:
        raise InvalidArgument(option, "'%s' is a multicast MAC address; a NIC needs a unicast one (even first octet, such as 52:...)" % text)
    if mac == "00:00:00:00:00:00":
        raise InvalidArgument(option, "'%s' is not a usable MAC address" % text)
    return mac


def check_hostname(value, option, allow_dots=True):
    """A DNS host name (dot-separated labels unless ``allow_dots`` is false); returns it without a final dot."""
    text = str(value).strip().rstrip(".") if value is not None else ""
    labels = text.split(".") if allow_dots else [text]
    if not text or len(text) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidArgument(
            option, "%r is not a valid host name (letters, digits and '-' in dot-separated labels of at most 63 characters)" % (value,)
        )
    return text


def is_hostname_label(name):
    """True for one DNS label (a guest name that can serve as its host name as it is)."""
    return bool(_LABEL_RE.match(name or ""))


def check_ifname(value, option):
    """A Linux network interface name (1 to 15 characters, no ``/``, ``:`` or white space); None passes."""
    if value is None:
        return None
    if not _IFNAME_RE.match(value) or value in (".", ".."):
        raise InvalidArgument(
            option, "%r is not a valid Linux network interface name (1 to 15 characters, no '/', ':' or whitespace)" % value
        )
    return value
