#!/usr/bin/env python3
"""Writes helm/offers/README.md from helm/offers/README.tmpl.md and the
comments of helm/offers/values.yaml, in the style of helm-docs:

    # -- What the key below does (continued on the
    # following comment lines).
    # @default -- text shown instead of the value (optional)
    key: value

A documented map covers its whole subtree. With --check, writes nothing and
fails when README.md is not what it would write, or when a value (a scalar,
a list or an empty map) has no description on itself or on a map above it.

Usage: deploy/chart-readme.py [--check] [CHART_DIR]   (default helm/offers)
"""

import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "checks"))
from report import finish  # noqa: E402

PLACEHOLDER = "@@VALUES_TABLE@@"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_][A-Za-z0-9_.\-/]*|\"[^\"]+\")\s*:(?:\s|$)")
DESC_START = re.compile(r"^\s*# -- ?(?P<text>.*)$")
DEFAULT_LINE = re.compile(r"^\s*# @default -- ?(?P<text>.*)$")
COMMENT = re.compile(r"^\s*#(?: (?P<text>.*))?$")


def lookup(data, path):
    node = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None, False
        node = node[key]
    return node, True


def documented_keys(values_text, data):
    """(path, description, default override) for each `# --` key, in file order."""
    rows = []
    stack = []  # (indent, key, value is a list)
    desc, default, in_desc = None, None, False
    for line in values_text.splitlines():
        if not line.strip():
            desc, default, in_desc = None, None, False
            continue
        m = DEFAULT_LINE.match(line)
        if m:
            default, in_desc = m.group("text").strip(), False
            continue
        m = DESC_START.match(line)
        if m:
            desc, in_desc = [m.group("text").strip()], True
            continue
        m = COMMENT.match(line)
        if m:
            if in_desc:
                desc.append((m.group("text") or "").strip())
            continue
        m = KEY_LINE.match(line)
        if not m or line.lstrip().startswith("-"):
            desc, default, in_desc = None, None, False
            continue
        indent = len(m.group("indent"))
        key = m.group("key").strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(is_list for _, _, is_list in stack):
            desc, default, in_desc = None, None, False
            continue
        path = [k for _, k, _ in stack] + [key]
        value, found = lookup(data, path)
        if not found:
            raise SystemExit(f"chart-readme: cannot find {'.'.join(path)} in the parsed values")
        stack.append((indent, key, isinstance(value, list)))
        if desc is not None:
            rows.append((path, " ".join(t for t in desc if t), default))
        desc, default, in_desc = None, None, False
    return rows


# bool before int: a bool is an int to Python.
TYPE_NAMES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (list, "list"), (dict, "object"))


def type_of(value):
    return next((name for kind, name in TYPE_NAMES if isinstance(value, kind)), "null")


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows, data):
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, desc, default in rows:
        value, _ = lookup(data, path)
        shown = default if default is not None else "`" + json.dumps(value, separators=(",", ":")) + "`"
        out.append(f"| `{cell('.'.join(path))}` | {type_of(value)} | {cell(shown)} | {cell(desc)} |")
    return "\n".join(out)


def undocumented(data, documented, path=()):
    """Leaves (scalars, lists, empty maps) with no documented self or ancestor."""
    if path and path in documented:
        return []
    if isinstance(data, dict) and data:
        missing = []
        for key, value in data.items():
            missing += undocumented(value, documented, path + (key,))
        return missing
    return [".".join(path)]


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    chart = Path(args[0] if args else "helm/offers")
    values_text = (chart / "values.yaml").read_text()
    data = yaml.safe_load(values_text)
    rows = documented_keys(values_text, data)
    template = (chart / "README.tmpl.md").read_text()
    if PLACEHOLDER not in template:
        raise SystemExit(f"chart-readme: {PLACEHOLDER} missing from {chart / 'README.tmpl.md'}")
    readme = template.replace(PLACEHOLDER, table(rows, data))
    target = chart / "README.md"
    if not check:
        target.write_text(readme)
        print(f"chart-readme: wrote {target} ({len(rows)} documented keys)")
        return 0
    problems = []
    missing = undocumented(data, {tuple(p) for p, _, _ in rows})
    problems += [f"values.yaml: {m} has no `# --` description (on itself or a map above it)" for m in missing]
    if not target.exists() or target.read_text() != readme:
        problems.append(f"{target} is out of date: run deploy/chart-readme.py")
    state = "out of date" if any("out of date" in p for p in problems) else "in sync"
    return finish("chart-readme", problems, f"{len(rows)} documented keys, {len(missing)} undocumented values, README {state}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
