# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/troubleshooting.md documents every error message the collection emits.

The messages are read from the code: an AST walk over plugins/ collects the
text passed to the exception classes of ``_errors.py`` (``InvalidArgument(option,
problem)`` reads as ``option: problem``), to ``fail_json(msg=...)`` and to the
inventory plugin's ``AnsibleParserError``; a YAML walk over roles/ and playbooks/ collects the
``msg`` of ``ansible.builtin.fail`` and the ``fail_msg`` of
``ansible.builtin.assert``. Variable parts become wildcards.

The page lists the messages in the tables of its "Error messages" section:
the first cell of a row is the message as the user sees it, in backticks,
with ``<placeholders>`` for the variable parts. Every message in the code must
match a documented one, and every documented one must still exist.
"""
from __future__ import annotations

import ast
import pathlib
import re

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "troubleshooting.md"
SECTION = "## Error messages"

HOLE = "\x00"  # a variable part of a message
EXCEPTIONS = {"VirtError", "InvalidArgument", "ConnectionFailed", "NotFound", "OperationFailed", "Refused",
              "AnsibleParserError", "AnsibleError"}
PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[sdirfgexXoc%]")
BRACES = re.compile(r"\{[^{}]*\}")


def _render(node, local=None):
    """The text of a message expression, with HOLE for what is only known at run time.

    ``local`` maps the names assigned once in the enclosing function to their values
    (``text = "..." % ...; return NotFound(text)``)."""
    local = local or {}
    if isinstance(node, ast.Name) and node.id in local:
        return _render(local[node.id])
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, (ast.Constant, ast.BinOp)):
        fmt = _render(node.left)
        return PERCENT.sub(lambda m: "%" if m.group(0) == "%%" else HOLE, fmt)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _render(node.left, local) + _render(node.right, local)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)):
        return BRACES.sub(HOLE, node.func.value.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "missing_required_lib":
        lib = _render(node.args[0]) if node.args else HOLE
        return "Failed to import the required Python library (%s) on %s" % (lib, HOLE)
    return HOLE


def _call_name(func):
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _kwarg(call, name):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _assigned_once(func):
    """Names assigned exactly once in ``func``, with their value."""
    values, counts = {}, {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            values[name] = node.value
            counts[name] = counts.get(name, 0) + 1
    return {name: value for name, value in values.items() if counts[name] == 1}


def code_messages():
    """(template, where) for every message built in plugins/."""
    found = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        rel = path.relative_to(REPO)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        scope = {}
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local = _assigned_once(func)
                for node in ast.walk(func):
                    scope.setdefault(id(node), local)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            local = scope.get(id(node), {})
            name = _call_name(node.func)
            text = None
            if name == "InvalidArgument":
                option = node.args[0] if node.args else _kwarg(node, "option")
                problem = node.args[1] if len(node.args) > 1 else _kwarg(node, "problem")
                if option is not None and problem is not None:
                    text = "%s: %s" % (_render(option, local), _render(problem, local))
            elif name in EXCEPTIONS:
                msg = node.args[0] if node.args else _kwarg(node, "msg") or _kwarg(node, "message")
                if msg is not None:
                    text = _render(msg, local)
            elif name == "fail_json":
                msg = _kwarg(node, "msg")
                if msg is not None:
                    text = _render(msg, local)
            if text is not None:
                found.append((text, "%s:%d" % (rel, node.lineno)))
    return found


JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def _role_texts(value):
    """Templates of one fail/assert message: Jinja parts become holes; a message that is
    one Jinja expression yields the string literals it is built from."""
    if isinstance(value, list):
        return [t for v in value for t in _role_texts(v)]
    if not isinstance(value, str):
        return []
    text = " ".join(value.split())
    if JINJA.sub("", text).strip():
        return [JINJA.sub(HOLE, text)]
    text = re.sub(r"'\s*~\s*'", "", text)  # 'a' ~ 'b' is one literal
    return [lit for lit in re.findall(r"'([^']*)'", text) if len(lit) >= 20 and " " in lit]


def _walk_tasks(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _walk_tasks(task.get(key))


def _task_files():
    """(path, tasks) of the roles' task files and of the playbooks' plays."""
    for path in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        yield path, yaml.safe_load(path.read_text(encoding="utf-8"))
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        for play in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if isinstance(play, dict):
                yield path, [t for key in ("pre_tasks", "tasks", "post_tasks") for t in play.get(key) or []]


def role_messages():
    found = []
    for path, tasks in _task_files():
        rel = path.relative_to(REPO)
        for task in _walk_tasks(tasks):
            for action in ("ansible.builtin.fail", "fail"):
                if isinstance(task.get(action), dict):
                    texts = _role_texts(task[action].get("msg"))
                    if not texts:  # msg: "{{ a_task_var }}"
                        texts = _role_texts(list((task.get("vars") or {}).values()))
                    found += [(t, "%s: %s" % (rel, task.get("name"))) for t in texts]
            for action in ("ansible.builtin.assert", "assert"):
                if isinstance(task.get(action), dict):
                    msg = task[action].get("fail_msg", task[action].get("msg"))
                    found += [(t, "%s: %s" % (rel, task.get("name"))) for t in _role_texts(msg)]
    return found


def is_pass_through(template):
    """Messages with no text of their own (another error's message passed on)."""
    return not re.search(r"[A-Za-z]{2}", template.replace(HOLE, ""))


def documented_messages():
    """The messages in the first cells of the tables of the page's "Error messages" section."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("\n" + SECTION + "\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    messages = []
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        first_cell = re.split(r"(?<!\\)\|", line)[1]
        m = re.match(r"\s*`([^`]+)`", first_cell)
        if m:
            messages.append(m.group(1).replace("\\|", "|"))
    return messages


def _pattern(template):
    parts = [re.escape(p) for p in template.split(HOLE)]
    return re.compile(".+".join(parts), re.S)


# Shared helpers name their own option; the caller may put its option path in front
# (render_seed's "user_data: ..." reaches the user as "cloud_init.user_data: ...").
CALLER_PREFIX = r"(?:[A-Za-z_][\w\[\]<>]*\.)?"


def _matches(template, documented):
    pattern = re.compile(CALLER_PREFIX + _pattern(" ".join(template.split())).pattern, re.S)
    return pattern.fullmatch(" ".join(documented.split())) is not None


ALL = code_messages() + role_messages()


def test_the_extraction_finds_the_messages():
    """Guards the walk itself: known messages of each kind are found."""
    texts = {text for text, where in ALL}
    assert len(ALL) > 150
    assert "capacity: must be greater than zero, got " + HOLE in texts
    assert "kvm_guests: every entry needs a name, and names must be unique" in texts
    assert "Failed to import the required Python library (libvirt-python) on " + HOLE in texts
    assert "This host does not meet the requirements for KVM virtualization:" in texts


@pytest.mark.parametrize("template,where", [pytest.param(t, w, id=w) for t, w in ALL if not is_pass_through(t)])
def test_message_is_documented(template, where):
    documented = documented_messages()
    assert any(_matches(template, d) for d in documented), (
        "%s emits %r, which docs/troubleshooting.md does not list under %r; add a table row "
        "| `message with <placeholders>` | cause | fix |" % (where, template.replace(HOLE, "<...>"), SECTION))


def test_every_documented_message_exists():
    templates = [text for text, where in ALL if not is_pass_through(text)]
    stale = [d for d in documented_messages() if not any(_matches(t, d) for t in templates)]
    assert not stale, "docs/troubleshooting.md lists messages the code no longer emits: %s" % stale


def test_pass_through_messages_are_few():
    """Messages that only pass another error on are not listed; keep them rare."""
    passed_on = [w for t, w in ALL if is_pass_through(t)]
    assert len(passed_on) <= 15, passed_on
