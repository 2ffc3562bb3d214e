# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The harness itself: a bad input is caught, reported and leaves the snapshot unchanged."""
from __future__ import annotations

from conftest import ansible_module, snapshot, snapshot_diff


def test_bad_size_leaves_host_unchanged(prefix, report):
    before = snapshot()
    run = ansible_module("storage_volume", {"name": prefix + "vol", "pool": "default", "capacity": "12 parsecs"})
    report.add("inputs_tried")
    after = snapshot()
    assert run.rc != 0
    assert "capacity" in run.result.get("msg", ""), run.output
    assert not run.has_traceback
    assert snapshot_diff(before, after) == []
