# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of the XML model: parse -> serialize -> parse gives the
same object, modeled values survive, and elements the model does not know are
kept through edits (hypothesis; deterministic)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmops.virt.plugins.module_utils._domain_xml import Domain
from ansible_collections.kvmops.virt.plugins.module_utils._network_xml import NetworkXML
from ansible_collections.kvmops.virt.plugins.module_utils._storage_xml import PoolXML, VolumeXML
from ansible_collections.kvmops.virt.plugins.module_utils._xml import canonical, etree

PROPS = settings(derandomize=True, deadline=None, max_examples=100, database=None)

MODELS = [Domain, NetworkXML, PoolXML, VolumeXML]
# Text XML can hold: no surrogates, no control characters (XML 1.0 allows only tab, LF, CR),
# with the metacharacters and non-ASCII letters in good measure.
xml_text = st.text(
    alphabet=st.one_of(st.sampled_from("<>&'\"; /.-_"), st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
    min_size=1, max_size=12).filter(lambda s: s.strip() == s and s.strip())
names = st.sampled_from(["vendor", "x-extra", "qemu_opt", "note", "tuning", "seclabel", "keywrap", "a.b"])
attrs = st.dictionaries(st.sampled_from(["id", "mode", "value", "unit", "kind"]), xml_text, max_size=3)


def _elements(depth):
    leaf = st.builds(lambda tag, a, text: (tag, a, text, []), names, attrs, st.one_of(st.none(), xml_text))
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.builds(lambda tag, a, kids: (tag, a, None, kids), names, attrs,
                                     st.lists(_elements(depth - 1), max_size=3)))


unknown_trees = st.lists(_elements(2), min_size=1, max_size=4)


def _build(parent, tree):
    tag, attributes, text, kids = tree
    node = etree.SubElement(parent, tag)
    for key, value in attributes.items():
        node.set(key, value)
    if text is not None:
        node.text = text
    for kid in kids:
        _build(node, kid)
    return node


def _document(model, name, trees):
    root = etree.Element(model.TAG)
    etree.SubElement(root, "name").text = name
    for tree in trees:
        _build(root, tree)
    return etree.tostring(root, encoding="unicode")


@PROPS
@given(model=st.sampled_from(MODELS), name=xml_text, trees=unknown_trees)
def test_parse_serialize_parse_is_the_same_object(model, name, trees):
    text = _document(model, name, trees)
    first = model.from_xml(text)
    second = model.from_xml(first.to_xml())
    assert first == second
    assert canonical(second.node) == canonical(etree.fromstring(text.encode()))
    assert second.name == name


@PROPS
@given(model=st.sampled_from(MODELS), name=xml_text, new_name=xml_text, trees=unknown_trees)
def test_unmodeled_elements_survive_an_edit(model, name, new_name, trees):
    obj = model.from_xml(_document(model, name, trees))
    unknown = [canonical(n) for n in obj.node if n.tag != "name"]
    obj.name = new_name
    again = model.from_xml(obj.to_xml())
    assert again.name == new_name
    assert [canonical(n) for n in again.node if n.tag != "name"] == unknown


@PROPS
@given(name=xml_text, trees=unknown_trees, memory=st.integers(1, 2 ** 20), extra=st.integers(0, 2 ** 20),
       vcpus=st.integers(1, 64), more=st.integers(0, 64), machine=st.sampled_from(["q35", "pc-q35-7.2", "pc-i440fx-7.2"]),
       cmdline=st.one_of(st.none(), xml_text))
def test_domain_values_round_trip_next_to_unknown_elements(name, trees, memory, extra, vcpus, more, machine, cmdline):
    dom = Domain.from_xml(_document(Domain, name, trees))
    dom.set_memory(memory, memory + extra)
    dom.set_vcpus(vcpus, vcpus + more)
    dom.machine = machine
    dom.os_type = "hvm"
    dom.cmdline = cmdline
    again = Domain.from_xml(dom.to_xml())
    assert again == dom
    assert (again.memory_mib, again.max_memory_mib) == (memory, memory + extra)
    assert (again.vcpus, again.max_vcpus) == (vcpus, vcpus + more)
    assert (again.machine, again.cmdline, again.name) == (machine, cmdline, name)
    assert [canonical(n) for n in again.node if n.tag not in ("name", "memory", "currentMemory", "vcpu", "os")] == \
        [canonical(n) for n in Domain.from_xml(_document(Domain, name, trees)).node if n.tag != "name"]
