# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._size import human_size, parse_memory_mib, parse_size


@pytest.mark.parametrize("value, expected", [
    (0, 0),
    (1024, 1024),
    ("512MiB", 512 * 1024 ** 2),
    ("2GiB", 2 * 1024 ** 3),
    ("10G", 10 * 1024 ** 3),
    ("10g", 10 * 1024 ** 3),
    ("1.5TiB", int(1.5 * 1024 ** 4)),
    ("1GB", 1000 ** 3),
    ("100 KiB", 100 * 1024),
    ("7", 7),
    ("3B", 3),
])
def test_parse_size_bytes(value, expected):
    assert parse_size(value, "capacity") == expected


@pytest.mark.parametrize("value, expected", [(512, 512), ("512MiB", 512), ("2GiB", 2048), ("1G", 1024), ("1536KiB", 2)])
def test_parse_memory_mib(value, expected):
    assert parse_memory_mib(value) == expected


@pytest.mark.parametrize("value, fragment", [
    (-1, "negative"),
    ("-5G", "negative"),
    ("ten", "cannot parse"),
    ("10 XB", "unknown size unit"),
    ("10Gb", "unknown size unit"),
    ("1.5", "whole number"),
    (True, "boolean"),
    ("", "cannot parse"),
])
def test_parse_size_rejects_bad_input_naming_the_option(value, fragment):
    with pytest.raises(InvalidArgument) as err:
        parse_size(value, "capacity")
    assert err.value.msg.startswith("capacity: ")
    assert fragment in err.value.msg
    assert err.value.option == "capacity"


def test_zero_memory_is_refused():
    with pytest.raises(InvalidArgument, match="memory: memory must be greater than zero"):
        parse_memory_mib(0)


def test_human_size():
    assert human_size(1024 ** 3) == "1GiB"
    assert human_size(3 * 1024 ** 2) == "3MiB"
    assert human_size(1000) == "1000B"
    assert human_size(None) is None
