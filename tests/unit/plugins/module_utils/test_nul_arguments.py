# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A NUL character in any text argument fails naming the option, before
ansible-core's syslog logging of the arguments can fail without naming it."""
from __future__ import annotations

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils._module import _nul_path
from ansible_collections.kvmops.virt.plugins.modules import kvm_guest, storage_volume


@pytest.mark.parametrize("params, path", [
    ({"name": "a\x00b"}, "name"),
    ({"name": "ok", "disks": [{"pool": "p"}, {"pool": "p", "volume": "v\x00"}]}, "disks[1].volume"),
    ({"graphics": {"type": "vnc", "password": "\x00"}}, "graphics.password"),
    ({"name": "ok", "_ansible_check_mode": False, "tags": ["a", "b"]}, None),
])
def test_nul_path(params, path):
    assert _nul_path(params, "") == path


def test_volume_name_with_nul_names_the_option(run_module_main):
    # _ansible_no_log as a real task run passes it: AnsibleModule would log the arguments (and fail in syslog).
    result = run_module_main(storage_volume, name="v\x00.qcow2", pool="default", capacity="1MiB", _ansible_no_log=False)
    assert result["failed"] is True
    assert result["msg"] == "name: must not contain a NUL character"


def test_secret_with_nul_is_not_shown(run_module_main):
    result = run_module_main(kvm_guest, name="g", state="present", graphics={"type": "spice", "password": "KvmopsNul\x00Secret"})
    assert result["msg"] == "graphics.password: must not contain a NUL character"
    assert "KvmopsNul" not in str(result)
