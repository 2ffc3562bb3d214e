# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/test.sh tells the truth (issue 16): it counts tests, not stages;
a misspelt stage or a stage that runs nothing fails; skips are reported;
shell runners use pipefail."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import count_integration  # noqa: E402  pylint: disable=wrong-import-position,import-error


def _test_sh(tmp_path, *args):
    env = dict(os.environ, KVMOPS_SKIP_SETUP="1", KVMOPS_LOG_DIR=str(tmp_path))
    proc = subprocess.run(["bash", str(REPO / "scripts" / "test.sh")] + list(args), cwd=str(REPO), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout


def test_a_misspelt_stage_fails(tmp_path):
    rc, out = _test_sh(tmp_path, "integratoin")
    assert rc != 0
    assert "unknown stage 'integratoin'" in out


def test_a_stage_that_runs_no_test_fails(tmp_path):
    rc, out = _test_sh(tmp_path, "module_runs", "-k", "kvmops_no_test_has_this_name")
    assert rc != 0, out
    assert out.rstrip().splitlines()[-1].startswith("total: 0 passed, 1 failed"), out


def test_skipped_tests_are_in_the_summary(tmp_path):
    rc, out = _test_sh(tmp_path, "module_runs", str(REPO / "tests" / "harness" / "harness_samples" / "test_harness_sample.py"),
                       "-k", "harness_sample")
    assert rc == 0, out
    assert out.rstrip().splitlines()[-1] == "total: 1 passed, 0 failed, 1 skipped", out


SAMPLE_LOG = """\
Running host_capabilities integration test role
PLAY RECAP *********************************************************************
testhost                   : ok=13   changed=0    unreachable=0    failed=0    skipped=1    rescued=0    ignored=2
Running kvm_host integration test script
PLAY RECAP *********************************************************************
localhost                  : ok=5    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
PLAY RECAP *********************************************************************
localhost                  : ok=7    changed=1    unreachable=0    failed=1    skipped=2    rescued=0    ignored=0
Running storage_pool integration test role
PLAY RECAP *********************************************************************
testhost                   : ok=40   changed=3    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
Running virtio_network integration test role
ERROR: The 2 integration test(s) listed below (out of 4) failed. See error output above for details:
kvm_host
virtio_network
"""


def test_integration_counts_tasks_per_target_and_every_failed_target():
    results = dict(count_integration.count(SAMPLE_LOG.splitlines(True)))
    assert results == {
        "host_capabilities": [13, 0, 1],
        "kvm_host": [12, 1, 2],
        "storage_pool": [40, 0, 0],
        "virtio_network": [0, 1, 0],  # failed before any recap: one failure, not zero
    }


# scripts/lib.sh is left out: it is sourced by scripts that set pipefail themselves.
@pytest.mark.parametrize("script", sorted(str(p.relative_to(REPO)) for p in REPO.glob("**/*.sh")
                                          if ".cache" not in p.parts and "output" not in p.parts and ".venv" not in str(p)
                                          and str(p.relative_to(REPO)) != "scripts/lib.sh"))
def test_shell_runners_use_pipefail(script):
    text = (REPO / script).read_text()
    assert "pipefail" in text, script
