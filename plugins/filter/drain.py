# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planning of the drain_host playbook, as filters: pure functions of what
``virsh domstats`` and ``virsh nodememstats`` print.

``drain_guests(text)``: the running guests of ``virsh domstats --list-running
--balloon`` as ``[{"name", "memory_mb"}]``. ``drain_free_mb(text)``: the memory a
host can give guests from ``virsh nodememstats`` (free + buffers + cached, MiB).
``drain_plan(guests, targets, reserve_mb)``: each guest, largest first, to the
target with the most free memory that can hold it (``targets``: ``{name: free_mb}``,
what is placed is taken off); returns ``{"moves": [{"guest", "memory_mb",
"target", "target_free_mb"}], "unplaced": [{"name", "memory_mb"}], "free_after",
"lines"}`` (``lines``: the plan in words). ``drain_summary(results)``: a line
per migration of the playbook's ``kvm_migrate`` loop.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleError

_DOMAIN = re.compile(r"^Domain: '(.*)'$")
_FIELD = re.compile(r"^\s*([A-Za-z0-9_.]+)=(.*)$")
_MEMSTAT = re.compile(r"^\s*(\w+)\s*:\s*(\d+)\s*KiB\s*$")


def drain_guests(text):
    """``[{"name", "memory_mb"}]`` from ``virsh domstats --balloon`` (current balloon size, else maximum)."""
    guests = []
    current = None
    for line in (text or "").splitlines():
        match = _DOMAIN.match(line.strip())
        if match:
            current = {"name": match.group(1), "stats": {}}
            guests.append(current)
            continue
        match = _FIELD.match(line)
        if match and current is not None:
            current["stats"][match.group(1)] = match.group(2)
    result = []
    for guest in guests:
        kib = guest["stats"].get("balloon.current") or guest["stats"].get("balloon.maximum")
        if kib is None:
            raise AnsibleError("drain_guests: virsh domstats printed no balloon size for guest '%s'" % guest["name"])
        result.append({"name": guest["name"], "memory_mb": -(-int(kib) // 1024)})
    return result


def drain_free_mb(text):
    """Free + buffers + cached memory in MiB from ``virsh nodememstats``."""
    values = {}
    for line in (text or "").splitlines():
        match = _MEMSTAT.match(line)
        if match:
            values[match.group(1)] = int(match.group(2))
    if "free" not in values:
        raise AnsibleError("drain_free_mb: virsh nodememstats printed no free memory: %r" % text)
    return (values["free"] + values.get("buffers", 0) + values.get("cached", 0)) // 1024


def drain_plan(guests, targets, reserve_mb=0):
    """Place each guest, the largest first, on the target with the most free memory that holds it.

    ``targets``: ``{name: free_mb}`` (in the inventory's order) or ``[{"name", "free_mb"}]``; each target
    keeps ``reserve_mb`` free. Ties go to the target listed first.
    """
    if isinstance(targets, dict):
        targets = [{"name": name, "free_mb": free} for name, free in targets.items()]
    order = [t["name"] for t in targets]
    free = dict((t["name"], max(0, int(t["free_mb"]) - int(reserve_mb or 0))) for t in targets)
    moves, unplaced = [], []
    for guest in sorted(guests, key=lambda g: (-int(g["memory_mb"]), g["name"])):
        need = int(guest["memory_mb"])
        fits = [name for name in order if free[name] >= need]
        if not fits:
            unplaced.append({"name": guest["name"], "memory_mb": need})
            continue
        target = max(fits, key=lambda name: (free[name], -order.index(name)))
        moves.append({"guest": guest["name"], "memory_mb": need, "target": target, "target_free_mb": free[target]})
        free[target] -= need
    lines = ["%s (%d MiB) -> %s (%d MiB free)" % (m["guest"], m["memory_mb"], m["target"], m["target_free_mb"])
             for m in moves]
    lines += ["%s (%d MiB) -> nowhere: no target has that much free memory" % (u["name"], u["memory_mb"])
              for u in unplaced]
    return {"moves": moves, "unplaced": unplaced, "free_after": free, "lines": lines}


def drain_summary(results):
    """One line per ``kvm_migrate`` result of the playbook's loop (``item``: a move of :func:`drain_plan`)."""
    lines = []
    for result in results or []:
        move = result.get("item") or {}
        migration = result.get("migration") or {}
        head = "%s -> %s: " % (move.get("guest"), move.get("target"))
        if result.get("skipped"):
            lines.append(head + "skipped")
        elif not result.get("changed"):
            lines.append(head + "already there")
        else:
            text = "moved in %s s" % migration.get("seconds")
            if migration.get("copied_storage"):
                text += ", %d MiB of disk copied" % (int(migration["copied_storage"]) // (1024 * 1024))
            lines.append(head + text)
    return lines


class FilterModule:
    """The drain_host playbook's planning filters."""

    def filters(self):
        return {"drain_guests": drain_guests, "drain_free_mb": drain_free_mb, "drain_plan": drain_plan,
                "drain_summary": drain_summary}
