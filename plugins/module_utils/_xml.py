# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A connection-free XML model on lxml, shared by every libvirt object.

Objects wrap an lxml element and expose declarative properties bound to a
path (``XMLProperty("./forward/@mode")``). Reading a missing path gives
``None``; writing creates the elements on the way; writing ``None`` removes
the leaf and prunes ancestors it left empty. Everything the model does not
know is kept as it is, so parse -> edit -> serialize never loses data.

The parser resolves no entities and loads nothing from the network, and all
text goes through lxml, so names with ``<``, ``&`` or quotes are escaped
rather than injected.
"""

from __future__ import annotations

import re
import traceback

from ansible_collections.kvmops.virt.plugins.module_utils._errors import VirtError

try:
    from lxml import etree

    HAS_LXML = True
    LXML_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only without lxml
    etree = None
    HAS_LXML = False
    LXML_IMPORT_ERROR = traceback.format_exc()

_STEP_RE = re.compile(r"^(?P<tag>[A-Za-z_][\w.:-]*)(?:\[@(?P<attr>[\w:-]+)='(?P<value>[^']*)'\])?$")


def _parser():
    return etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True, huge_tree=False)


def parse_xml(text, what="XML"):
    """Parse ``text`` into an element; malformed input raises VirtError."""
    if etree is None:
        raise VirtError("the lxml Python library is not installed")
    if isinstance(text, str):
        text = text.encode("utf-8")
    try:
        return etree.fromstring(text, _parser())
    except etree.XMLSyntaxError as e:
        raise VirtError("%s is not well-formed XML: %s" % (what, e))


def to_string(node):
    return etree.tostring(node, pretty_print=True, encoding="unicode")


def _split(path):
    """``./a/b/@c`` -> (["a", "b"], "c"); ``./a`` -> (["a"], None); ``@c`` -> ([], "c")."""
    if path.startswith("./"):
        path = path[2:]
    elif path == ".":
        path = ""
    parts = [p for p in path.split("/") if p]
    attr = None
    if parts and parts[-1].startswith("@"):
        attr = parts.pop()[1:]
    return parts, attr


def find_path(node, steps, create=False):
    """Walk ``steps`` below ``node``; create missing elements when asked."""
    for step in steps:
        child = node.find(step)
        if child is None:
            if not create:
                return None
            match = _STEP_RE.match(step)
            if not match:
                raise ValueError("cannot create XML path step %r" % step)
            child = etree.SubElement(node, match.group("tag"))
            if match.group("attr"):
                child.set(match.group("attr"), match.group("value"))
        node = child
    return node


def _prune(node, stop):
    """Remove ``node`` and its ancestors up to ``stop`` while they are empty."""
    while node is not None and node is not stop:
        parent = node.getparent()
        if len(node) or (node.text and node.text.strip()) or _meaningful_attrs(node):
            return
        parent.remove(node)
        node = parent


def _meaningful_attrs(node):
    return bool(node.attrib)


def _to_xml_value(value, kind):
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "onoff":
        return "on" if value else "off"
    return str(value)


def _from_xml_value(text, kind):
    if text is None:
        return None
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            return None
    if kind == "bool":
        return text.strip().lower() in ("yes", "on", "true", "1")
    if kind == "onoff":
        return text.strip().lower() in ("on", "yes", "true", "1")
    return text


class XMLProperty:
    """A value stored at an XML path: element text, or an attribute with ``@``."""

    def __init__(self, path, kind="str"):
        self.path = path
        self.kind = kind
        self.steps, self.attr = _split(path)
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        node = find_path(obj.node, self.steps)
        if node is None:
            return None
        raw = node.get(self.attr) if self.attr else node.text
        return _from_xml_value(raw, self.kind)

    def __set__(self, obj, value):
        if value is None:
            node = find_path(obj.node, self.steps)
            if node is None:
                return
            if self.attr:
                node.attrib.pop(self.attr, None)
            else:
                node.text = None
            _prune(node, obj.node)
            return
        node = find_path(obj.node, self.steps, create=True)
        if self.attr:
            node.set(self.attr, _to_xml_value(value, self.kind))
        else:
            node.text = _to_xml_value(value, self.kind)


class XMLFlag:
    """An empty element whose presence is the value (``<acpi/>``)."""

    def __init__(self, path):
        self.steps, _attr = _split(path)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return find_path(obj.node, self.steps) is not None

    def __set__(self, obj, value):
        if value is None:
            return
        node = find_path(obj.node, self.steps)
        if value and node is None:
            find_path(obj.node, self.steps, create=True)
        elif not value and node is not None:
            node.getparent().remove(node)


class XMLObject:
    """Base class of every modeled XML element."""

    TAG = None

    def __init__(self, node=None):
        if node is None:
            node = etree.Element(self.TAG)
        self.node = node

    @classmethod
    def from_xml(cls, text):
        node = parse_xml(text, what="%s XML" % (cls.TAG or "libvirt"))
        if cls.TAG and node.tag != cls.TAG:
            raise VirtError("expected <%s> XML, got <%s>" % (cls.TAG, node.tag))
        return cls(node)

    @classmethod
    def new(cls, **props):
        obj = cls()
        for key, value in props.items():
            setattr(obj, key, value)
        return obj

    def to_xml(self):
        return to_string(self.node)

    def copy(self):
        return type(self)(parse_xml(etree.tostring(self.node)))

    def find(self, path):
        return find_path(self.node, _split(path)[0])

    def ensure(self, path):
        return find_path(self.node, _split(path)[0], create=True)

    def remove(self, path):
        node = self.find(path)
        if node is not None:
            node.getparent().remove(node)

    def __eq__(self, other):
        return isinstance(other, XMLObject) and canonical(self.node) == canonical(other.node)

    def __hash__(self):
        return hash(canonical(self.node))

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, etree.tostring(self.node, encoding="unicode")[:80])


class XMLChildren:
    """A list of child objects at ``path`` (``./ip``, ``./devices/disk``)."""

    def __init__(self, cls, path):
        self.cls = cls
        steps, _attr = _split(path)
        self.parent_steps = steps[:-1]
        self.tag = steps[-1]

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return ChildList(obj, self)


class ChildList:
    """The live view of an :class:`XMLChildren` on one object."""

    def __init__(self, owner, spec):
        self.owner = owner
        self.spec = spec

    def _parent(self, create=False):
        return find_path(self.owner.node, self.spec.parent_steps, create=create)

    def _nodes(self):
        parent = self._parent()
        if parent is None:
            return []
        return parent.findall(self.spec.tag)

    def __iter__(self):
        return iter([self.spec.cls(n) for n in self._nodes()])

    def __len__(self):
        return len(self._nodes())

    def __getitem__(self, index):
        return self.spec.cls(self._nodes()[index])

    def add(self, child=None, **props):
        """Append a child (a new one built from ``props`` if none is given)."""
        if child is None:
            child = self.spec.cls.new(**props)
        parent = self._parent(create=True)
        siblings = parent.findall(self.spec.tag)
        if siblings:
            siblings[-1].addnext(child.node)
        else:
            parent.append(child.node)
        return child

    def remove(self, child):
        parent = child.node.getparent()
        if parent is not None:
            parent.remove(child.node)

    def clear(self):
        for child in list(self):
            self.remove(child)


def canonical(node):
    """A comparable form of an element: tag, sorted attributes, text, children."""
    text = (node.text or "").strip()
    return (
        node.tag,
        tuple(sorted(node.attrib.items())),
        text,
        tuple(canonical(c) for c in node if isinstance(c.tag, str)),
    )
