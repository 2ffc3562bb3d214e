# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils._diff import SECRET_PLACEHOLDER, DiffTracker


def test_unspecified_and_equal_values_are_not_changes():
    diff = DiffTracker()
    assert not diff.compare("memory", None, 1024)
    assert not diff.compare("vcpus", 2, 2)
    assert not diff.changed
    assert diff.diff() == {"before": {}, "after": {}}


def test_changes_are_keyed_by_option_path_in_order():
    diff = DiffTracker()
    diff.compare("memory", 2048, 1024)
    diff.compare("interfaces[0].model", "virtio", "e1000")
    assert diff.changed
    assert diff.paths() == ["memory", "interfaces[0].model"]
    assert diff.diff() == {
        "before": {"memory": 1024, "interfaces[0].model": "e1000"},
        "after": {"memory": 2048, "interfaces[0].model": "virtio"},
    }
    assert diff.has("interfaces")
    assert not diff.has("disks")


def test_secrets_never_reach_the_diff():
    diff = DiffTracker()
    diff.compare("graphics.password", "s3cret-new", "s3cret-old", secret=True)
    rendered = repr(diff.diff())
    assert "s3cret" not in rendered
    assert diff.diff()["before"]["graphics.password"] == SECRET_PLACEHOLDER


def test_merge_with_prefix():
    inner = DiffTracker()
    inner.add("ip", "10.0.0.2", "10.0.0.3")
    outer = DiffTracker()
    outer.merge(inner, prefix="ipv4.hosts[0].")
    assert outer.paths() == ["ipv4.hosts[0].ip"]
