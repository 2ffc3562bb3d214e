# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of the size parser (hypothesis; deterministic, see settings below)."""
from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmops.virt.plugins.module_utils._errors import InvalidArgument
from ansible_collections.kvmops.virt.plugins.module_utils._size import MIB, human_size, parse_memory_mib, parse_size

# Deterministic (the same examples every run) and no deadline: CI machines are slow and shared.
PROPS = settings(derandomize=True, deadline=None, max_examples=200, database=None)

BINARY = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
binary_units = st.sampled_from(sorted(BINARY)).flatmap(
    lambda letter: st.sampled_from([letter, letter.lower(), letter + "iB", letter.lower() + "iB", letter + "i"]).map(
        lambda unit: (unit, 1024 ** BINARY[letter])))
decimal_units = st.sampled_from(sorted(BINARY)).map(lambda letter: (letter + "B", 1000 ** BINARY[letter]))
spaces = st.sampled_from(["", " ", "  "])


@PROPS
@given(number=st.integers(min_value=0, max_value=10 ** 6), unit=st.one_of(binary_units, decimal_units),
       before=spaces, between=spaces, after=spaces)
def test_whole_numbers_with_a_unit(number, unit, before, between, after):
    text, factor = unit
    assert parse_size("%s%d%s%s%s" % (before, number, between, text, after), "capacity") == number * factor


@PROPS
@given(st.integers(min_value=0, max_value=2 ** 62))
def test_integers_are_bytes_and_human_size_parses_back(value):
    assert parse_size(value, "capacity") == value
    assert parse_size(human_size(value), "capacity") == value


@PROPS
@given(st.integers(min_value=1, max_value=2 ** 40))
def test_integer_memory_is_mib(value):
    assert parse_memory_mib(value) == value
    assert parse_memory_mib("%dMiB" % value) == value
    assert parse_memory_mib("%dKiB" % (value * 1024)) == value


@PROPS
@given(st.integers(min_value=1, max_value=2 ** 40))
def test_memory_rounds_up_to_whole_mib(kib):
    assert parse_memory_mib("%dKiB" % kib) == -(-kib * 1024 // MIB)


@PROPS
@given(st.one_of(st.text(max_size=20), st.integers(max_value=-1), st.floats(allow_nan=False, allow_infinity=False),
                 st.booleans()))
@example("-1G")
@example("1.5")
@example("12 parsecs")
@example("\uff11\uff10G")  # fullwidth digits
@example("1e3")
@example("")
def test_anything_parses_to_whole_bytes_or_fails_naming_the_option(value):
    """Any input gives a non-negative whole number of bytes, or InvalidArgument naming the option."""
    try:
        result = parse_size(value, "disks[0].size")
    except InvalidArgument as e:
        assert e.option == "disks[0].size"
        assert e.msg.startswith("disks[0].size: ")
        return
    assert isinstance(result, int) and not isinstance(result, bool)
    assert result >= 0
