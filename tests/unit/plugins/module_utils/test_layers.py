# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module_utils layers of docs/developing.md, checked against the imports.

Every file of ``plugins/module_utils`` belongs to exactly one layer; a file
imports only files of its own layer or of the layers below it, so calls flow
one way. Managers never import each other, no import cycle exists, and no
file grows past 700 lines. A new file needs a place in ``LAYERS``.
"""
from __future__ import annotations

import ast
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_UTILS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "plugins", "module_utils"))
PACKAGE = "ansible_collections.kvmops.virt.plugins.module_utils"
MAX_LINES = 700

# Bottom up. A file may import files of its own layer and of the layers listed before it.
LAYERS = [
    ("base", ["_errors", "_size", "_diff", "_xml", "_validate", "_client", "_module"]),
    ("xml models", ["_domain_xml", "_network_xml", "_storage_xml", "_caps_xml", "_snapshot_xml"]),
    ("pure logic", ["_guest_spec", "_domain_devices", "_domain_builder", "_network_spec", "_network_edit",
                    "_cloudinit", "_iso9660", "_domain_boot", "_domain_tuning"]),
    # _guest_args: kvm_guest's argument spec, shared by kvm_guest and kvm_guests (it takes DISK_FORMATS from
    # _guest_resolve, so it sits with it).
    ("shared operations", ["_storage_ops", "_guest_ops", "_addresses", "_guest_others", "_guest_resolve", "_guest_args",
                           "_host_guests", "_disk_resize", "_guest_tuning"]),
    ("managers", ["_guest", "_network", "_pool", "_volume", "_hostcaps", "_inventory", "_snapshot", "_migrate"]),
    # Batch runners drive one manager over a list of items in one module run (kvm_guests applies GuestManager
    # per guest); they sit above the managers so that no manager imports another.
    ("batch runners", ["_guest_fleet"]),
]
MANAGERS = dict(LAYERS)["managers"]
LAYER_OF = dict((name, index) for index, (_layer, names) in enumerate(LAYERS) for name in names)


def _files():
    return sorted(f[:-3] for f in os.listdir(MODULE_UTILS) if f.endswith(".py") and f != "__init__.py")


def _imports(name):
    """The collection's module_utils that ``name`` imports (at any depth in the file, lazy imports too)."""
    with open(os.path.join(MODULE_UTILS, name + ".py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module[len(PACKAGE) + 1:])
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PACKAGE) + 1:] for a in node.names if a.name.startswith(PACKAGE + "."))
    return found - {name}


def test_every_file_has_a_layer():
    assert [f for f in _files() if f not in LAYER_OF] == []
    assert [f for f in LAYER_OF if f not in _files()] == []


@pytest.mark.parametrize("name", _files())
def test_imports_go_down_only(name):
    upward = sorted(i for i in _imports(name) if LAYER_OF.get(i, -1) > LAYER_OF[name])
    assert upward == [], "%s (%s) imports a higher layer: %s" % (name, LAYERS[LAYER_OF[name]][0], upward)


@pytest.mark.parametrize("name", MANAGERS)
def test_managers_never_import_each_other(name):
    assert sorted(_imports(name) & set(MANAGERS)) == []


def test_no_import_cycles():
    graph = dict((name, _imports(name)) for name in _files())
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("name", _files())
def test_files_stay_small(name):
    with open(os.path.join(MODULE_UTILS, name + ".py"), encoding="utf-8") as fh:
        lines = sum(1 for _line in fh)
    assert lines <= MAX_LINES, "%s has %d lines (at most %d)" % (name, lines, MAX_LINES)
