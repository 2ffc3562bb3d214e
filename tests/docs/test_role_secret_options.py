# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' options that carry secrets are no_log in meta/argument_specs.yml (issue 16):
a failed argument validation must not print a guest's password or user data."""
from __future__ import annotations

import pathlib

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]

# options whose values hold kvm_guest's secret options (graphics.password, cloud_init.user_data)
SECRET_OPTIONS = [("kvm_guests", "kvm_guests"), ("kvm_guests", "kvm_guests_defaults")]


@pytest.mark.parametrize("role,option", SECRET_OPTIONS)
def test_secret_role_options_are_no_log(role, option):
    spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"][option].get("no_log") is True
