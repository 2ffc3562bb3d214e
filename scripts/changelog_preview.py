"""Render CHANGELOG.rst with antsibull-changelog in a disposable copy of the collection.

usage: changelog_preview.py COPY_DIR

COPY_DIR must be a throw-away copy of the repository: this runs what a
release runs there. Until a version is released, its changes live only in
changelogs/fragments/; ``antsibull-changelog release`` moves them into
changelogs/changelog.yaml (deleting the fragments, keep_fragments is false)
and writes CHANGELOG.rst. Doing that in the source tree would release
the version, so it is done in the copy:

- galaxy.yml's version not yet in changelogs/changelog.yaml (unreleased, as
  0.1.0 is now): ``antsibull-changelog release --version VERSION`` in the copy;
- already released: ``antsibull-changelog generate`` (renders changelog.yaml).

Then it checks that CHANGELOG.rst contains the text of every entry of every
fragment (all but the ``trivial`` section, which is never rendered).
antsibull-changelog must be on PATH (the docs venv).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml

NOT_RENDERED = {"trivial"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def norm(text):
    return re.sub(r"\s+", " ", text).strip()


def texts(entry):
    """What CHANGELOG.rst must show of a fragment entry: its text, or for a new plugin
    (``add plugin.module: [{name, description, namespace}]``) its name and description."""
    if isinstance(entry, dict):
        return [entry["name"], entry["description"]]
    return [entry]


def fragment_entries(fragments_dir):
    entries = []
    for name in sorted(os.listdir(fragments_dir)):
        if not name.endswith((".yml", ".yaml")):
            continue
        data = load(os.path.join(fragments_dir, name)) or {}
        for section, value in data.items():
            if section in NOT_RENDERED:
                continue
            for item in value if isinstance(value, list) else [value]:
                entries.append((name, section, item))
    return entries


def main(copy_dir):
    os.chdir(copy_dir)
    version = str(load("galaxy.yml")["version"])
    changes = load("changelogs/changelog.yaml") if os.path.exists("changelogs/changelog.yaml") else {}
    released = version in ((changes or {}).get("releases") or {})
    entries = fragment_entries("changelogs/fragments") if os.path.isdir("changelogs/fragments") else []
    if released:
        cmd = ["antsibull-changelog", "generate"]
        if entries:
            print("changelog: %s is released but fragments are pending; they will appear in the next release" % version)
    else:
        cmd = ["antsibull-changelog", "release", "--version", version]
    print("changelog: %s (in %s)" % (" ".join(cmd), copy_dir))
    subprocess.run(cmd, check=True)
    with open("CHANGELOG.rst", encoding="utf-8") as f:
        rendered = norm(f.read())
    if released:
        return 0
    missing = [(n, s, e) for n, s, e in entries if not all(norm(t) in rendered for t in texts(e))]
    for name, section, entry in missing:
        print("changelog: %s (%s) is missing from CHANGELOG.rst: %s" % (name, section, " - ".join(texts(entry))[:80]),
              file=sys.stderr)
    if missing:
        return 1
    print("changelog: CHANGELOG.rst for %s has all %d entries of the fragments" % (version, len(entries)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
