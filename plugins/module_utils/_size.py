# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Size parsing shared by every option that takes a size.

Units follow libvirt: a bare letter or an ``iB`` suffix is binary
(``G`` = ``GiB`` = 1024**3), a ``B`` suffix after the letter is decimal
(``GB`` = 1000**3). An integer uses the option's default unit.
"""

from __future__ import annotations

import re

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument

_BINARY = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_SIZE_RE = re.compile(r"^\s*(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*$")

MIB = 1024 * 1024
GIB = 1024 * MIB


def unit_factor(unit):
    """Bytes in one ``unit``; ``None`` for an unknown unit."""
    u = unit.strip()
    if u in ("", "b", "B", "bytes"):
        return 1
    letter = u[0].upper()
    if letter not in _BINARY or letter == "":
        return None
    suffix = u[1:]
    if suffix in ("", "iB", "ib", "i"):
        return 1024 ** _BINARY[letter]
    if suffix in ("B",):
        return 1000 ** _BINARY[letter]
    return None


def parse_size(value, option, default_unit="B"):
    """Return ``value`` in bytes.

    ``value`` is an int (in ``default_unit``) or a string such as ``512MiB``,
    ``2GiB``, ``10G`` or ``1.5TiB``. Negative, fractional bytes, booleans and
    unknown units raise :class:`InvalidArgument` naming ``option``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidArgument(option, "expected a size such as 512MiB or 10G, got a boolean")
    if isinstance(value, int):
        number, unit = value, default_unit
        if number < 0:
            raise InvalidArgument(option, "size must not be negative, got %d" % value)
    elif isinstance(value, float):
        number, unit = value, default_unit
        if value < 0:
            raise InvalidArgument(option, "size must not be negative, got %s" % value)
    else:
        text = str(value)
        if text.strip().startswith("-"):
            raise InvalidArgument(option, "size must not be negative, got '%s'" % text)
        match = _SIZE_RE.match(text)
        if not match:
            raise InvalidArgument(
                option, "cannot parse size '%s': expected a number with an optional unit such as 512MiB, 2GiB or 10G" % text
            )
        number = float(match.group("num")) if "." in match.group("num") else int(match.group("num"))
        unit = match.group("unit") or default_unit
    factor = unit_factor(unit)
    if factor is None:
        raise InvalidArgument(
            option, "unknown size unit '%s' in '%s': use B, KiB, MiB, GiB, TiB (or K, M, G, T; KB, MB, GB, TB for powers of 1000)" % (unit, value)
        )
    total = number * factor
    if isinstance(total, float):
        if total != int(total) and factor == 1:
            raise InvalidArgument(option, "a size in bytes must be a whole number, got '%s'" % value)
        total = int(round(total))
    return total


def parse_memory_mib(value, option="memory"):
    """Memory sizes: integers are MiB; the result is whole MiB (KiB rounded up)."""
    size = parse_size(value, option, default_unit="MiB")
    if size is None:
        return None
    if size <= 0:
        raise InvalidArgument(option, "memory must be greater than zero")
    return -(-size // MIB)


def human_size(num_bytes):
    """``1073741824`` -> ``1GiB``; exact binary units only, else bytes."""
    if num_bytes is None:
        return None
    for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        factor = 1024**power
        if num_bytes and num_bytes % factor == 0:
            return "%d%s" % (num_bytes // factor, unit)
    return "%dB" % num_bytes
