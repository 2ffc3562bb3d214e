# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two tests for tests/harness/test_harness.py: one passes, one is skipped (collected only when named)."""
import pytest


def test_harness_sample_passes():
    assert True


@pytest.mark.skip(reason="a sample skip for the harness test")
def test_harness_sample_is_skipped():
    raise AssertionError("never runs")
