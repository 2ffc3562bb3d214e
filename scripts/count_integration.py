# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count the tests of an ``ansible-test integration`` log, per target.

A target's tests are its tasks: the ``ok``, ``failed`` and ``skipped`` counts
of every ``PLAY RECAP`` host line between its ``Running NAME integration test``
line and the next target's (a runme.sh target runs several playbooks; they
add up). A target that ansible-test lists as failed but whose recaps show no
failed task (a runme.sh that exited non-zero, a syntax error) counts one
failure. Prints ``target NAME: P passed, F failed, S skipped`` per target and
a last line ``P F S`` with the sums.
"""
from __future__ import annotations

import re
import sys

START = re.compile(r"^Running (\S+) integration test (?:role|script)")
RECAP = re.compile(r":\s+ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")
FAILED_LIST = re.compile(r"^ERROR: The \d+ integration test\(s\) listed below \(out of \d+\) failed")


def count(lines):
    targets = {}
    order = []
    current = None
    failed_targets = set()
    in_failed_list = False
    for line in lines:
        line = line.rstrip("\n")
        if in_failed_list:
            name = line.strip()
            if re.match(r"^[a-z0-9_]+$", name):
                failed_targets.add(name)
                continue
            in_failed_list = False
        match = START.match(line)
        if match:
            current = match.group(1)
            if current not in targets:
                targets[current] = [0, 0, 0]
                order.append(current)
            continue
        if FAILED_LIST.match(line):
            in_failed_list = True
            continue
        match = RECAP.search(line)
        if match and current is not None:
            ok, unreachable, failed, skipped = (int(g) for g in match.groups())
            counts = targets[current]
            counts[0] += ok
            counts[1] += failed + unreachable
            counts[2] += skipped
    for name in failed_targets:
        if name not in targets:
            targets[name] = [0, 0, 0]
            order.append(name)
        if targets[name][1] == 0:
            targets[name][1] = 1
    return [(name, targets[name]) for name in order]


def main(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        results = count(f)
    total = [0, 0, 0]
    for name, (p, f, s) in results:
        print("target %s: %d passed, %d failed, %d skipped" % (name, p, f, s))
        total = [total[0] + p, total[1] + f, total[2] + s]
    print("%d %d %d" % tuple(total))


if __name__ == "__main__":
    main(sys.argv[1])
