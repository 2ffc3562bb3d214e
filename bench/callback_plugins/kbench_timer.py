# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark timer: writes the play's and each task's wall-clock times to a JSON file.

Used by bench/kbench.py only (enabled through bench/ansible.cfg). The file named by
the environment variable KBENCH_TIMING_FILE receives::

    {"play": seconds from the first play's start to the stats,
     "tasks": [{"name", "seconds", "items"}], "changed": n, "failed": n}

"changed" counts changed results, each loop item on its own.

Task times are measured on the controller from the task's start to its last result,
so they include everything Ansible does for the task (templating, module transfer,
the module process) and nothing of ansible-playbook's start-up.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: kbench_timer
type: aggregate
short_description: Wall-clock times of plays and tasks for the kvmops.virt benchmark
description:
  - Writes the times to the JSON file named by the environment variable E(KBENCH_TIMING_FILE).
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kbench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("KBENCH_TIMING_FILE")
        self._play_start = None
        self._tasks = []
        self._current = None
        self._changed = 0
        self._failed = 0

    def _close_task(self):
        if self._current is not None and self._current.get("end") is not None:
            self._current["seconds"] = self._current["end"] - self._current["start"]
        self._current = None

    def v2_playbook_on_play_start(self, play):
        if self._play_start is None:
            self._play_start = time.monotonic()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self._current = {"name": task.get_name(), "start": time.monotonic(), "end": None, "seconds": None, "items": 0}
        self._tasks.append(self._current)

    def _result(self, result, failed=False):
        if self._current is None:
            return
        self._current["end"] = time.monotonic()
        # A loop's final result only sums up its items, which count one by one.
        if result._result.get("changed") and "results" not in result._result:
            self._changed += 1
        if failed:
            self._failed += 1

    def v2_runner_item_on_ok(self, result):
        if self._current is not None:
            self._current["items"] += 1
        if result._result.get("changed"):
            self._changed += 1

    def v2_runner_on_ok(self, result):
        self._result(result)

    def v2_runner_on_skipped(self, result):
        self._result(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, failed=not ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._result(result, failed=True)

    def v2_playbook_on_stats(self, stats):
        end = time.monotonic()
        self._close_task()
        if not self._path:
            return
        failed = sum(stats.failures.values()) + sum(stats.dark.values()) if hasattr(stats, "failures") else self._failed
        data = {
            "play": end - self._play_start if self._play_start is not None else None,
            "tasks": [{"name": t["name"], "seconds": t["seconds"], "items": t["items"]} for t in self._tasks],
            "changed": self._changed,
            "failed": failed,
        }
        with open(self._path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
