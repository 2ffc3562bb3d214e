"""Print one host's variables from `ansible-inventory --list` JSON (stdin) as plain JSON.

ansible-inventory marks untrusted strings as {"__ansible_unsafe": "..."};
they are unwrapped here. Exits 1 when the host is not listed.
Usage: ansible-inventory -i SOURCE --list | python3 inventory_host.py NAME
"""
from __future__ import annotations

import json
import sys


def plain(value):
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main():
    name = sys.argv[1]
    hostvars = plain(json.load(sys.stdin)).get("_meta", {}).get("hostvars", {})
    if name not in hostvars:
        sys.exit("host %s not listed; hosts: %s" % (name, ", ".join(sorted(hostvars)) or "none"))
    json.dump(hostvars[name], sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
