# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-level tests driven from pytest against localhost.

pytest-ansible runs the modules; everything that touches it is in this file
(the ``run_module`` fixture), so that it can be replaced by ansible-runner or
a subprocess call without touching the tests. Upstream announced its end of
life for December 2026.
"""
from __future__ import annotations

import pytest


def pytest_configure(config):
    # Run against the implicit localhost with the local connection.
    for option, value in (("ansible_host_pattern", "localhost"), ("ansible_connection", "local"),
                          ("ansible_inventory", "localhost,")):
        if getattr(config.option, option, None) in (None, "", "ansible_inventory"):
            setattr(config.option, option, value)


@pytest.fixture
def run_module(ansible_adhoc):
    """``run_module("kvmops.virt.x", check=False, **args)`` -> the module's result dict."""

    def _run(name, check=False, diff=False, **args):
        hosts = ansible_adhoc(check=check, diff=diff)["localhost"]
        results = getattr(hosts, name)(**args)
        return results["localhost"]

    return _run
