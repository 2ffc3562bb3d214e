#!/usr/bin/env bash
# `check && ok "..." || fail "..."`: ok and fail only print and always succeed.
# shellcheck disable=SC2015
# Build and check the kvmops.virt documentation, offline.
#   1. antsibull-docs lint-collection-docs --plugin-docs .   (must be clean)
#   2. CHANGELOG.rst rendered by antsibull-changelog from the fragments, in a
#      throw-away copy (scripts/changelog_preview.py explains why a copy)
#   3. the HTML site: antsibull-docs sphinx-init + collection (--use-current,
#      --fail-on-error) for the module, inventory and role reference, the
#      Markdown user guide docs/*.md (myst-parser, scripts/docs_site.py), the
#      changelog; sphinx-build -W --keep-going (every warning fails the build)
# Output: docs/_build/html/index.html and docs/_build/CHANGELOG.rst
# (docs/_build is git-ignored; each run builds from scratch). Tools come from
# .venv-docs (requirements-docs.txt, made by scripts/setup.sh;
# KVMOPS_DOCS_VENV overrides).
#
# Offline: Sphinx cannot fetch intersphinx inventories here (docs.python.org,
# docs.ansible.com), so the mapping is empty. The only warnings that causes are
# references into the Ansible docsite, listed exactly in nitpick_ignore_regex
# below; every other warning still fails the build.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${KVMOPS_DOCS_VENV:-$REPO/.venv-docs}"
[ -x "$VENV/bin/antsibull-docs" ] && [ -x "$VENV/bin/sphinx-build" ] \
  || { echo "build-docs: $VENV is missing its tools; run scripts/setup.sh" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"
export ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=False

# --use-current documents the collection as ansible-doc finds it: make the
# first collection path hold this checkout (test.sh makes the same link).
export ANSIBLE_COLLECTIONS_PATH="${ANSIBLE_COLLECTIONS_PATH:-$REPO/.cache/collections}"
LINK="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvmops/virt"
if [ "$(readlink -f "$LINK" 2>/dev/null)" != "$REPO" ]; then
  if [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
    echo "build-docs: $LINK exists and is not this checkout; set ANSIBLE_COLLECTIONS_PATH" >&2; exit 1
  fi
  mkdir -p "$(dirname "$LINK")"
  ln -sfn "$REPO" "$LINK"
fi

# Each run works in its own temporary directory, outside the collection (so
# concurrent runs neither clobber each other nor show up in each other's
# collection copies), and moves its results to docs/_build at the end.
OUT="$REPO/docs/_build"
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/kvmops-docs.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT

echo "==> antsibull-docs lint-collection-docs --plugin-docs ."
antsibull-docs lint-collection-docs --plugin-docs .

echo "==> changelog (${SECONDS}s)"
COPY="$BUILD/changelog-copy"
mkdir -p "$COPY"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # what git tracks, plus new files that are not ignored (like scripts/test.sh's copy)
  git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
    | tar --null -cf - -T - | tar -xf - -C "$COPY"
else
  tar -cf - --exclude=./.git --exclude='./.venv*' --exclude=./.cache --exclude=./docs/_build \
    --exclude=./tests/output --exclude=./collections . | tar -xf - -C "$COPY"
fi
(unset ANSIBLE_COLLECTIONS_PATH; "$VENV/bin/python" scripts/changelog_preview.py "$COPY")
cp "$COPY/CHANGELOG.rst" "$BUILD/CHANGELOG.rst"
rm -rf "$COPY"

echo "==> site (${SECONDS}s)"
SITE="$BUILD/site"
mkdir -m 700 "$SITE"   # antsibull-docs wants a directory only its owner can write
REPOSITORY_URL="$("$VENV/bin/python" -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["repository"])')"
antsibull-docs sphinx-init --use-current --no-indexes --fail-on-error \
  --dest-dir "$SITE" --project kvmops.virt --title "kvmops.virt" \
  --copyright "kvmops.virt contributors" kvmops.virt >/dev/null
rm -f "$SITE/rst/index.rst" "$SITE/build.sh" "$SITE/requirements.txt" "$SITE/.gitignore"
cat >> "$SITE/conf.py" <<'PY'

# ---- kvmops.virt (scripts/build-docs.sh) -----------------------------------
# The user guide is Markdown.
extensions.append('myst_parser')
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 4
root_doc = 'index'

# Offline build: no inventory can be fetched, so no intersphinx mapping (the
# generated one points at docs.python.org, jinja and docs.ansible.com).
intersphinx_mapping = {}
# What only the Ansible docsite's inventory could resolve, and nothing else:
# its labels that antsibull-docs links to, the pages of other collections'
# plugins (ansible.builtin, ...), and ansible-core's configuration variables
# (for example ANSIBLE_CACHE_PLUGIN, from the inventory_cache doc fragment).
nitpick_ignore_regex = [
    ('std:ref', r'ansible_configuration_settings|list_of_collections|common_return_values'),
    ('std:ref', r'ansible_collections\.(?!kvmops\.virt\.)[a-z0-9_]+\.[a-z0-9_]+\..*'),
    ('std:envvar', r'ANSIBLE_[A-Z0-9_]+'),
]
PY
mkdir -p "$SITE/rst"
chmod og-w "$SITE/rst"
antsibull-docs --config-file "$SITE/antsibull-docs.cfg" collection --use-current --fail-on-error \
  --dest-dir "$SITE/rst" kvmops.virt
cp "$BUILD/CHANGELOG.rst" "$SITE/rst/changelog.rst"
"$VENV/bin/python" scripts/docs_site.py docs "$SITE/rst" "$REPOSITORY_URL"

echo "==> sphinx-build (${SECONDS}s)"
sphinx-build -q -E -b html -c "$SITE" -d "$BUILD/doctrees" -W --keep-going "$SITE/rst" "$BUILD/html"
mkdir -p "$OUT"
rm -rf "$OUT/html" "$OUT/CHANGELOG.rst"
mv "$BUILD/html" "$OUT/html"
mv "$BUILD/CHANGELOG.rst" "$OUT/CHANGELOG.rst"
echo "docs: built $OUT/html/index.html (changelog preview: $OUT/CHANGELOG.rst) in ${SECONDS}s"
