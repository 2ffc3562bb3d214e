# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures for the module tests on libvirt's test:///default driver."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

TEST_URI = "test:///default"


@pytest.fixture
def run_module_main(capsys):
    """``run_module_main(module, check=False, **args)``: run ``module.main()`` against
    test:///default with diff mode on, and return its JSON result."""

    def _run(module, check=False, **args):
        args = dict(args, uri=TEST_URI, _ansible_check_mode=check, _ansible_diff=True)
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                module.main()
        return json.loads(capsys.readouterr().out)

    return _run


@pytest.fixture
def conn(request):
    """A connection to test:///default. Afterwards the guests and the ``default-pool`` volumes named
    with the test module's ``PREFIX`` are removed (test modules with other needs define their own)."""
    libvirt = pytest.importorskip("libvirt")
    prefix = request.module.PREFIX
    c = libvirt.open(TEST_URI)
    yield c
    for dom in c.listAllDomains(0):
        if dom.name().startswith(prefix):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    pool = c.storagePoolLookupByName("default-pool")
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith(prefix):
            vol.delete(0)
    c.close()
