# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Structured diffs: before/after dicts keyed by option path.

Managers record each compared value under its option path
(``interfaces[0].model``), and the module returns ``diff`` built from the
differences only. Secrets are recorded as a fixed placeholder so that a diff
says *that* a secret changed and never *what* it is.
"""

from __future__ import annotations

SECRET_PLACEHOLDER = "********"


class DiffTracker:
    """Collects differences between the actual and the desired state."""

    def __init__(self):
        self._entries = []  # (path, before, after) in insertion order
        self._index = {}

    def add(self, path, before, after, secret=False):
        """Record ``path`` going from ``before`` to ``after``.

        Returns True when the two differ. Equal values are not recorded.
        """
        if before == after:
            return False
        if secret:
            before = None if before is None else SECRET_PLACEHOLDER
            after = None if after is None else SECRET_PLACEHOLDER + " (changed)"
        if path in self._index:
            self._entries[self._index[path]] = (path, before, after)
        else:
            self._index[path] = len(self._entries)
            self._entries.append((path, before, after))
        return True

    def compare(self, path, desired, actual, secret=False):
        """Record a change when the user specified ``desired`` and it differs.

        ``None`` means "not specified" and never counts as a change.
        """
        if desired is None:
            return False
        return self.add(path, actual, desired, secret=secret)

    def merge(self, other, prefix=""):
        for path, before, after in other._entries:
            self.add(prefix + path, before, after)

    @property
    def changed(self):
        return bool(self._entries)

    def paths(self):
        return [p for p, _b, _a in self._entries]

    def has(self, path_prefix):
        return any(p == path_prefix or p.startswith(path_prefix + ".") or p.startswith(path_prefix + "[")
                   for p in self.paths())

    def diff(self):
        """The ``diff`` return value for Ansible's diff callback."""
        before = {}
        after = {}
        for path, b, a in self._entries:
            before[path] = b
            after[path] = a
        return {"before": before, "after": after}


def state_diff(before_state, after_state, key="state"):
    """A one-entry tracker for simple state transitions (defined, started...)."""
    tracker = DiffTracker()
    tracker.add(key, before_state, after_state)
    return tracker
