# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain_host playbook's planning filters: parsing what virsh prints, placing
guests by free memory, the summary lines (pure functions, real virsh output)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleError

from ansible_collections.kvmops.virt.plugins.filter.drain import (
    FilterModule,
    drain_free_mb,
    drain_guests,
    drain_plan,
    drain_summary,
)

DOMSTATS = """Domain: 'web1'
  balloon.current=1048576
  balloon.maximum=2097152
  balloon.last-update=0

Domain: 'db 1'
  balloon.current=131072
  balloon.maximum=131072

Domain: 'tiny'
  balloon.maximum=100000

"""
NODEMEMSTATS = """total  :             24683792 KiB
free   :             24090960 KiB
buffers:                 5236 KiB
cached :               224744 KiB
"""


def test_guests_from_domstats():
    assert drain_guests(DOMSTATS) == [
        {"name": "web1", "memory_mb": 1024},
        {"name": "db 1", "memory_mb": 128},
        {"name": "tiny", "memory_mb": 98},  # rounded up
    ]
    assert drain_guests("") == []


def test_guest_without_balloon_is_an_error():
    with pytest.raises(AnsibleError, match="no balloon size for guest 'x'"):
        drain_guests("Domain: 'x'\n  state.state=1\n")


def test_free_memory_counts_buffers_and_cache():
    assert drain_free_mb(NODEMEMSTATS) == (24090960 + 5236 + 224744) // 1024
    with pytest.raises(AnsibleError, match="printed no free memory"):
        drain_free_mb("error: no such thing")


def test_plan_largest_first_to_the_most_free_memory():
    guests = [{"name": "a", "memory_mb": 512}, {"name": "b", "memory_mb": 2048}, {"name": "c", "memory_mb": 1024}]
    plan = drain_plan(guests, {"kvm2": 3000, "kvm3": 2500})
    assert [(m["guest"], m["target"], m["target_free_mb"]) for m in plan["moves"]] == [
        ("b", "kvm2", 3000),  # the largest first, to the most free memory
        ("c", "kvm3", 2500),  # kvm2 has 952 left now
        ("a", "kvm3", 1476),
    ]
    assert plan["unplaced"] == []
    assert plan["free_after"] == {"kvm2": 952, "kvm3": 964}
    assert plan["lines"][0] == "b (2048 MiB) -> kvm2 (3000 MiB free)"


def test_plan_reports_guests_that_fit_nowhere():
    plan = drain_plan([{"name": "big", "memory_mb": 4096}, {"name": "small", "memory_mb": 64}],
                      [{"name": "kvm2", "free_mb": 4000}])
    assert plan["unplaced"] == [{"name": "big", "memory_mb": 4096}]
    assert [m["guest"] for m in plan["moves"]] == ["small"]
    assert plan["lines"][-1] == "big (4096 MiB) -> nowhere: no target has that much free memory"


def test_plan_keeps_the_reserve_and_breaks_ties_by_inventory_order():
    plan = drain_plan([{"name": "g", "memory_mb": 100}], {"kvm3": 1000, "kvm2": 1000}, reserve_mb=900)
    assert plan["moves"][0]["target"] == "kvm3" and plan["moves"][0]["target_free_mb"] == 100
    plan = drain_plan([{"name": "g", "memory_mb": 101}], {"kvm3": 1000}, reserve_mb="900")
    assert plan["unplaced"] == [{"name": "g", "memory_mb": 101}]


def test_exact_fit_and_no_guests():
    assert drain_plan([{"name": "g", "memory_mb": 100}], {"t": 100})["free_after"] == {"t": 0}
    assert drain_plan([], {"t": 100}) == {"moves": [], "unplaced": [], "free_after": {"t": 100}, "lines": []}


def test_summary_lines():
    results = [
        {"item": {"guest": "a", "target": "kvm2"}, "changed": True,
         "migration": {"seconds": 3.2, "copied_storage": 64 * 1024 * 1024}},
        {"item": {"guest": "b", "target": "kvm3"}, "changed": False, "migration": {"seconds": None}},
        {"item": {"guest": "c", "target": "kvm3"}, "skipped": True},
    ]
    assert drain_summary(results) == ["a -> kvm2: moved in 3.2 s, 64 MiB of disk copied", "b -> kvm3: already there",
                                      "c -> kvm3: skipped"]


def test_filters_are_registered():
    assert sorted(FilterModule().filters()) == ["drain_free_mb", "drain_guests", "drain_plan", "drain_summary"]
