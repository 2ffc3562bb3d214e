# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The harness itself: a bad input is caught, reported and leaves the snapshot unchanged."""
from __future__ import annotations

import relhelpers as rh
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


def test_option_match_is_exact_and_ignores_the_supported_parameters_list():
    supported = ("Unsupported parameters for (kvmops.virt.storage_volume) module: nmae. Supported parameters include: "
                 "backing_volume, capacity, format, name, pool, source, state, uri.")
    assert not rh.names_option(supported, "name")
    assert not rh.names_option(supported, "capacity")
    assert rh.names_option(supported, "nmae")
    assert not rh.names_option("hostname: must be letters and digits", "name")
    assert not rh.names_option("interfaces[0].macvtap: no", "interfaces[0].mac")
    assert rh.names_option("interfaces[0].mac: 'zz' is not a valid MAC", "interfaces[0].mac")
    assert not rh.names_option("disks[1].size: bad", "disks")
    assert rh.names_option("the option 'wait_for_ip' applies only with state: running", "wait_for_ip")


def test_snapshot_sees_files_directories_and_bridges(tmp_path):
    from conftest import file_tree, host_bridges
    (tmp_path / "a.img").write_bytes(b"1234")
    before = file_tree([str(tmp_path)])
    (tmp_path / "a.img").write_bytes(b"12")
    (tmp_path / "sub").mkdir()
    after = file_tree([str(tmp_path)])
    assert before[str(tmp_path / "a.img")] == ("file", 4) and after[str(tmp_path / "a.img")] == ("file", 2)
    assert str(tmp_path / "sub") in after and str(tmp_path / "sub") not in before
    assert isinstance(host_bridges(), dict)
