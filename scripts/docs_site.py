"""Put the Markdown user guide (docs/*.md) into the Sphinx source tree.

Used by scripts/build-docs.sh, after antsibull-docs has written the plugin and
role reference to SOURCE/collections/kvmops/virt/. The guide pages are written
for reading on GitHub; this copies them to SOURCE/ and makes them a site:

- docs/index.md becomes the site's root page. Its links to other guide pages,
  in order, become a hidden toctree (the site's navigation follows the guide's
  table of contents). Guide pages it does not link are appended after them.
- reference.md gets a hidden toctree with the generated collection reference,
  the environment variables page and the changelog.
- Links that leave docs/ are rewritten: a module, inventory plugin or role
  source links to its generated reference page; anything else in the
  repository links to the repository on the web (galaxy.yml ``repository``).
  Links into fenced code blocks are left alone.

usage: docs_site.py DOCS_DIR SOURCE_DIR REPOSITORY_URL
"""

from __future__ import annotations

import os
import re
import sys

COLLECTION_DIR = "collections/kvmops/virt"
# Pages the build adds to the reference section of the navigation (when present).
REFERENCE_EXTRA = (COLLECTION_DIR + "/index", "collections/environment_variables", "changelog")

LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^\s*(```|~~~)")


def rewrite_target(target, pages, repo_url):
    """The link target to use in the site, or the target unchanged."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
        return target  # URL (http:, mailto:, project:, ...) or same-page anchor
    path, _sep, anchor = target.partition("#")
    if not path.startswith("../"):
        name = path[:-3] if path.endswith(".md") else None
        if name in pages:
            return target
        # Another file next to the guide (a sample YAML file, ...): the web copy.
        return "%s/blob/main/docs/%s%s" % (repo_url, path, "#" + anchor if anchor else "")
    rel = os.path.normpath(path[3:])
    m = re.match(r"^plugins/modules/([a-z0-9_]+)\.py$", rel)
    if m:
        return "%s/%s_module.rst" % (COLLECTION_DIR, m.group(1))
    m = re.match(r"^plugins/inventory/([a-z0-9_]+)\.py$", rel)
    if m:
        return "%s/%s_inventory.rst" % (COLLECTION_DIR, m.group(1))
    m = re.match(r"^roles/([a-z0-9_]+)(/.*)?$", rel)
    if m:
        return "%s/%s_role.rst" % (COLLECTION_DIR, m.group(1))
    kind = "tree" if path.endswith("/") or "." not in os.path.basename(rel) else "blob"
    return "%s/%s/main/%s%s" % (repo_url, kind, rel, "#" + anchor if anchor else "")


def rewrite_links(text, pages, repo_url):
    out = []
    in_fence = None
    for line in text.splitlines(keepends=True):
        m = FENCE.match(line)
        if m:
            if in_fence is None:
                in_fence = m.group(1)
            elif in_fence == m.group(1):
                in_fence = None
            out.append(line)
            continue
        if in_fence is None:
            line = LINK.sub(lambda mo: mo.group(1) + rewrite_target(mo.group(2), pages, repo_url) + mo.group(3), line)
        out.append(line)
    return "".join(out)


def linked_pages(text, pages):
    """Guide pages linked from ``text`` outside code blocks, in order of first appearance."""
    order = []
    in_fence = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m:
            in_fence = m.group(1) if in_fence is None else (None if in_fence == m.group(1) else in_fence)
            continue
        if in_fence is not None:
            continue
        for mo in LINK.finditer(line):
            path = mo.group(2).partition("#")[0]
            if "/" in path or not path.endswith(".md"):
                continue
            name = path[:-3]
            if name in pages and name != "index" and name not in order:
                order.append(name)
    return order


def toctree(entries, caption=None):
    lines = ["", "", "```{toctree}", ":hidden:"]
    if caption:
        lines.append(":caption: %s" % caption)
    lines += ["", *entries, "```", ""]
    return "\n".join(lines)


def main(docs_dir, source_dir, repo_url):
    repo_url = repo_url.rstrip("/")
    pages = {f[:-3]: os.path.join(docs_dir, f) for f in os.listdir(docs_dir) if f.endswith(".md")}
    if "index" not in pages:
        sys.exit("docs/index.md is missing: it is the root of the site")
    texts = {}
    for name, path in pages.items():
        with open(path, encoding="utf-8") as f:
            texts[name] = f.read()
    order = linked_pages(texts["index"], pages)
    rest = sorted(n for n in pages if n not in order and n != "index")
    extra = [e for e in REFERENCE_EXTRA if os.path.exists(os.path.join(source_dir, e + ".rst"))]
    for name, text in texts.items():
        text = rewrite_links(text, pages, repo_url)
        if name == "index":
            text += toctree(order, "User guide")
            if rest:
                text += toctree(rest, "More")
            if "reference" not in pages and extra:
                text += toctree(extra, "Reference")
        elif name == "reference" and extra:
            text += toctree(extra)
        with open(os.path.join(source_dir, name + ".md"), "w", encoding="utf-8") as f:
            f.write(text)
    print("guide: %d pages in the navigation (%s), %d more (%s)" % (
        len(order), ", ".join(order), len(rest), ", ".join(rest) or "none"))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
